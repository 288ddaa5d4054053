/**
 * Bounded soak: 2 rounds of 64 concurrent streams x 32 tokens through the official client against
 * one server (32 decode slots, so half of each round queues). Every stream must end with all its
 * tokens (0 lost requests), the server must end idle with no slot held, and the process RSS may
 * grow by at most 64 MiB from the end of round 1 to the end of round 2 (states, buffers and
 * closures of finished requests are freed).
 */
import OpenAI from 'openai';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { metrics, start, type Running } from './helpers';

const NAME = 'soak';
let model: MambaModel;
let s: Running;
let client: OpenAI;

beforeAll(async () => {
  model = await loadModel();
  s = await start({ model, modelName: NAME, maxRunning: 32, maxQueue: 256 });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60000 });
});
afterAll(async () => {
  await s.server.shutdown(0);
  model.dispose();
});

async function round(r: number): Promise<{ ok: number; tokens: number[] }> {
  const results = await Promise.all(
    Array.from({ length: 64 }, async (_, i) => {
      const stream = await client.completions.create({
        model: NAME,
        prompt: `Round ${r} stream ${i}: the jury said`,
        max_tokens: 32,
        temperature: 0.9,
        seed: i,
        logit_bias: { 0: -100 },
        stream: true,
        stream_options: { include_usage: true },
      });
      let usage = -1,
        finish = '';
      for await (const c of stream) {
        if (c.usage) usage = c.usage.completion_tokens;
        if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      }
      return usage === 32 && finish === 'length' ? usage : -1;
    }),
  );
  return { ok: results.filter((x) => x === 32).length, tokens: results };
}

test('64 streams x 32 tokens, twice: 0 lost requests, RSS growth < 64 MiB', async () => {
  const a = await round(1);
  expect(a.ok).toBe(64);
  global.gc?.();
  const rss1 = process.memoryUsage().rss;
  const b = await round(2);
  expect(b.ok).toBe(64);
  global.gc?.();
  const rss2 = process.memoryUsage().rss;
  console.log(
    `soak: RSS ${(rss1 / 2 ** 20).toFixed(0)} MiB after round 1, growth over round 2 ${((rss2 - rss1) / 2 ** 20).toFixed(1)} MiB (bound 64)`,
  );
  expect(rss2 - rss1).toBeLessThan(64 * 2 ** 20);
  await s.server.scheduler!.idle();
  expect(s.server.scheduler!.slotsUsed).toBe(0);
  const m = await metrics(s.url);
  expect(m.get('simba_request_success_total{outcome="done",finished_reason="length"}')).toBe(128);
  expect(m.get('simba_generation_tokens_total')).toBe(128 * 32);
  expect(m.get('simba_num_requests_running')).toBe(0);
  expect(m.get('simba_num_requests_waiting')).toBe(0);
  // batching happened: the mean step held many sequences
  expect(m.get('simba_batch_size_sum')! / m.get('simba_batch_size_count')!).toBeGreaterThan(8);
}, 120000);
