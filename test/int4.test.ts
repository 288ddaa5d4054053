/**
 * int4 weights (weights: 'int4'): blocks of 32 inputs per output feature, 4-bit values with a
 * half-float scale each, quantized at load (native/engine/model.cc quantize_q4_block); activations
 * quantized per row to signed bytes; int32 block sums (vpdpbusd, or the portable kernel), one FMA per
 * block (native/cpu/gemm_int4*.cc). Stated tolerances: the GEMM within 1e-5 of its float64 reference
 * (test/reference/q4_ref.ts) and within 0.1 of the exact float64 product on uniform random inputs
 * (measured 5.4e-2 to 5.9e-2); model logits within 0.35 (max relative error per position) of float64
 * on the shipped model and random configs; the shipped model's held-out perplexity within +3% of f32.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadAddon } from '../bindings';
import { loadModel, randomModel, tensorTable } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import { loadWeights } from '../lib/checkpoint/weights';
import { loadConfig } from '../lib/checkpoint/config';
import { perplexity } from '../lib/measure/eval';
import type { MambaConfig } from '../lib/types';
import { refForward, refGemm, refWeightsFromEngineTensors } from './reference/mamba_ref';
import { onQ4Grid, q4_0Block, refGemmQ4, sse } from './reference/q4_ref';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { expectStorageFormats, maxRowErr, randArray, randTokens, relErr, testSeed, writeCheckpoint } from './helpers/util';

const addon = loadAddon();
const isas = addon.availableIsas();
const seed0 = testSeed(4104);
const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');
const HELDOUT = path.join(__dirname, 'fixtures', 'brown-heldout-slice.txt');
const INT4_TOL = 0.35;

afterAll(() => addon.setIsa(isas[0]));

test(`int4 weights: every block on the Q4 grid, its squared error at most llama.cpp Q4_0's (seed ${seed0})`, () => {
  const N = 37,
    K = 101; // a last block of 5 inputs, a last panel of 5 features
  const W = randArray(N * K, seed0);
  for (let i = 0; i < W.length; i += 97) W[i] *= 20; // outliers
  for (let k = 0; k < 32; k++) W[3 * K + k] = 0; // an all-zero block
  const Wq = addon.kernels.readPacked({ W, N, K, format: 'int4' });
  let ours = 0,
    q40 = 0;
  for (let n = 0; n < N; n++)
    for (let k0 = 0; k0 < K; k0 += 32) {
      const x = W.subarray(n * K + k0, n * K + Math.min(K, k0 + 32));
      const y = Wq.subarray(n * K + k0, n * K + Math.min(K, k0 + 32));
      expect(onQ4Grid(y)).toBe(true);
      const e = sse(x, y),
        e0 = sse(x, q4_0Block(x));
      expect(e).toBeLessThanOrEqual(e0 * (1 + 1e-9) + 1e-30);
      ours += e;
      q40 += e0;
    }
  expect(Wq.subarray(3 * K, 3 * K + 32).every((v) => v === 0)).toBe(true);
  expect(ours).toBeLessThanOrEqual(q40);
  expect(relErr(Wq, W)).toBeLessThan(0.2); // 0.176 here (uniform values, a 20x outlier every 97)
});

describe.each(isas)('int4 gemm on %s', (isa) => {
  beforeAll(() => addon.setIsa(isa));

  test.each([
    [1, 45, 300],
    [7, 70, 1031],
    [37, 64, 2100],
    [100, 33, 64],
    [3, 5, 7],
    // 4.2 MB of nibbles: from 4 MB a weight buffer is a mapping of its own, 2 MB aligned, with
    // huge pages advised over its whole 2 MB pages (engine/model.cc); this one ends mid-page
    [2, 4100, 2048],
  ])(`M=%i N=%i K=%i against float64 (seed ${seed0})`, (M, N, K) => {
    const A = randArray(M * K, seed0 + M),
      W = randArray(N * K, seed0 + N),
      bias = randArray(N, seed0 + K);
    const C = addon.kernels.gemm({ A, W, bias, M, N, K, format: 'int4' });
    const Wq = addon.kernels.readPacked({ W, N, K, format: 'int4' });
    expect(relErr(C, refGemmQ4(A, Wq, bias, M, N, K))).toBeLessThan(1e-5);
    const err = relErr(C, refGemm(A, W, bias, M, N, K)); // against the exact float64 product
    expect(err).toBeLessThan(0.1);
    expect(err).toBeGreaterThan(1e-3); // really 4-bit
  });

  // Integer block sums, then the same float steps per row: a row's result does not depend on its tile.
  test('each row of M = 2..13 equals the same row computed alone (every tile size)', () => {
    const N = 45,
      K = 300;
    for (let M = 2; M <= 13; M++) {
      const A = randArray(M * K, seed0 + 7 * M),
        W = randArray(N * K, seed0 + 5),
        bias = randArray(N, seed0 + 6);
      const all = addon.kernels.gemm({ A, W, bias, M, N, K, format: 'int4' });
      for (const m of [0, M - 1]) {
        const one = addon.kernels.gemm({ A: A.subarray(m * K, (m + 1) * K), W, bias, M: 1, N, K, format: 'int4' });
        expect(Array.from(all.subarray(m * N, (m + 1) * N))).toEqual(Array.from(one));
      }
    }
  });
});

test('int4 gemm kernel: vpdpbusd with AVX512-VNNI at every row count, else the portable kernel', async () => {
  addon.setIsa(isas[0]);
  const flags = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const vnni = isas[0] === 'avx512' && / avx512_vnni/.test(flags);
  for (const M of [1, 32, 512]) {
    const r = await addon.kernels.gemmTime({ M, N: 64, K: 64, format: 'int4', reps: 1, minSeconds: 0 });
    expect(r.path).toBe(vnni ? 'int4 vpdpbusd' : 'int4 (portable)');
  }
});

// The bytes the int4 engine stores (native/cpu/kernels.h Q4): per matrix, panels of 32 features, K
// padded to blocks of 32, half a byte a weight and a 2-byte scale per block; the embedding / head in
// int8 (K padded to 4, a 4-byte scale and a 4-byte column sum per feature).
function int4Bytes(cfg: MambaConfig): number {
  const matrices = ['embedding', 'lm_head', 'in_proj', 'x_proj', 'dt_proj_w', 'out_proj'];
  let bytes = 0;
  for (const t of tensorTable(cfg)) {
    if (!t.required || !matrices.includes(t.name)) continue;
    const [N, K] = t.shape;
    const feats = Math.ceil(N / 32) * 32;
    bytes +=
      t.name === 'embedding' || t.name === 'lm_head'
        ? feats * Math.ceil(K / 4) * 4 + feats * 8
        : (feats * Math.ceil(K / 32) * 32) / 2 + feats * Math.ceil(K / 32) * 2;
  }
  return bytes;
}

test('shipped brown-mamba-s: int4 logits within 0.35 of float64 (bf16 2e-2, int8 6e-2), the int4 bytes stored', async () => {
  const cfg = loadConfig(SHIPPED);
  const ref = refWeightsFromEngineTensors(cfg, [...loadWeights(SHIPPED, cfg, tensorTable(cfg))]);
  const ids = randTokens(40, cfg.vocabSize, seed0);
  const want = refForward(cfg, ref, ids).logits;
  await expectStorageFormats(SHIPPED, async (q) => (await q.logits(ids, 'all')).logits, want, {
    bf16: 2e-2,
    int8: 6e-2,
    int4: INT4_TOL,
  });
  const m4 = await loadModel(SHIPPED, { weights: 'int4', tokenizer: false });
  try {
    expect(m4.info().weights).toBe('int4');
    expect(m4.info().weightBytes).toBe(int4Bytes(cfg));
  } finally {
    m4.dispose();
  }
});

const variants: [string, Partial<MambaConfig>][] = [
  ['odd d_model 23 (K not a multiple of 32)', { dModel: 23, dInner: 46, dtRank: 2 }],
  ['untied head', { tieEmbeddings: false }],
  ['projection biases, no conv bias', { projBias: true, convBias: false }],
];

describe.each(variants)('random config, int4: %s', (_name, over) => {
  const cfg = randomConfig({ vocabSize: 97, nLayer: 2, ...over });
  const tensors = randomEngineTensors(cfg, 17);
  const ids = randTokens(19, cfg.vocabSize, 8);
  const expected = refForward(cfg, refWeightsFromEngineTensors(cfg, tensors), ids).logits;

  test('prefill and decode logits within 0.35 of float64', async () => {
    const m = await loadModel(writeCheckpoint(cfg, tensors), { weights: 'int4' });
    try {
      const err = maxRowErr((await m.logits(ids, 'all')).logits, expected);
      expect(err).toBeLessThan(INT4_TOL);
      expect(err).toBeGreaterThan(1e-3);
      const seq = m.newSequence();
      const [p] = await m.prefill([{ sequence: seq, tokens: ids.slice(0, 1) }]);
      const rows = [p.logits[0]];
      for (let t = 1; t < ids.length; t++) rows.push((await m.decode([seq], [ids[t]]))[0]);
      expect(maxRowErr(rows, expected)).toBeLessThan(INT4_TOL);
    } finally {
      m.dispose();
    }
  });
});

test('int4 on CUDA is refused with E_ARG (the CUDA backend has no int4 kernels), whether or not a GPU is there', async () => {
  await expect(randomModel('mamba-130m', { weights: 'int4', device: 'cuda' })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/'int4' run on the CPU only/),
  });
  await expect(loadModel(SHIPPED, { weights: 'int4', device: 'cuda' })).rejects.toMatchObject({ code: 'E_ARG' });
  const cfg = loadConfig(SHIPPED);
  expect(() => new addon.Engine({ ...cfg, family: 'mamba' } as never, { bf16: false, int4: true, device: 'cuda' })).toThrow(
    /int4 weights run on the CPU only/,
  );
});

test('held-out perplexity of the shipped model: int4 within +3% of f32 (first 4096 tokens, ctx 256)', async () => {
  const models: MambaModel[] = [];
  try {
    models.push(await loadModel(SHIPPED), await loadModel(SHIPPED, { weights: 'int4' }));
    const ids = models[0].tokenizer!.encode(fs.readFileSync(HELDOUT, 'utf8').slice(0, 24000)).slice(0, 4096);
    expect(ids.length).toBe(4096);
    const [p32, p4] = [await perplexity(models[0], ids, { ctx: 256 }), await perplexity(models[1], ids, { ctx: 256 })];
    expect(p4.ppl / p32.ppl).toBeLessThan(1.03);
    expect(p4.ppl / p32.ppl).toBeGreaterThan(0.99);
    expect(p4.ppl).not.toBe(p32.ppl); // really int4
  } finally {
    for (const m of models) m.dispose();
  }
}, 300000);
