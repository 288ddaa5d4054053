/**
 * lib/engine/forward.ts, the one route to the native forward: how a dense prefill is cut into calls
 * (chunkPrompts), and the checks every call shares (a sequence given twice, a busy or disposed
 * sequence) giving the same error whichever method made the call.
 */
import { randomModel } from '../lib/engine/load';
import { chunkPrompts, MAX_CHUNK_TOKENS } from '../lib/engine/forward';
import type { MambaModel } from '../lib/engine/model';
import { rngFromSeed } from '../lib/engine/lm';
import { randomConfig } from './reference/random_model';

test('chunkPrompts packs whole prompts up to the limit and cuts a longer one alone', () => {
  expect(chunkPrompts([3, 4, 2], 8)).toEqual([
    { first: 0, end: 2, chunk: null },
    { first: 2, end: 3, chunk: null },
  ]);
  expect(chunkPrompts([2, 20, 8], 8)).toEqual([
    { first: 0, end: 1, chunk: null },
    { first: 1, end: 2, chunk: { from: 0, to: 8 } },
    { first: 1, end: 2, chunk: { from: 8, to: 16 } },
    { first: 1, end: 2, chunk: { from: 16, to: 20 } },
    { first: 2, end: 3, chunk: null },
  ]);
  // 911 prompts of 9 tokens: two calls, the first as full as whole prompts allow
  const pieces = chunkPrompts(new Array<number>(911).fill(9), MAX_CHUNK_TOKENS);
  expect(pieces.map((p) => p.end - p.first)).toEqual([Math.floor(MAX_CHUNK_TOKENS / 9), 911 - Math.floor(MAX_CHUNK_TOKENS / 9)]);
  expect(chunkPrompts([MAX_CHUNK_TOKENS], MAX_CHUNK_TOKENS)).toEqual([{ first: 0, end: 1, chunk: null }]);
});

describe('the checks every call shares', () => {
  let m: MambaModel;
  beforeAll(async () => {
    m = await randomModel(randomConfig({ vocabSize: 61, nLayer: 2 }), { seed: 2 });
  });
  afterAll(() => m.dispose());

  test('a sequence twice in one batch: the same E_ARG from prefill, decode, step and decodeSample; nothing advanced', async () => {
    const s = m.newSequence();
    const greedy = () => ({ temperature: 0, rng: rngFromSeed(0) });
    const calls: [string, () => Promise<unknown>][] = [
      [
        'prefill',
        () =>
          m.prefill([
            { sequence: s, tokens: [1] },
            { sequence: s, tokens: [2] },
          ]),
      ],
      ['decode', () => m.decode([s, s], [1, 2])],
      [
        'step',
        () =>
          m.step([
            { sequence: s, tokens: [1] },
            { sequence: s, tokens: [2] },
          ]),
      ],
      ['decodeSample', () => m.decodeSample([s, s], [1, 2], [greedy(), greedy()])],
    ];
    for (const [what, call] of calls)
      await expect(call()).rejects.toMatchObject({
        code: 'E_ARG',
        message: `${what}: the same sequence appears twice in one batch`,
      });
    expect(s.position).toBe(0);
    expect(s.busy).toBe(false);
  });

  test('a sequence in use by another call is E_BUSY; the call in flight completes and advances it', async () => {
    const s = m.newSequence();
    const first = m.prefill([{ sequence: s, tokens: [1, 2, 3] }]);
    await expect(m.decode([s], [4])).rejects.toMatchObject({ code: 'E_BUSY' });
    await first;
    expect(s.position).toBe(3);
    await m.decode([s], [4]);
    expect(s.position).toBe(4);
  });
});
