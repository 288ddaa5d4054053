/**
 * A dense prefill of more than MAX_CHUNK_TOKENS tokens in all packs whole prompts into native calls
 * of at most MAX_CHUNK_TOKENS tokens (a longer prompt alone, in chunks): 911 prompts of 9 tokens
 * took one call per prompt before (5x the time of 910 prompts), and give the same bits as the two
 * halves prefilled apart.
 */
import { randomModel } from '../lib/engine/load';
import { MAX_CHUNK_TOKENS, type MambaModel } from '../lib/engine/model';
import type { PrefillResult } from '../lib/engine/lm';
import { randomConfig } from './reference/random_model';
import { randTokens } from './helpers/util';

const cfg = randomConfig({ dModel: 32, nLayer: 2, vocabSize: 128 });

/** Counts the model's native forward calls and the sequences in each. */
function countCalls(m: MambaModel): number[] {
  const engine = (m as unknown as { engine: { forward: (...a: unknown[]) => unknown } }).engine;
  const forward = Object.getPrototypeOf(engine).forward.bind(engine);
  const calls: number[] = [];
  // (the addon's methods are read-only on the prototype: shadow it on this instance)
  Object.defineProperty(engine, 'forward', {
    configurable: true,
    value: (...a: unknown[]) => {
      calls.push((a[1] as Int32Array).length);
      return forward(...a);
    },
  });
  return calls;
}

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function expectSame(a: PrefillResult[], b: PrefillResult[]): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    expect(a[i].positions).toEqual(b[i].positions);
    expect(a[i].logits.length).toBe(b[i].logits.length);
    expect(a[i].logits.every((l, k) => sameBits(l, b[i].logits[k]))).toBe(true);
    expect(sameBits(a[i].sequence.state, b[i].sequence.state)).toBe(true);
    expect(a[i].sequence.position).toBe(b[i].sequence.position);
  }
}

describe(`dense prefill past ${MAX_CHUNK_TOKENS} tokens in all`, () => {
  let m: MambaModel;
  beforeAll(async () => {
    m = await randomModel(cfg, { seed: 11 });
  });
  afterAll(() => m.dispose());

  test('911 prompts of 9 tokens: two native calls, the same bits as the two halves apart', async () => {
    const prompts = Array.from({ length: 911 }, (_, i) => randTokens(9, cfg.vocabSize, 100 + i));
    expect(911 * 9).toBeGreaterThan(MAX_CHUNK_TOKENS);
    const calls = countCalls(m);
    const all = await m.prefill(
      prompts.map((tokens) => ({ tokens })),
      { logits: 'last' },
    );
    expect(calls).toEqual([Math.floor(MAX_CHUNK_TOKENS / 9), 911 - Math.floor(MAX_CHUNK_TOKENS / 9)]);
    const halves = [
      ...(await m.prefill(
        prompts.slice(0, 455).map((tokens) => ({ tokens })),
        { logits: 'last' },
      )),
      ...(await m.prefill(
        prompts.slice(455).map((tokens) => ({ tokens })),
        { logits: 'last' },
      )),
    ];
    expectSame(all, halves);
    for (const r of [...all, ...halves]) r.sequence.dispose();
  });

  test('short prompts around a prompt longer than a call: the long one alone in chunks, the rest packed', async () => {
    const long = randTokens(MAX_CHUNK_TOKENS + 50, cfg.vocabSize, 1);
    const before = Array.from({ length: 300 }, (_, i) => randTokens(3 + (i % 5), cfg.vocabSize, 2000 + i));
    const after = Array.from({ length: 20 }, (_, i) => randTokens(7, cfg.vocabSize, 3000 + i));
    const prompts = [...before, long, ...after];
    const calls = countCalls(m);
    const all = await m.prefill(
      prompts.map((tokens) => ({ tokens, logits: [0, tokens.length - 1] })),
      { logits: 'last' },
    );
    // the 300 short ones, the long one in 2 chunks, the 20 short ones
    expect(calls).toEqual([300, 1, 1, 20]);
    const apart: PrefillResult[] = [];
    for (const tokens of prompts) apart.push(...(await m.prefill([{ tokens, logits: [0, tokens.length - 1] }])));
    expectSame(all, apart);
    for (const r of [...all, ...apart]) r.sequence.dispose();
  });
});
