/**
 * The float64 Mamba-2 reference (test/reference/mamba2_ref.ts) checked against itself from
 * independent sides, before any engine is compared with it: the chunked SSD form equals the
 * recurrence (chunk boundaries inside and exactly at the end, carried states, G = 1 and G > 1,
 * P != N), a prompt split in pieces equals it whole, the Simba contributions sum to the last
 * output, and the gated norm is per group. (On the trained brown-mamba2-s it gives the held-out
 * perplexity its README states: 70.301 at ctx 256; measured once, see bench/RESULTS.md.)
 */
import {
  convChannels,
  dInner,
  inProjRows,
  mamba2ZeroState,
  refMamba2Contributions,
  refMamba2Forward,
  refMamba2Inputs,
  refMamba2Scores,
  refRmsNormGroups,
  refSsdChunked,
  refSsdSequential,
  type Mamba2RefConfig,
  type Mamba2RefWeights,
} from './reference/mamba2_ref';
import { makeRng, randn } from './reference/random_model';

const base: Mamba2RefConfig = {
  d: 16,
  L: 2,
  V: 32,
  H: 4,
  P: 6,
  G: 2,
  N: 5,
  K: 4,
  eps: 1e-5,
  dtLimit: [0, Infinity],
  chunk: 8,
  convBias: true,
};

function randomWeights(c: Mamba2RefConfig, seed: number, tied = true): Mamba2RefWeights {
  const rng = makeRng(seed);
  const E = dInner(c);
  const CH = convChannels(c);
  const r = (n: number, std: number) => randn(rng, n, std);
  return {
    embedding: r(c.V * c.d, 1),
    normF: r(c.d, 0.1).map((v) => 1 + v),
    lmHead: tied ? null : r(c.V * c.d, 0.5),
    layers: Array.from({ length: c.L }, () => ({
      norm: r(c.d, 0.1).map((v) => 1 + v),
      inProj: r(inProjRows(c) * c.d, 0.4),
      convW: r(CH * c.K, 0.5),
      convB: c.convBias ? r(CH, 0.1) : null,
      dtBias: r(c.H, 0.5).map((v) => v - 2),
      ALog: r(c.H, 0.5).map((v) => v + 0.5),
      D: r(c.H, 0.5),
      gateNorm: r(E, 0.1).map((v) => 1 + v),
      outProj: r(c.d * E, 0.3),
    })),
  };
}

const maxRel = (a: Float64Array, b: Float64Array): number => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
};

describe.each([
  ['G=2, P=6 != N=5', base],
  ['G=1', { ...base, G: 1 }],
  [
    'G=4 (a group per head), no conv bias, dt clamped',
    { ...base, G: 4, convBias: false, dtLimit: [0.01, 0.5] as [number, number] },
  ],
])('Mamba-2 reference, %s', (_, c) => {
  const seed = 20261207;
  test.each([1, 7, 8, 9, 16, 21])('chunked SSD = recurrence, T=%i (chunk 8), from a non-zero state', (T) => {
    const rng = makeRng(seed + T);
    const E = dInner(c);
    const GN = c.G * c.N;
    const x = randn(rng, T * E, 1);
    const B = randn(rng, T * GN, 1);
    const C = randn(rng, T * GN, 1);
    const dt = randn(rng, T * c.H, 0.3).map((v) => Math.abs(v) + 0.01);
    const A = randn(rng, c.H, 1).map((v) => -Math.exp(v));
    const s0 = randn(rng, c.H * c.P * c.N, 1);
    const s1 = Float64Array.from(s0);
    const s2 = Float64Array.from(s0);
    const y1 = refSsdSequential(c, x, B, C, dt, A, T, s1);
    const y2 = refSsdChunked(c, x, B, C, dt, A, T, s2);
    expect(maxRel(y2, y1)).toBeLessThan(1e-12);
    expect(maxRel(s2, s1)).toBeLessThan(1e-12);
  });

  test('logits of a prompt whole = in pieces (states carried), chunked = sequential, tied and untied heads', () => {
    for (const tied of [true, false]) {
      const w = randomWeights(c, seed, tied);
      const tokens = Array.from({ length: 19 }, (_, i) => (i * 7 + 3) % c.V);
      const whole = refMamba2Forward(c, w, tokens, mamba2ZeroState(c));
      const chunked = refMamba2Forward(c, w, tokens, mamba2ZeroState(c), 'chunked');
      expect(maxRel(chunked, whole)).toBeLessThan(1e-12);
      const st = mamba2ZeroState(c);
      const parts = [tokens.slice(0, 5), tokens.slice(5, 6), tokens.slice(6, 19)].map((p) =>
        refMamba2Forward(c, w, p, st, 'chunked'),
      );
      const joined = new Float64Array(whole.length);
      let off = 0;
      for (const p of parts) {
        joined.set(p, off);
        off += p.length;
      }
      expect(maxRel(joined, whole)).toBeLessThan(1e-12);
    }
  });

  test('Simba contributions sum to the last output; scores reduce them by max and sum', () => {
    const w = randomWeights(c, seed + 1);
    const T = 13;
    const st = mamba2ZeroState(c);
    const rng = makeRng(seed + 2);
    const u = randn(rng, T * c.d, 1);
    const { x, B, C, dt, A } = refMamba2Inputs(c, w.layers[0], u, T, st[0]);
    const y = refSsdSequential(c, x, B, C, dt, A, T, new Float64Array(c.H * c.P * c.N));
    const contrib = refMamba2Contributions(c, x, B, C, dt, A, T);
    const E = dInner(c);
    const sum = new Float64Array(E);
    for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) sum[e] += contrib[t * E + e];
    expect(maxRel(sum, y.subarray((T - 1) * E))).toBeLessThan(1e-12);
    const mx = refMamba2Scores(c, x, B, C, dt, A, T, 'max');
    const sm = refMamba2Scores(c, x, B, C, dt, A, T, 'sum');
    for (let t = 0; t < T; t++) {
      const row = Array.from(contrib.subarray(t * E, (t + 1) * E), Math.abs);
      expect(mx[t]).toBe(Math.max(...row));
      expect(sm[t]).toBeCloseTo(
        row.reduce((a, b) => a + b, 0),
        12,
      );
    }
  });
});

test('the gated norm is per group: scaling one group leaves the others unchanged', () => {
  const rng = makeRng(5);
  const n = 12;
  const x = randn(rng, n, 1);
  const w = new Float64Array(n).fill(1);
  const a = refRmsNormGroups(x, 1, n, 4, w, 1e-5);
  const x2 = Float64Array.from(x);
  for (let j = 4; j < 8; j++) x2[j] *= 10;
  const b = refRmsNormGroups(x2, 1, n, 4, w, 1e-5);
  for (const j of [0, 1, 2, 3, 8, 9, 10, 11]) expect(b[j]).toBe(a[j]);
  for (let j = 4; j < 8; j++) expect(b[j]).toBeCloseTo(a[j], 4); // eps weighs 100x less there
  // each group has unit mean square (eps aside)
  for (let g = 0; g < 3; g++) {
    const ms = Array.from(a.subarray(g * 4, g * 4 + 4)).reduce((s, v) => s + v * v, 0) / 4;
    expect(ms).toBeCloseTo(1, 3);
  }
});
