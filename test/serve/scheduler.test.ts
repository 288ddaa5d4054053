/**
 * The scheduler (continuous batching, chunked prefill, n > 1, cancellation, queue limit) and the
 * prefix-state cache, on the shipped brown-mamba-s, without HTTP.
 */
import { rngFromSeed, type SamplingParams } from '../../lib/engine/lm';
import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { PrefixCache } from '../../lib/serve/prefix_cache';
import { Scheduler, SchedulerRejection, type RequestEvent } from '../../lib/serve/scheduler';
import { maxRowErr } from '../helpers/util';

let model: MambaModel;
beforeAll(async () => {
  model = await loadModel();
});
afterAll(() => model.dispose());

const greedy = (): SamplingParams => ({ temperature: 0, rng: rngFromSeed(0) });

interface Collected {
  tokens: number[][];
  text: string[];
  reasons: string[];
  events: RequestEvent[];
}

function run(
  s: Scheduler,
  prompt: number[],
  maxTokens: number,
  sampling: SamplingParams[] = [greedy()],
  extra: { stop?: string[] } = {},
) {
  const out: Collected = { tokens: sampling.map(() => []), text: sampling.map(() => ''), reasons: [], events: [] };
  const h = s.submit({
    prompt,
    maxTokens,
    sampling,
    stop: extra.stop,
    stopAtEos: false,
    onEvent: (e) => {
      out.events.push(e);
      if (e.type === 'token') {
        out.tokens[e.choice].push(e.token);
        out.text[e.choice] += e.text;
      }
      if (e.type === 'finish') {
        out.text[e.choice] += e.text;
        out.reasons[e.choice] = e.reason;
      }
    },
  });
  return { h, out, done: h.done.then((o) => ({ o, out })) };
}

const prompts = [
  'The jury said',
  'It was a cold morning in the city',
  'He',
  'The committee of the state legislature',
  'She looked at the',
  'In the year',
  'A number of',
  'They went to the church on Sunday and',
  'The man who',
  'For the first time',
  'What is',
  'We have been',
  'Mr. Kennedy',
  'The president of the',
  'After the war',
  'Nothing',
];

test('temperature-0 outputs of 16 concurrent requests equal each request alone', async () => {
  const ids = prompts.map((p) => model.tokenizer!.encode(p));
  const alone: number[][] = [];
  const s1 = new Scheduler(model, { tokenizer: model.tokenizer, maxRunning: 1 });
  for (const p of ids) alone.push((await run(s1, p, 24).done).out.tokens[0]);
  // a small budget forces chunked prefill interleaved with decode steps
  const s = new Scheduler(model, { tokenizer: model.tokenizer, maxRunning: 16, prefillBudget: 7 });
  const all = await Promise.all(ids.map((p, i) => run(s, p, 24 + (i % 3)).done));
  all.forEach((r, i) => {
    expect(r.o).toBe('done');
    expect(r.out.tokens[0].slice(0, 24)).toEqual(alone[i]);
  });
  expect(s.counters.ticks).toBeLessThan(16 * 30); // batched, not one by one
}, 60000);

test('n = 2 prefills once and each choice equals its own seed alone; stop strings cut the text', async () => {
  const p = model.tokenizer!.encode('The jury said that');
  const mk = (seed: number): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, rng: rngFromSeed(seed) });
  const s = new Scheduler(model, { tokenizer: model.tokenizer });
  const both = await run(s, p, 12, [mk(5), mk(6)]).done;
  const a = await run(s, p, 12, [mk(5)]).done;
  const b = await run(s, p, 12, [mk(6)]).done;
  expect(both.out.tokens[0]).toEqual(a.out.tokens[0]);
  expect(both.out.tokens[1]).toEqual(b.out.tokens[0]);
  expect(both.out.tokens[0]).not.toEqual(both.out.tokens[1]);
  const full = both.out.text[0];
  const cut = full.slice(3, 6);
  const stopped = await run(s, p, 12, [mk(5)], { stop: [cut] }).done;
  expect(stopped.out.text[0]).toBe(full.slice(0, full.indexOf(cut)));
  expect(stopped.out.reasons[0]).toBe('stop');
  expect(a.out.reasons[0]).toBe('length');
});

test('a cancelled request stops within one tick and frees its slot; the queue limit rejects', async () => {
  const s = new Scheduler(model, { tokenizer: model.tokenizer, maxRunning: 2, maxQueue: 2 });
  const p = model.tokenizer!.encode('The jury');
  const a = run(s, p, 100000); // admitted at once (the loop starts on submit)
  const b = run(s, p, 100000); // admitted at the next tick
  const c = run(s, p, 3); // waits: both slots are taken
  const d = run(s, p, 3); // waits too: b takes the free slot, so only c and d count against maxQueue
  expect(s.waitingCount + s.runningCount).toBe(4);
  expect(() => run(s, p, 3)).toThrow(SchedulerRejection);
  while (a.out.tokens[0].length < 3) await new Promise((r) => setTimeout(r, 5));
  const ticksAtCancel = s.counters.ticks;
  a.h.cancel();
  expect(await a.h.done).toBe('cancelled');
  expect(s.counters.ticks - ticksAtCancel).toBeLessThanOrEqual(1);
  expect((await c.done).o).toBe('done'); // got a's slot
  expect((await d.done).o).toBe('done');
  b.h.cancel();
  expect(await b.h.done).toBe('cancelled');
  await s.idle();
  expect(s.slotsUsed).toBe(0);
  expect(s.runningCount + s.waitingCount).toBe(0);
});

test('chunked prefill: a long prompt is admitted in chunks while a running request keeps decoding', async () => {
  const s = new Scheduler(model, { tokenizer: model.tokenizer, prefillBudget: 64 });
  const running = run(s, model.tokenizer!.encode('The'), 60);
  while (running.out.tokens[0].length < 2) await new Promise((r) => setTimeout(r, 2));
  const long = Array.from({ length: 600 }, (_, i) => 100 + (i % 500));
  const before = running.out.tokens[0].length;
  const ticks0 = s.counters.ticks;
  const l = run(s, long, 1);
  await l.done;
  expect(s.counters.ticks - ticks0).toBeGreaterThanOrEqual(600 / 64); // ten chunks
  expect(running.out.tokens[0].length - before).toBeGreaterThanOrEqual(9); // one decode token per tick meanwhile
  await running.done;
});

test('a prefix-cache hit gives the cold logits (<= 1e-6) and saves the prefix', async () => {
  const cache = new PrefixCache({ maxBytes: 64 << 20, blockTokens: 32 });
  const s = new Scheduler(model, { tokenizer: model.tokenizer, cache, prefillBudget: 50 });
  const base = Array.from({ length: 100 }, (_, i) => 50 + ((i * 37) % 3000));
  await run(s, base, 2).done; // chunks end on blocks: snapshots at 32, 64 and 100
  expect(cache.stats().entries).toBe(3);
  const ext = [...base, 7, 8, 9];
  const hit = cache.lookup('dense', ext, ext.length - 1)!;
  expect(hit.length).toBe(100);
  const seq = model.newSequence();
  seq.restore(hit.state);
  const [warm] = await model.prefill([{ sequence: seq, tokens: ext.slice(100) }], { logits: 'all' });
  const cold = await model.logits(ext, [100, 101, 102]);
  expect(maxRowErr(warm.logits, cold.logits)).toBeLessThanOrEqual(1e-6);
  // the scheduler uses it: same greedy tokens as an uncached scheduler, cached tokens reported
  const r = await run(s, ext, 8).done;
  const usage = r.out.events.find((e) => e.type === 'done');
  expect(usage).toMatchObject({ usage: { cachedTokens: 100, promptTokens: 103 } });
  const plain = await run(new Scheduler(model, { tokenizer: model.tokenizer }), ext, 8).done;
  expect(r.out.tokens).toEqual(plain.out.tokens);
  // an exact repeat restores the last block boundary below the prompt's end
  expect(cache.lookup('dense', base, base.length - 1)!.length).toBe(64);
  // LRU within the byte budget
  const tiny = new PrefixCache({ maxBytes: hit.state.byteLength * 2 + 100 * 4 + 200 * 4 });
  tiny.insert('dense', base.slice(0, 100), hit.state);
  tiny.insert('dense', base.slice(0, 50), hit.state);
  expect(tiny.lookup('dense', base, 100)!.length).toBe(100); // touches the 100-token entry
  tiny.insert('dense', base.slice(0, 10), hit.state); // evicts the 50-token one
  expect(tiny.stats()).toMatchObject({ entries: 2, evictions: 1 });
  expect(tiny.lookup('dense', base.slice(0, 60), 59)!.length).toBe(10);
  expect(tiny.lookup('simba', base, 99)).toBeNull(); // other namespace
});
