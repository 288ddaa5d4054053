/**
 * The scheduling policy through the server and the CLI: the new options are checked strictly,
 * Simba under load shows in `usage.simba` and in the metrics (the cost model is fed fake timings so
 * that the backlog is over the target deterministically), and off it prunes nothing.
 */
import { execFile } from 'child_process';
import * as path from 'path';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { createServer, type ServerOptions } from '../../lib/serve/server';
import { metrics, post, start } from './helpers';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'lib', 'cli', 'main.js');

let model: MambaModel;
beforeAll(async () => {
  model = await loadModel();
});
afterAll(() => model.dispose());

test('createServer refuses bad itlTargetMs / simbaUnderLoad and unknown keys, naming them', () => {
  expect(() => createServer({ model, itlTargetMs: -1 })).toThrow(/createServer: itlTargetMs must be a number in \[0, 60000\]/);
  expect(() => createServer({ model, itlTargetMs: 'x' as unknown as number })).toThrow(/itlTargetMs/);
  expect(() => createServer({ model, simbaUnderLoad: 0 })).toThrow(/simbaUnderLoad must be a number in \(0, 1\]/);
  expect(() => createServer({ model, itlTargetMS: 5 } as unknown as ServerOptions)).toThrow(
    /unknown option 'itlTargetMS' \(did you mean 'itlTargetMs'\?\)/,
  );
});

test('simba serve refuses bad --itl-target-ms and --simba-under-load (exit 2, one line)', async () => {
  const run = (args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'serve', '--port', '0', ...args], (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }),
      );
    });
  for (const [args, re] of [
    [['--itl-target-ms', '-3'], /--itl-target-ms/],
    [['--itl-target-ms', 'fast'], /--itl-target-ms/],
    [['--simba-under-load', '0'], /--simba-under-load/],
    [['--simba-under-load', '1.2'], /--simba-under-load/],
  ] as const) {
    const r = await run([...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
  }
}, 30000);

const body = (prompt: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'simba', prompt, max_tokens: 3, temperature: 0, ...extra });

test('under load a long prompt is pruned: usage.simba, the pruned-tokens counter and the budget histogram', async () => {
  const s = await start({ model, simbaUnderLoad: 0.6 });
  try {
    await s.server.ready;
    const long = 'The committee of the state legislature met on Tuesday to discuss the budget. '.repeat(20);
    // 1 s a prompt token: any long prompt is far more prefill than the target allows within a second
    s.server.scheduler!.costModel.observe(model.info().weights, { decodes: 0, prefillTokens: 100, seconds: 100 });
    const r = await post(s.url, '/v1/completions', body(long));
    expect(r.status).toBe(200);
    const usage = r.json.usage as { prompt_tokens: number; simba?: { flops: number; pruned_tokens: number } };
    expect(usage.simba!.flops).toBeGreaterThanOrEqual(0.6 - 0.01);
    expect(usage.simba!.flops).toBeLessThan(0.7);
    expect(usage.simba!.pruned_tokens).toBeGreaterThan(usage.prompt_tokens / 4);
    // a short prompt is never pruned
    const short = await post(s.url, '/v1/completions', body('The jury said'));
    expect((short.json.usage as Record<string, unknown>).simba).toBeUndefined();
    // streamed: the usage chunk says it too
    const sse = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: body(long, { stream: true, stream_options: { include_usage: true } }),
      signal: AbortSignal.timeout(20000),
    });
    const chunks = (await sse.text())
      .split('\n\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as { usage?: { simba?: { pruned_tokens: number } } });
    expect(chunks[chunks.length - 1].usage!.simba!.pruned_tokens).toBe(usage.simba!.pruned_tokens);
    const m = await metrics(s.url);
    expect(m.get('simba_load_pruned_tokens_total')).toBe(2 * usage.simba!.pruned_tokens);
    expect(m.get('simba_load_pruning_flops_ratio_count')).toBe(2);
    expect(m.get('simba_tick_prefill_tokens_count')).toBeGreaterThan(0);
    expect(m.get('simba_tick_prefill_ratio_count')).toBe(m.get('simba_tick_prefill_tokens_count'));
    expect(m.has('simba_itl_target_misses_total')).toBe(true);
  } finally {
    await s.server.shutdown(1000);
  }
}, 60000);

test('without --simba-under-load nothing is pruned, whatever the backlog', async () => {
  const s = await start({ model });
  try {
    await s.server.ready;
    s.server.scheduler!.costModel.observe(model.info().weights, { decodes: 0, prefillTokens: 100, seconds: 100 });
    const long = 'The committee of the state legislature met on Tuesday to discuss the budget. '.repeat(20);
    const rs = await Promise.all([1, 2, 3].map(() => post(s.url, '/v1/completions', body(long))));
    for (const r of rs) expect((r.json.usage as Record<string, unknown>).simba).toBeUndefined();
    expect((await metrics(s.url)).get('simba_load_pruned_tokens_total')).toBe(0);
  } finally {
    await s.server.shutdown(1000);
  }
}, 60000);
