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
import type { MambaConfig } from '../lib/types';
import { refForward, refMixer, refRmsNormPlain, refWeightsFromEngineTensors, softplus, zeroState } from './reference/mamba_ref';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { maxRowErr, randTokens } from './helpers/util';

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
  const base = randomConfig({ vocabSize: 40, dModel: 16, nLayer: 2, dState: 6, dtRank: 4 });
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
