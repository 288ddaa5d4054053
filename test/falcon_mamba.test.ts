/**
 * Falcon-Mamba (FalconMambaForCausalLM): Mamba-1 plus weightless RMS norms of dt_low (the dtRank
 * slice of x_proj's output, before dt_proj), B and C, with the config's own mixer_rms_eps.
 *   - the float64 reference (test/reference/mamba_ref.ts) against a direct computation of one layer,
 *     with the norms on and off;
 *   - the native CPU engine against the reference: every position of a prefill, decode after it,
 *     Simba-pruned prefills with keep counts, bf16 and int8 storage, the falcon-mamba-7b shape.
 * The random models use a mixer_rms_eps far from the block norms' eps (0.05 against 1e-5), so an
 * engine that used the wrong epsilon, or skipped a norm, misses the reference by orders of magnitude.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { loadModel, randomModel, shapeInfo, SHAPES } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import type { MambaConfig } from '../lib/types';
import {
  refForward,
  refMixer,
  refRmsNormPlain,
  refWeightsFromEngineTensors,
  softplus,
  zeroState,
  type RefWeights,
} from './reference/mamba_ref';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { engineError, expectStorageFormats, maxRowErr, randTokens, writeCheckpoint } from './helpers/util';

const INT8_TOL = 6e-2; // as test/int8.test.ts
const BF16_TOL = 2e-2; // as test/model.test.ts

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// ---------------------------------------------------------------------------------------------
// The reference
// ---------------------------------------------------------------------------------------------

describe('float64 reference', () => {
  const base = randomConfig({
    vocabSize: 40,
    dModel: 16,
    nLayer: 2,
    dState: 6,
    dtRank: 4,
  });
  const tensors = randomEngineTensors(base, 5);
  const w = refWeightsFromEngineTensors(base, tensors);
  const T = 7;
  const h = Float64Array.from({ length: T * base.dModel }, (_, i) => Math.sin(i * 0.37) * 1.5);

  /** dt, B and C of layer 0 computed here from the mixer's own x (after conv + silu), with or without the norms. */
  function direct(cfg: MambaConfig, x: Float64Array): { dt: Float64Array; B: Float64Array; C: Float64Array } {
    const { dInner: E, dState: N, dtRank: R } = cfg;
    const lw = w.layers[0];
    const dt = new Float64Array(T * E),
      B = new Float64Array(T * N),
      C = new Float64Array(T * N);
    const norm = (v: Float64Array): Float64Array => {
      if (cfg.mixerRmsEps === undefined) return v;
      const ms = v.reduce((a, b) => a + b * b, 0) / v.length;
      return v.map((e) => e / Math.sqrt(ms + (cfg.mixerRmsEps as number)));
    };
    for (let t = 0; t < T; t++) {
      const dbc = new Float64Array(R + 2 * N);
      for (let i = 0; i < R + 2 * N; i++) for (let e = 0; e < E; e++) dbc[i] += lw.xProj[i * E + e] * x[t * E + e];
      const dtLow = norm(dbc.slice(0, R));
      B.set(norm(dbc.slice(R, R + N)), t * N);
      C.set(norm(dbc.slice(R + N)), t * N);
      for (let e = 0; e < E; e++) {
        let acc = lw.dtProjB[e];
        for (let r = 0; r < R; r++) acc += lw.dtProjW[e * R + r] * dtLow[r];
        dt[t * E + e] = softplus(acc);
      }
    }
    return { dt, B, C };
  }

  test('flag off: dt, B and C are the raw x_proj slices (Mamba-1 unchanged)', () => {
    const mix = refMixer(base, w.layers[0], h, T, zeroState(base)[0]);
    const want = direct(base, mix.x);
    expect(maxAbsDiff(mix.B, want.B)).toBeLessThan(1e-12);
    expect(maxAbsDiff(mix.C, want.C)).toBeLessThan(1e-12);
    expect(maxAbsDiff(mix.dt, want.dt)).toBeLessThan(1e-12);
    // the raw slices are not unit-RMS, so the norms below really change them
    const rms = Math.sqrt(mix.B.slice(0, base.dState).reduce((a, b) => a + b * b, 0) / base.dState);
    expect(Math.abs(rms - 1)).toBeGreaterThan(0.1);
  });

  test('flag on: dt_low, B and C each normalised with mixer_rms_eps, no weight', () => {
    for (const eps of [1e-6, 0.05]) {
      const cfg = { ...base, mixerRmsEps: eps };
      const mix = refMixer(cfg, w.layers[0], h, T, zeroState(cfg)[0]);
      const want = direct(cfg, mix.x);
      expect(maxAbsDiff(mix.B, want.B)).toBeLessThan(1e-12);
      expect(maxAbsDiff(mix.C, want.C)).toBeLessThan(1e-12);
      expect(maxAbsDiff(mix.dt, want.dt)).toBeLessThan(1e-12);
      // each row of B: mean square = ms / (ms + eps), i.e. 1 for a negligible eps
      const row = mix.B.slice(0, cfg.dState);
      const ms = row.reduce((a, b) => a + b * b, 0) / cfg.dState;
      if (eps === 1e-6) expect(Math.abs(ms - 1)).toBeLessThan(1e-4);
      else expect(ms).toBeLessThan(0.99);
    }
  });

  test('the norms and their epsilon change the logits', () => {
    const ids = randTokens(9, base.vocabSize, 3);
    const off = refForward(base, w, ids).logits;
    const on = refForward({ ...base, mixerRmsEps: 1e-6 }, w, ids).logits;
    const onBigEps = refForward({ ...base, mixerRmsEps: 0.05 }, w, ids).logits;
    expect(maxRowErr(on, off)).toBeGreaterThan(1e-2);
    expect(maxRowErr(onBigEps, on)).toBeGreaterThan(1e-3);
  });

  test('refRmsNormPlain: x / sqrt(mean(x^2) + eps), by hand', () => {
    const got = refRmsNormPlain(Float64Array.from([3, -4, 0.5]), 0.25);
    const s = Math.sqrt((9 + 16 + 0.25) / 3 + 0.25);
    expect(maxAbsDiff(got, [3 / s, -4 / s, 0.5 / s])).toBeLessThan(1e-15);
  });
});

// ---------------------------------------------------------------------------------------------
// The native CPU engine against the reference
// ---------------------------------------------------------------------------------------------

const variants: [string, Partial<MambaConfig>][] = [
  [
    'mixer eps 0.05, untied, dt_rank 5',
    {
      dModel: 24,
      nLayer: 3,
      dState: 8,
      dtRank: 5,
      tieEmbeddings: false,
      mixerRmsEps: 0.05,
    },
  ],
  [
    'mixer eps 1e-6, odd d_model 23, d_state 16, biases',
    {
      dModel: 23,
      dInner: 46,
      dtRank: 2,
      dState: 16,
      projBias: true,
      tieEmbeddings: false,
      mixerRmsEps: 1e-6,
    },
  ],
];

describe.each(variants)('Falcon-Mamba on the CPU: %s', (_name, over) => {
  const cfg = randomConfig({ vocabSize: 97, ...over });
  const tensors = randomEngineTensors(cfg, 17);
  const ref: RefWeights = refWeightsFromEngineTensors(cfg, tensors);
  const dir = writeCheckpoint(cfg, tensors); // config.json: falcon_mamba, expand 16 (misleading, as in the 7b)
  const ids = randTokens(23, cfg.vocabSize, 9);
  const expected = refForward(cfg, ref, ids).logits;
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(dir);
  });
  afterAll(() => m.dispose());

  test('loads as Falcon-Mamba: mixerRmsEps and d_inner from the checkpoint config', () => {
    expect(m.info().config.mixerRmsEps).toBe(cfg.mixerRmsEps);
    expect(m.info().config.dInner).toBe(cfg.dInner);
  });

  test('logits at every position within 1e-5 of float64; far from Mamba-1 and from the wrong epsilon', async () => {
    const got = (await m.logits(ids, 'all')).logits;
    expect(maxRowErr(got, expected)).toBeLessThan(1e-5);
    const { mixerRmsEps: _e, ...mamba1 } = cfg;
    expect(maxRowErr(got, refForward(mamba1, ref, ids).logits)).toBeGreaterThan(1e-3);
    if (cfg.mixerRmsEps === 0.05)
      expect(maxRowErr(got, refForward({ ...cfg, mixerRmsEps: cfg.eps }, ref, ids).logits)).toBeGreaterThan(1e-3);
  });

  test('prefill then token-by-token decode, and a batched decode of several sequences, within 1e-5', async () => {
    const seq = m.newSequence();
    const [p] = await m.prefill([{ sequence: seq, tokens: ids.slice(0, 8) }], {
      logits: 'all',
    });
    const rows = [...p.logits];
    for (let t = 8; t < ids.length; t++) rows.push((await m.decode([seq], [ids[t]]))[0]);
    expect(maxRowErr(rows, expected)).toBeLessThan(1e-5);
    seq.dispose();

    const prompts = [1, 5, 11, 3].map((n, i) => randTokens(n, cfg.vocabSize, 40 + i));
    const seqs = (
      await m.prefill(
        prompts.map((tokens) => ({ tokens })),
        { logits: 'none' },
      )
    ).map((r) => r.sequence);
    const next = [7, 19, 31, 43];
    const batched = await m.decode(seqs, next);
    for (let i = 0; i < prompts.length; i++) {
      const r = refForward(cfg, ref, [...prompts[i], next[i]]).logits;
      expect(maxRowErr([batched[i]], [r[r.length - 1]])).toBeLessThan(1e-5);
    }
    for (const q of seqs) q.dispose();
  });

  test.each(['simba', 'local'] as const)(
    'Simba-pruned prefill (criterion %s, keep counts, max and sum): kept sets and logits match float64',
    async (criterion) => {
      const keepCounts = Array.from({ length: cfg.nLayer }, (_, l) => Math.max(3, 19 - 6 * l));
      for (const reduce of ['max', 'sum'] as const) {
        const got = await m.logits(ids, 'all', {
          simba: { keepCounts, criterion, reduce },
        });
        const want = refForward(cfg, ref, ids, undefined, {
          simba: { keepCounts, criterion, reduce },
        });
        for (let l = 1; l < cfg.nLayer; l++) {
          const processed = ids.map((_, t) => t).filter((t) => got.exitLayer[t] > l);
          expect(processed).toEqual(want.kept[l - 1]);
        }
        expect(got.processed).toEqual([ids.length, ...keepCounts.slice(0, cfg.nLayer - 1)]);
        expect(maxRowErr(got.logits, want.logits)).toBeLessThan(1e-5);
      }
    },
  );

  test('decode after a Simba-pruned prefill continues from the pruned states (within 1e-5)', async () => {
    const keepCounts = Array.from({ length: cfg.nLayer }, (_, l) => Math.max(2, 15 - 5 * l));
    const simba = {
      keepCounts,
      criterion: 'simba' as const,
      reduce: 'max' as const,
    };
    const seq = m.newSequence();
    await m.prefill([{ sequence: seq, tokens: ids.slice(0, 20) }], { simba });
    const want = refForward(cfg, ref, ids.slice(0, 20), undefined, { simba });
    const after = refForward(cfg, ref, [ids[20]], want.state).logits;
    expect(maxRowErr(await m.decode([seq], [ids[20]]), after)).toBeLessThan(1e-5);
    seq.dispose();
  });

  test('bf16 and int8 weight storage within their stated tolerances', async () => {
    await expectStorageFormats(dir, async (q) => (await q.logits(ids, 'all')).logits, expected, {
      bf16: BF16_TOL,
      int8: INT8_TOL,
    });
  });
});

test("the 'falcon-mamba-7b' shape: the 7b's sizes, 7.27e9 parameters, an untied head", () => {
  const c = SHAPES['falcon-mamba-7b'];
  expect(c).toMatchObject({
    dModel: 4096,
    nLayer: 64,
    dInner: 8192,
    dState: 16,
    dtRank: 256,
    vocabSize: 65024,
  });
  expect(c).toMatchObject({
    tieEmbeddings: false,
    mixerRmsEps: 1e-6,
    eps: 1e-5,
  });
  const { vocabSize: V, dModel: d, nLayer: L, dInner: E, dState: N, dtRank: R, dConv: K } = c;
  const perLayer = d + 2 * E * d + E * K + E + (R + 2 * N) * E + E * R + E + E * N + E + d * E;
  const info = shapeInfo('falcon-mamba-7b', { weights: 'int8' });
  expect(info.paramCount).toBe(2 * V * d + d + L * perLayer);
  expect(info.paramCount).toBeGreaterThan(7.2e9);
  expect(info.paramCount).toBeLessThan(7.3e9);
  expect(info.config.mixerRmsEps).toBe(1e-6);
});

test('the addon takes mixerRmsEps as 0 (Mamba-1) or a positive number, and names anything else', () => {
  // a MambaConfig without its token ids is a NativeConfig
  const { bosTokenId: _b, eosTokenId: _e, padTokenId: _p, ...c } = randomConfig({ vocabSize: 16, dModel: 8, nLayer: 1 });
  expect(engineError({ ...c, mixerRmsEps: 1e-6 })).toEqual({});
  expect(engineError({ ...c, mixerRmsEps: 0 })).toEqual({});
  expect(engineError({ ...c, mixerRmsEps: -1 })).toMatchObject({
    code: 'E_CONFIG',
    message: expect.stringMatching(/mixerRmsEps/),
  });
  expect(engineError({ ...c, mixerRmsEps: NaN })).toMatchObject({
    code: 'E_CONFIG',
  });
  expect(engineError({ ...c, mixerRmsEps: '1e-6' as never })).toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/mixerRmsEps/),
  });
});

test('randomModel takes a Falcon-Mamba config in code, and refuses a bad mixerRmsEps with E_ARG', async () => {
  const cfg = randomConfig({ vocabSize: 50, tieEmbeddings: false });
  const ids = randTokens(6, cfg.vocabSize, 2);
  const plain = await randomModel(cfg, { seed: 3 });
  const falcon = await randomModel({ ...cfg, mixerRmsEps: 1e-6 }, { seed: 3 });
  try {
    expect(falcon.info().config.mixerRmsEps).toBe(1e-6);
    // same weights, the norms on: other logits
    const a = (await plain.logits(ids)).logits,
      b = (await falcon.logits(ids)).logits;
    expect(maxRowErr(b, a)).toBeGreaterThan(1e-3);
  } finally {
    plain.dispose();
    falcon.dispose();
  }
  await expect(randomModel({ ...cfg, mixerRmsEps: -1 })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/config\.mixerRmsEps/),
  });
});

// ---------------------------------------------------------------------------------------------
// The CUDA backend, emulated (libsimba_cuda_emu.so, built by bash bench/gpu_check.sh --emulate --quick)
// ---------------------------------------------------------------------------------------------

const ROOT = path.join(__dirname, '..');
const EMU_LIB = process.env.SIMBA_CUDA_EMU_LIB ?? path.join(ROOT, 'build', 'gpu-check', 'libsimba_cuda_emu.so');
const emuRequired = !!process.env.SIMBA_TEST_CUDA_EMU && process.env.SIMBA_TEST_CUDA_EMU !== '0';
const haveEmu = fs.existsSync(EMU_LIB);
if (!haveEmu && !emuRequired)
  console.log(`Falcon-Mamba device tests skipped: ${EMU_LIB} not built (bash bench/gpu_check.sh --emulate --quick)`);

// Runs in a child with SIMBA_CUDA_LIB set: one JSON line of relative errors (device against CPU).
const CUDA_CHILD = String.raw`
const S = require(process.argv[1]);
(async () => {
  const cfg = { vocabSize: 61, dModel: 24, nLayer: 3, dInner: 48, dState: 8, dtRank: 5, dConv: 4, convBias: true,
                projBias: false, eps: 1e-5, tieEmbeddings: false, mixerRmsEps: 0.05, bosTokenId: null, eosTokenId: null,
                padTokenId: null };
  const cpu = await S.randomModel(cfg, { seed: 4 });
  const dev = await S.randomModel(cfg, { seed: 4, device: 'cuda' });
  const { mixerRmsEps, ...mamba1 } = cfg;
  const plain = await S.randomModel(mamba1, { seed: 4 });
  const rel = (x, y) => { let n = 0, d = 0; for (let i = 0; i < y.length; i++) { n += (x[i] - y[i]) ** 2; d += y[i] ** 2; }
                          return Math.sqrt(n / d); };
  const rows = (a, b) => Math.max(...a.map((r, i) => rel(r, b[i])));
  const ids = Array.from({ length: 21 }, (_, i) => (i * 17 + 5) % cfg.vocabSize);
  const out = { device: dev.info().device };
  const [c, d, p] = [await cpu.logits(ids, 'all'), await dev.logits(ids, 'all'), await plain.logits(ids, 'all')];
  out.prefill = rows(d.logits, c.logits);
  out.vsMamba1 = rows(d.logits, p.logits);
  const seqs = [cpu.newSequence(), dev.newSequence()];
  await cpu.prefill([{ sequence: seqs[0], tokens: ids }], { logits: 'none' });
  await dev.prefill([{ sequence: seqs[1], tokens: ids }], { logits: 'none' });
  out.decode = rel((await dev.decode([seqs[1]], [9]))[0], (await cpu.decode([seqs[0]], [9]))[0]);
  const simba = { keepCounts: [15, 9, 4], criterion: 'simba', reduce: 'max' };
  const [cs, ds] = [await cpu.logits(ids, 'all', { simba }), await dev.logits(ids, 'all', { simba })];
  out.simba = rows(ds.logits, cs.logits);
  out.sameExits = Array.from(cs.exitLayer).join() === Array.from(ds.exitLayer).join();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
`;

(haveEmu || emuRequired ? test : test.skip)(
  'Falcon-Mamba on the emulated CUDA backend: prefill, decode and a Simba-pruned prefill match the CPU',
  () => {
    if (!haveEmu) throw new Error(`SIMBA_TEST_CUDA_EMU is set but ${EMU_LIB} does not exist`);
    const r = spawnSync(process.execPath, ['-e', CUDA_CHILD, path.join(ROOT, 'dist', 'lib', 'index.js')], {
      env: { ...process.env, SIMBA_CUDA_LIB: EMU_LIB },
      encoding: 'utf8',
      timeout: 150000,
    });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(out.device).toBe('cuda');
    expect(out.prefill).toBeLessThan(1e-4);
    expect(out.vsMamba1).toBeGreaterThan(1e-3); // the device applied the norms
    expect(out.decode).toBeLessThan(1e-4);
    expect(out.simba).toBeLessThan(1e-4);
    expect(out.sameExits).toBe(true);
  },
  180000,
);
