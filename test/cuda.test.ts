/**
 * The CUDA backend against the CPU engine: every CUDA kernel (the kernel table of
 * test/helpers/kernel_cases.ts, shared with test/kernels.test.ts) and the whole model (random configs,
 * the shipped brown-mamba-s), on random inputs of a fixed seed (SIMBA_TEST_SEED overrides it), by
 * relative error (<= 1e-4 with f32 weights, <= 2e-2 with bf16), including Simba kept sets (exit layers equal), processed counts, early exits,
 * states and decode.
 *
 * Without a GPU (CI, developer machines) every device test is skipped with the reason, printed once;
 * `npm run test:cuda` sets SIMBA_TEST_CUDA=1, which turns a missing GPU into a failure, so a GPU
 * run cannot pass by skipping. The kernels can also be checked without a GPU under the host
 * emulation in native/cuda/emu/ (run.sh).
 */
import * as path from 'path';

import { loadAddon } from '../bindings';
import { loadModel, randomModel } from '../lib/engine/load';
import { generate } from '../lib/generate/generate';
import type { MambaModel } from '../lib/engine/model';
import type { PrefillResult } from '../lib/engine/lm';
import type { SimbaOptions } from '../lib/engine/simba';
import type { MambaConfig } from '../lib/types';
import { randomConfig } from './reference/random_model';
import { kernelCases, overLimits } from './helpers/kernel_cases';
import { maxRowErr, randTokens, relErr, stateOf, testSeed } from './helpers/util';

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');
const addon = loadAddon();
const status = addon.cudaAvailable();
const required = !!process.env.SIMBA_TEST_CUDA && process.env.SIMBA_TEST_CUDA !== '0';
const seed0 = testSeed(20251); // fixed (SIMBA_TEST_SEED overrides); the seed is in the test names

if (!status.available && !required) {
  console.log(`CUDA tests skipped (set SIMBA_TEST_CUDA=1 to require a GPU): ${status.reason}`);
}

describe('CUDA availability', () => {
  test(required ? 'a CUDA device is available (SIMBA_TEST_CUDA=1)' : 'cudaAvailable() reports a reason', () => {
    if (required && !status.available) throw new Error(`SIMBA_TEST_CUDA is set but no GPU can be used: ${status.reason}`);
    expect(typeof status.reason).toBe('string');
    if (status.available) expect(status.device).toMatch(/\S/);
    else expect(status.reason).toMatch(/Tried:/);
  });

  (status.available ? test.skip : test)(
    "without a GPU, device 'cuda' fails with the reason and 'auto' picks the CPU",
    async () => {
      await expect(randomModel(randomConfig(), { device: 'cuda' })).rejects.toThrow(/device 'cuda' is not available/);
      // the documented class: CUDA (or a GPU) is not available, not a bad argument
      await expect(randomModel(randomConfig(), { device: 'cuda' })).rejects.toMatchObject({ code: 'E_CUDA' });
      await expect(loadModel(SHIPPED, { device: 'cuda' })).rejects.toThrow(/Tried:/);
      const m = await randomModel(randomConfig(), { device: 'auto' });
      try {
        expect(m.info().device).toBe('cpu');
      } finally {
        m.dispose();
      }
    },
  );
});

const d = status.available ? describe : describe.skip;

// The kernel table shared with test/kernels.test.ts: every case with CUDA limits, the CUDA kernel
// against the active CPU build.
d(`CUDA kernels vs CPU kernels (seed ${seed0})`, () => {
  const cases = kernelCases(seed0).filter((c) => c.tol.cuda);
  test.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const want = c.run(addon.kernels),
      got = c.run(addon.cudaKernels);
    expect(overLimits(got, want, c.tol.cuda!)).toEqual([]);
  });
});

/** Same random weights on both devices (the engines' randomize() is the same generator). */
async function pair(cfg: MambaConfig, weights: 'f32' | 'bf16', seed: number): Promise<[MambaModel, MambaModel]> {
  const a = await randomModel(cfg, { device: 'cpu', weights, seed });
  const b = await randomModel(cfg, { device: 'cuda', weights, seed });
  return [a, b];
}

async function compareResults(got: PrefillResult[], want: PrefillResult[], tol: number, exact: boolean): Promise<void> {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    expect(got[i].processed).toEqual(want[i].processed);
    if (exact) expect(Array.from(got[i].exitLayer)).toEqual(Array.from(want[i].exitLayer));
    expect(maxRowErr(got[i].logits, want[i].logits)).toBeLessThan(tol);
    expect(relErr(await stateOf(got[i].sequence), want[i].sequence.state)).toBeLessThan(tol);
  }
}

const variants: [string, Partial<MambaConfig>][] = [
  ['d_state 16', { dModel: 64, dState: 16, nLayer: 3 }],
  ['d_state 5', { dState: 5 }],
  ['d_state 24, odd d_model 23', { dModel: 23, dInner: 46, dtRank: 2, dState: 24 }],
  ['conv kernel 2, dt_rank 7', { dModel: 32, dtRank: 7, dConv: 2 }],
  ['untied head, projection biases, no conv bias', { tieEmbeddings: false, projBias: true, convBias: false }],
  ['wide: d 128, N 16, vocab 1000', { dModel: 128, dState: 16, vocabSize: 1000, nLayer: 2 }],
];

d(`CUDA model vs CPU model (seed ${seed0})`, () => {
  test.each(variants)('%s: batched prefill (all positions), then decode; f32 and bf16', async (_name, over) => {
    const cfg = randomConfig(over);
    for (const weights of ['f32', 'bf16'] as const) {
      const tol = weights === 'f32' ? 1e-4 : 2e-2;
      const [c, g] = await pair(cfg, weights, seed0 % 1000);
      try {
        expect(g.info().device).toBe('cuda');
        expect(g.info().paramCount).toBe(c.info().paramCount);
        const prompts = [
          randTokens(1, cfg.vocabSize, seed0 + 1),
          randTokens(17, cfg.vocabSize, seed0 + 2),
          randTokens(130, cfg.vocabSize, seed0 + 3),
        ];
        const want = await c.prefill(
          prompts.map((tokens) => ({ tokens })),
          { logits: 'all' },
        );
        const got = await g.prefill(
          prompts.map((tokens) => ({ tokens })),
          { logits: 'all' },
        );
        await compareResults(got, want, tol, true);
        const cs = want.map((r) => r.sequence),
          gs = got.map((r) => r.sequence);
        for (let step = 0; step < 3; step++) {
          const next = randTokens(3, cfg.vocabSize, seed0 + 10 + step);
          const a = await c.decode(cs, next),
            b = await g.decode(gs, next);
          expect(maxRowErr(b, a)).toBeLessThan(tol);
        }
        for (let i = 0; i < cs.length; i++) expect(relErr(await stateOf(gs[i]), cs[i].state)).toBeLessThan(tol);
      } finally {
        c.dispose();
        g.dispose();
      }
    }
  });

  test('continued prefill from a state, and one sequence in many chunks, match the CPU', async () => {
    const cfg = randomConfig({ dModel: 48, dState: 16, nLayer: 2 });
    const [c, g] = await pair(cfg, 'f32', 3);
    try {
      const ids = randTokens(300, cfg.vocabSize, seed0 + 4);
      const sc = c.newSequence(),
        sg = g.newSequence();
      for (const [a, b] of [
        [0, 5],
        [5, 6],
        [6, 70],
        [70, 300],
      ]) {
        const [x] = await c.prefill([{ sequence: sc, tokens: ids.slice(a, b) }], { logits: 'all' });
        const [y] = await g.prefill([{ sequence: sg, tokens: ids.slice(a, b) }], { logits: 'all' });
        expect(maxRowErr(y.logits, x.logits)).toBeLessThan(1e-4);
      }
      expect(relErr(await stateOf(sg), sc.state)).toBeLessThan(1e-4);
    } finally {
      c.dispose();
      g.dispose();
    }
  });

  test.each(['simba', 'local', 'norm', 'uniform', 'random'] as const)(
    'Simba criterion %s: kept sets (exit layers), processed counts, early-exit logits and states',
    async (criterion) => {
      const cfg = randomConfig({ dModel: 48, dState: 16, nLayer: 4 });
      const [c, g] = await pair(cfg, 'f32', 5);
      try {
        const prompts = [
          randTokens(40, cfg.vocabSize, seed0 + 5),
          randTokens(9, cfg.vocabSize, seed0 + 6),
          randTokens(150, cfg.vocabSize, seed0 + 7),
        ];
        const options: SimbaOptions[] = [
          { rLast: 0.1, criterion, reduce: 'max' },
          { flops: 0.5, criterion, reduce: 'sum', protect: { first: 2, last: 3 }, seed: 11 },
          { keepCounts: [30, 12, 5], criterion, seed: 3 },
        ];
        for (const simba of options) {
          const want = await c.prefill(
            prompts.map((tokens) => ({ tokens })),
            { logits: 'all', simba },
          );
          const got = await g.prefill(
            prompts.map((tokens) => ({ tokens })),
            { logits: 'all', simba },
          );
          await compareResults(got, want, 1e-4, true);
          // decode continues densely from the pruned states
          const a = await c.decode(
            want.map((r) => r.sequence),
            [1, 2, 3],
          );
          const b = await g.decode(
            got.map((r) => r.sequence),
            [1, 2, 3],
          );
          expect(maxRowErr(b, a)).toBeLessThan(1e-4);
        }
      } finally {
        c.dispose();
        g.dispose();
      }
    },
  );
});

d('shipped brown-mamba-s on CUDA', () => {
  let c: MambaModel, g: MambaModel;
  beforeAll(async () => {
    c = await loadModel(SHIPPED);
    g = await loadModel(SHIPPED, { device: 'cuda' });
  });
  afterAll(() => {
    c?.dispose();
    g?.dispose();
  });

  test('info reports the device', () => {
    expect(g.info().device).toBe('cuda');
    expect(g.info().isa).toBe('cuda');
  });

  test('logits at every position and with Simba (flops 0.5) match the CPU', async () => {
    const ids = c.tokenizer!.encode(
      'The Fulton County Grand Jury said Friday an investigation of recent primary elections produced no evidence that any irregularities took place.',
    );
    const a = await c.logits(ids, 'all'),
      b = await g.logits(ids, 'all');
    expect(maxRowErr(b.logits, a.logits)).toBeLessThan(1e-4);
    for (const criterion of ['simba', 'norm'] as const) {
      const sa = await c.logits(ids, 'all', { simba: { flops: 0.5, criterion } });
      const sb = await g.logits(ids, 'all', { simba: { flops: 0.5, criterion } });
      expect(Array.from(sb.exitLayer)).toEqual(Array.from(sa.exitLayer));
      expect(sb.processed).toEqual(sa.processed);
      expect(maxRowErr(sb.logits, sa.logits)).toBeLessThan(1e-4);
    }
  });

  test('greedy generation gives the same text', async () => {
    const opts = { maxTokens: 24, temperature: 0 };
    let a = '',
      b = '';
    for await (const p of generate(c, 'It was a cold morning in the city', opts)) a += p.text;
    for await (const p of generate(g, 'It was a cold morning in the city', opts)) b += p.text;
    expect(b).toBe(a);
  });

  test('bf16 weights stay within 2e-2 of the CPU bf16 model', async () => {
    const c16 = await loadModel(SHIPPED, { weights: 'bf16' });
    const g16 = await loadModel(SHIPPED, { weights: 'bf16', device: 'cuda' });
    try {
      const ids = c.tokenizer!.encode('He said that the committee would meet again next week.');
      const a = await c16.logits(ids, 'all'),
        b = await g16.logits(ids, 'all');
      expect(maxRowErr(b.logits, a.logits)).toBeLessThan(2e-2);
    } finally {
      c16.dispose();
      g16.dispose();
    }
  });
});
