/**
 * Self-tests of the float64 reference (test/reference/): the reference is what the native engine is
 * checked against, so it is checked here against independent derivations of the same math.
 */

import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';

import type { MambaConfig } from '../lib/types';
import {
  cloneState,
  refConv1d,
  refContributionsBruteForce,
  refForward,
  refHead,
  refLocalScores,
  refMixer,
  refNormScores,
  refReduceAbs,
  refScoresBruteForce,
  refSelectKeep,
  refSelectiveScan,
  refUniformIndices,
  refWeightsFromEngineTensors,
  softplus,
  zeroState,
  type RefSimbaOptions,
  type RefState,
  type RefWeights,
} from './reference/mamba_ref';
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  fromHfTensors,
  hfConfigJson,
  makeRng,
  randn,
  randomConfig,
  randomEngineTensors,
  stateSpacesConfigJson,
  toHfTensors,
} from './reference/random_model';

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function expectStatesClose(a: RefState, b: RefState, tol: number): void {
  expect(a.length).toBe(b.length);
  for (let l = 0; l < a.length; l++) {
    expect(maxAbsDiff(a[l].conv, b[l].conv)).toBeLessThanOrEqual(tol);
    expect(maxAbsDiff(a[l].ssm, b[l].ssm)).toBeLessThanOrEqual(tol);
  }
}

function randomTokens(seed: number, T: number, V: number): number[] {
  const rng = makeRng(seed);
  return Array.from({ length: T }, () => Math.floor(rng.uniform() * V));
}

function model(overrides: Partial<MambaConfig>, seed: number): { cfg: MambaConfig; w: RefWeights } {
  const cfg = randomConfig(overrides);
  return { cfg, w: refWeightsFromEngineTensors(cfg, randomEngineTensors(cfg, seed)) };
}

/** Tiny configs covering the optional parts (biases, untied head, conv widths, dt ranks). */
const CONFIGS: Partial<MambaConfig>[] = [
  { dModel: 8, nLayer: 2, dState: 4, dConv: 4, vocabSize: 32 },
  { dModel: 16, nLayer: 3, dState: 3, dConv: 2, dtRank: 3, vocabSize: 40, projBias: true, tieEmbeddings: false },
  { dModel: 24, nLayer: 4, dState: 16, dConv: 3, dtRank: 2, vocabSize: 48, convBias: false, eps: 1e-6 },
  { dModel: 12, nLayer: 2, dState: 5, dConv: 1, vocabSize: 20 }, // K = 1: no conv state
];

// ---------------------------------------------------------------------------------------------
// building blocks
// ---------------------------------------------------------------------------------------------

describe('building blocks', () => {
  test('softplus is log1p(exp(v)) and never overflows', () => {
    for (const v of [-30, -5, -1e-3, 0, 0.7, 5, 30]) expect(softplus(v)).toBeCloseTo(Math.log1p(Math.exp(v)), 14);
    expect(softplus(800)).toBe(800);
    expect(softplus(-800)).toBe(0);
  });

  test('conv1d: hand-computed example and left context from the state', () => {
    // E = 1, K = 3, state = [a, b] (oldest first), x = [1, 2]
    const w = Float64Array.from([0.5, -1, 2]);
    const state = Float64Array.from([3, 4]);
    const x = Float64Array.from([1, 2]);
    const { y, state: next } = refConv1d(x, state, w, Float64Array.from([0.25]), 2, 1, 3);
    expect(Array.from(y)).toEqual([0.25 + 0.5 * 3 - 1 * 4 + 2 * 1, 0.25 + 0.5 * 4 - 1 * 1 + 2 * 2]);
    expect(Array.from(next)).toEqual([1, 2]);
    // one token: the new window is [b, x0]
    expect(Array.from(refConv1d(Float64Array.from([7]), state, w, null, 1, 1, 3).state)).toEqual([4, 7]);
  });

  test('conv1d and selective scan: chunked with state equals whole', () => {
    const rng = makeRng(11);
    const T = 13,
      E = 5,
      N = 4,
      K = 4,
      cut = 6;
    const x = randn(rng, T * E),
      w = randn(rng, E * K),
      b = randn(rng, E),
      s0c = randn(rng, E * (K - 1));
    const whole = refConv1d(x, s0c, w, b, T, E, K);
    const p1 = refConv1d(x.slice(0, cut * E), s0c, w, b, cut, E, K);
    const p2 = refConv1d(x.slice(cut * E), p1.state, w, b, T - cut, E, K);
    expect(maxAbsDiff(whole.y, Float64Array.from([...p1.y, ...p2.y]))).toBe(0);
    expect(maxAbsDiff(whole.state, p2.state)).toBe(0);

    const dt = randn(rng, T * E).map((v) => softplus(v - 2));
    const A = randn(rng, E * N).map((v) => -Math.exp(v));
    const B = randn(rng, T * N),
      C = randn(rng, T * N),
      D = randn(rng, E),
      z = randn(rng, T * E),
      s0 = randn(rng, E * N);
    const full = refSelectiveScan(x, dt, A, B, C, D, z, s0, T, E, N);
    const a = refSelectiveScan(
      x.slice(0, cut * E),
      dt.slice(0, cut * E),
      A,
      B.slice(0, cut * N),
      C.slice(0, cut * N),
      D,
      z.slice(0, cut * E),
      s0,
      cut,
      E,
      N,
    );
    const c = refSelectiveScan(
      x.slice(cut * E),
      dt.slice(cut * E),
      A,
      B.slice(cut * N),
      C.slice(cut * N),
      D,
      z.slice(cut * E),
      a.sFinal,
      T - cut,
      E,
      N,
    );
    expect(maxAbsDiff(full.y, Float64Array.from([...a.y, ...c.y]))).toBe(0);
    expect(maxAbsDiff(full.sFinal, c.sFinal)).toBe(0);
  });

  test('selective scan equals the closed form y_t = sum_{j<=t} C_t exp(A sum_{k=j+1..t} dt_k) dt_j B_j x_j + D x_t', () => {
    const rng = makeRng(12);
    const T = 7,
      E = 3,
      N = 4;
    const x = randn(rng, T * E),
      dt = randn(rng, T * E).map((v) => softplus(v - 1));
    const A = randn(rng, E * N).map((v) => -Math.exp(v)),
      B = randn(rng, T * N),
      C = randn(rng, T * N),
      D = randn(rng, E);
    const { y } = refSelectiveScan(x, dt, A, B, C, D, null, new Float64Array(E * N), T, E, N);
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < E; e++) {
        let acc = D[e] * x[t * E + e];
        for (let j = 0; j <= t; j++) {
          let dtSum = 0;
          for (let k = j + 1; k <= t; k++) dtSum += dt[k * E + e];
          for (let n = 0; n < N; n++)
            acc += C[t * N + n] * Math.exp(A[e * N + n] * dtSum) * dt[j * E + e] * B[j * N + n] * x[j * E + e];
        }
        expect(Math.abs(y[t * E + e] - acc)).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(acc)));
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (a) dense forward: one call equals prefill + continuation and token-by-token
// ---------------------------------------------------------------------------------------------

describe('(a) dense forward is consistent with its recurrent state', () => {
  test.each(CONFIGS.map((c, i) => [i, c] as const))('config %i', (i, overrides) => {
    const { cfg, w } = model(overrides, 100 + i);
    const T = 17;
    const tokens = randomTokens(200 + i, T, cfg.vocabSize);
    const full = refForward(cfg, w, tokens);
    for (const lg of full.logits) expect(lg.every(Number.isFinite)).toBe(true);

    const tol = 1e-12 * Math.max(1, maxAbs(full.logits[T - 1]));
    for (const n of [1, 5, 16]) {
      const a = refForward(cfg, w, tokens.slice(0, n));
      const b = refForward(cfg, w, tokens.slice(n), a.state);
      const split = [...a.logits, ...b.logits];
      for (let t = 0; t < T; t++) expect(maxAbsDiff(split[t], full.logits[t])).toBeLessThanOrEqual(tol);
      expectStatesClose(b.state, full.state, 1e-12);
    }
    // token by token, carrying the state
    let st: RefState = zeroState(cfg);
    for (let t = 0; t < T; t++) {
      const r = refForward(cfg, w, [tokens[t]], st);
      expect(maxAbsDiff(r.logits[0], full.logits[t])).toBeLessThanOrEqual(tol);
      st = r.state;
    }
    expectStatesClose(st, full.state, 1e-12);
  });

  test('the input state is not modified, and an empty call returns it', () => {
    const { cfg, w } = model(CONFIGS[0], 7);
    const a = refForward(cfg, w, [1, 2, 3]);
    const before = cloneState(a.state);
    refForward(cfg, w, [4, 5], a.state);
    expectStatesClose(a.state, before, 0);
    const e = refForward(cfg, w, [], a.state);
    expect(e.logits).toEqual([]);
    expectStatesClose(e.state, a.state, 0);
  });

  test('the conv state holds the pre-conv x of the last K-1 tokens, older state when fewer', () => {
    const { cfg, w } = model(CONFIGS[0], 8); // K = 4
    const tokens = [3, 9, 27, 4, 8];
    const all = refForward(cfg, w, tokens);
    // layer 0's input is the embedding rows, so its pre-conv x is computable directly
    const d = cfg.dModel,
      E = cfg.dInner,
      K = cfg.dConv;
    const h = new Float64Array(tokens.length * d);
    tokens.forEach((tk, i) => h.set(w.embedding.subarray(tk * d, (tk + 1) * d), i * d));
    const mix = refMixer(cfg, w.layers[0], h, tokens.length, zeroState(cfg)[0]);
    for (let e = 0; e < E; e++) {
      for (let j = 0; j < K - 1; j++) {
        expect(all.state[0].conv[e * (K - 1) + j]).toBe(mix.xPre[(tokens.length - (K - 1) + j) * E + e]);
      }
    }
    // two tokens after a 5-token prefix: window = [x of token 4, new x 0, new x 1]
    const more = refForward(cfg, w, [1, 2], all.state);
    for (let e = 0; e < E; e++) expect(more.state[0].conv[e * (K - 1)]).toBe(all.state[0].conv[e * (K - 1) + (K - 2)]);
  });
});

// ---------------------------------------------------------------------------------------------
// (b) Simba contributions decompose the last output exactly
// ---------------------------------------------------------------------------------------------

describe('(b) Simba score by brute force', () => {
  test.each([
    [1, 1, 1],
    [9, 4, 3],
    [23, 6, 8],
    [40, 5, 16],
  ])('T=%i E=%i N=%i', (T, E, N) => {
    const rng = makeRng(1000 + T);
    const x = randn(rng, T * E);
    const dt = randn(rng, T * E).map((v) => softplus(v - 2)); // ~0.01 .. 1
    const A = new Float64Array(E * N).map((_, i) => -((i % N) + 1) * Math.exp(0.1 * rng.normal()));
    const B = randn(rng, T * N),
      C = randn(rng, T * N),
      D = randn(rng, E);

    const c = refContributionsBruteForce(x, dt, A, B, C, T, E, N);
    // full scan from s0 = 0, no gate: y_T - D x_T = sum_t c(t, :)
    const { y } = refSelectiveScan(x, dt, A, B, C, D, null, new Float64Array(E * N), T, E, N);
    for (let e = 0; e < E; e++) {
      let sum = 0;
      for (let t = 0; t < T; t++) sum += c[t * E + e];
      const want = y[(T - 1) * E + e] - D[e] * x[(T - 1) * E + e];
      expect(Math.abs(sum - want)).toBeLessThanOrEqual(1e-10 * (1 + Math.abs(want)));
    }
    // token by token: a scan in which only token t injects input (x zero elsewhere, same dt) ends at c(t, :)
    for (let t = 0; t < T; t += Math.max(1, Math.floor(T / 5))) {
      const xt = new Float64Array(T * E);
      xt.set(x.subarray(t * E, (t + 1) * E), t * E);
      const r = refSelectiveScan(xt, dt, A, B, C, new Float64Array(E), null, new Float64Array(E * N), T, E, N);
      for (let e = 0; e < E; e++) {
        expect(Math.abs(r.y[(T - 1) * E + e] - c[t * E + e])).toBeLessThanOrEqual(1e-10 * (1 + Math.abs(c[t * E + e])));
      }
    }
    // scores are the reductions of |c|
    for (const reduce of ['max', 'sum'] as const) {
      const s = refScoresBruteForce(x, dt, A, B, C, T, E, N, reduce);
      for (let t = 0; t < T; t++) {
        const row = Array.from(c.subarray(t * E, (t + 1) * E), Math.abs);
        const want = reduce === 'max' ? Math.max(...row) : row.reduce((a, b) => a + b, 0);
        expect(s[t]).toBeCloseTo(want, 12);
      }
    }
  });

  test('local score is the last-token contribution formula applied to each token alone', () => {
    const rng = makeRng(77);
    const T = 6,
      E = 4,
      N = 3;
    const x = randn(rng, T * E),
      dt = randn(rng, T * E).map(softplus),
      B = randn(rng, T * N),
      C = randn(rng, T * N);
    const A = randn(rng, E * N).map((v) => -Math.exp(v));
    const local = refLocalScores(x, dt, B, C, T, E, N, 'sum');
    for (let t = 0; t < T; t++) {
      // the token's own contribution to its own output = brute force on the 1-token sequence [t] with C(t)
      const one = refScoresBruteForce(
        x.slice(t * E, (t + 1) * E),
        dt.slice(t * E, (t + 1) * E),
        A,
        B.slice(t * N, (t + 1) * N),
        C.slice(t * N, (t + 1) * N),
        1,
        E,
        N,
        'sum',
      );
      expect(local[t]).toBeCloseTo(one[0], 12);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (c) .. (e) pruning
// ---------------------------------------------------------------------------------------------

const CRITERIA = ['simba', 'local', 'norm', 'uniform', 'random'] as const;

function simbaOpts(
  criterion: (typeof CRITERIA)[number],
  keepCounts: number[],
  extra: Partial<RefSimbaOptions> = {},
): RefSimbaOptions {
  return {
    keepCounts,
    criterion,
    reduce: 'max',
    randomScores: (layer, T) => {
      const rng = makeRng(31 * layer + T);
      return new Float64Array(T).map(() => rng.uniform());
    },
    ...extra,
  };
}

describe('(c) keeping every token gives exactly the dense result', () => {
  test.each(CRITERIA.map((c) => [c]))('%s', (criterion) => {
    const { cfg, w } = model(CONFIGS[1], 21);
    const T = 19;
    const tokens = randomTokens(22, T, cfg.vocabSize);
    const dense = refForward(cfg, w, tokens);
    for (const keep of [T, T + 5]) {
      for (const reduce of ['max', 'sum'] as const) {
        const r = refForward(cfg, w, tokens, undefined, {
          simba: simbaOpts(criterion, Array(cfg.nLayer).fill(keep), { reduce }),
        });
        for (let t = 0; t < T; t++) expect(maxAbsDiff(r.logits[t], dense.logits[t])).toBe(0);
        expectStatesClose(r.state, dense.state, 0);
        for (let l = 0; l < cfg.nLayer; l++) {
          expect(r.kept[l]).toEqual(tokens.map((_, i) => i));
          expect(r.scores[l].length).toBe(T);
        }
      }
    }
  });
});

describe('(d) kept sets are nested, ordered, and contain the last and protected tokens', () => {
  test.each(CRITERIA.map((c) => [c]))('%s', (criterion) => {
    const { cfg, w } = model(CONFIGS[2], 41); // 4 layers
    const T = 30;
    const tokens = randomTokens(42, T, cfg.vocabSize);
    const keepCounts = [24, 15, 9, 4];
    for (const [pf, pl] of [
      [0, 0],
      [2, 3],
      [4, 4],
    ]) {
      const r = refForward(cfg, w, tokens, undefined, {
        simba: simbaOpts(criterion, keepCounts, { protectFirst: pf, protectLast: pl }),
      });
      const protectedPos = new Set<number>([T - 1]);
      for (let i = 0; i < pf; i++) protectedPos.add(i);
      for (let i = T - pl; i < T; i++) protectedPos.add(i);
      let prev = tokens.map((_, i) => i);
      for (let l = 0; l < cfg.nLayer; l++) {
        const kept = r.kept[l];
        expect(r.scores[l].length).toBe(prev.length); // scored: the tokens present in layer l
        expect(kept.length).toBe(Math.min(prev.length, Math.max(keepCounts[l], protectedPos.size)));
        for (let i = 1; i < kept.length; i++) expect(kept[i]).toBeGreaterThan(kept[i - 1]);
        for (const p of kept) expect(prev).toContain(p);
        for (const p of protectedPos) expect(kept).toContain(p);
        prev = kept;
      }
      for (const lg of r.logits) expect(lg.every(Number.isFinite)).toBe(true);
    }
  });

  test('the unprotected slots go to the highest scores, ties to the earlier position', () => {
    const s = Float64Array.from([0.5, 0.9, 0.1, 0.9, 0.3, NaN, 0.2]);
    expect(refSelectKeep(s, 3)).toEqual([1, 3, 6]);
    expect(refSelectKeep(s, 4)).toEqual([0, 1, 3, 6]);
    expect(refSelectKeep(s, 4, 1)).toEqual([0, 1, 3, 6]);
    expect(refSelectKeep(s, 4, 0, 2)).toEqual([1, 3, 5, 6]);
    expect(refSelectKeep(s, 2, 2, 2)).toEqual([0, 1, 5, 6]); // protected exceed k: all protected kept
    expect(refSelectKeep(s, 1)).toEqual([6]);
    expect(refSelectKeep(s, 0)).toEqual([6]);
    expect(refSelectKeep(Float64Array.from([1, 1, 1, 1, 1]), 3)).toEqual([0, 1, 4]);
    expect(refSelectKeep(s, 7)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  test("scores inside refForward are the criteria applied to that layer's mixer", () => {
    const { cfg, w } = model(CONFIGS[0], 51);
    const T = 12;
    const tokens = randomTokens(52, T, cfg.vocabSize);
    const d = cfg.dModel,
      E = cfg.dInner,
      N = cfg.dState;
    const h = new Float64Array(T * d);
    tokens.forEach((tk, i) => h.set(w.embedding.subarray(tk * d, (tk + 1) * d), i * d));
    const mix = refMixer(cfg, w.layers[0], h, T, zeroState(cfg)[0]);
    const want = {
      simba: refScoresBruteForce(mix.x, mix.dt, mix.A, mix.B, mix.C, T, E, N, 'sum'),
      local: refLocalScores(mix.x, mix.dt, mix.B, mix.C, T, E, N, 'sum'),
      norm: refNormScores(mix.out, T, d),
    };
    for (const c of ['simba', 'local', 'norm'] as const) {
      const r = refForward(cfg, w, tokens, undefined, { simba: simbaOpts(c, [6, 3], { reduce: 'sum' }) });
      expect(maxAbsDiff(r.scores[0], want[c])).toBe(0);
    }
    // and the norm score really is the L2 norm of the mixer output
    let ss = 0;
    for (let i = 0; i < d; i++) ss += mix.out[3 * d + i] ** 2;
    expect(want.norm[3]).toBeCloseTo(Math.sqrt(ss), 13);
    expect(maxAbsDiff(refReduceAbs(Float64Array.from([-3, 1, 2, -0.5]), 2, 2, 'max'), [3, 2])).toBe(0);
  });
});

describe('(e) uniform keeps the evenly strided indices', () => {
  test('formula', () => {
    expect(refUniformIndices(10, 4)).toEqual([2, 4, 7, 9]);
    expect(refUniformIndices(10, 1)).toEqual([9]);
    expect(refUniformIndices(7, 7)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(refUniformIndices(9, 2)).toEqual([4, 8]); // round(4.5) = 5
  });

  test('in refForward, layer by layer over the present tokens', () => {
    const { cfg, w } = model(CONFIGS[2], 61);
    const T = 37;
    const tokens = randomTokens(62, T, cfg.vocabSize);
    const keepCounts = [30, 17, 17, 5];
    const r = refForward(cfg, w, tokens, undefined, { simba: simbaOpts('uniform', keepCounts) });
    let present = tokens.map((_, i) => i);
    for (let l = 0; l < cfg.nLayer; l++) {
      const n = present.length,
        k = keepCounts[l];
      const want = k >= n ? present : Array.from({ length: k }, (_, i) => present[Math.round(((i + 1) * n) / k) - 1]);
      expect(r.kept[l]).toEqual(want);
      present = want;
    }
    expect(r.kept[3].length).toBe(5);
  });
});

// ---------------------------------------------------------------------------------------------
// pruning plumbing, checked against dense runs
// ---------------------------------------------------------------------------------------------

describe('pruned forward against dense runs', () => {
  test('identity layer 0 + pruning after it = dense run on the kept subsequence; dropped tokens exit early', () => {
    // With out_proj of layer 0 zero, layer 0 adds nothing, so the layers above see exactly the
    // embeddings of the kept tokens, as a dense run of the model on that subsequence does.
    const cfg = randomConfig({ dModel: 16, nLayer: 3, dState: 6, vocabSize: 30, projBias: false });
    const tensors = randomEngineTensors(cfg, 71);
    for (const t of tensors) if (t.name === 'out_proj' && t.layer === 0) t.data.fill(0);
    const w = refWeightsFromEngineTensors(cfg, tensors);
    const T = 21;
    const tokens = randomTokens(72, T, cfg.vocabSize);
    for (const criterion of ['random', 'uniform', 'local'] as const) {
      const r = refForward(cfg, w, tokens, undefined, { simba: simbaOpts(criterion, [9, 9, 9]) });
      const S = r.kept[0];
      expect(S.length).toBe(9);
      expect(r.kept[2]).toEqual(S);
      const sub = refForward(
        cfg,
        w,
        S.map((p) => tokens[p]),
      );
      S.forEach((p, j) =>
        expect(maxAbsDiff(r.logits[p], sub.logits[j])).toBeLessThanOrEqual(1e-12 * (1 + maxAbs(sub.logits[j]))),
      );
      for (let l = 1; l < cfg.nLayer; l++) {
        expect(maxAbsDiff(r.state[l].ssm, sub.state[l].ssm)).toBeLessThanOrEqual(1e-12);
        expect(maxAbsDiff(r.state[l].conv, sub.state[l].conv)).toBeLessThanOrEqual(1e-12);
      }
      // layer 0 processed all tokens
      expectStatesClose([r.state[0]], [refForward(cfg, w, tokens).state[0]], 0);
      // dropped tokens: residual after layer 0 = their embedding -> norm_f + head
      const d = cfg.dModel;
      for (let p = 0; p < T; p++) {
        if (S.includes(p)) continue;
        const want = refHead(cfg, w, w.embedding.slice(tokens[p] * d, (tokens[p] + 1) * d));
        expect(maxAbsDiff(r.logits[p], want)).toBe(0);
      }
    }
  });

  test('tokens dropped after layer 0 get the logits of the 1-layer model', () => {
    const full = randomConfig({ dModel: 16, nLayer: 3, dState: 4, vocabSize: 24 });
    const tensors = randomEngineTensors(full, 81);
    const w = refWeightsFromEngineTensors(full, tensors);
    const one = { ...full, nLayer: 1 };
    const w1 = refWeightsFromEngineTensors(
      one,
      tensors.filter((t) => t.layer <= 0),
    );
    const T = 15;
    const tokens = randomTokens(82, T, full.vocabSize);
    const r = refForward(full, w, tokens, undefined, { simba: simbaOpts('simba', [5, 3, 2], { reduce: 'sum' }) });
    const dense1 = refForward(one, w1, tokens);
    for (let p = 0; p < T; p++) {
      if (r.kept[0].includes(p)) continue;
      expect(maxAbsDiff(r.logits[p], dense1.logits[p])).toBe(0);
    }
    expect(r.kept[2]).toContain(T - 1);
  });

  test('decode after a pruned prefill continues from the pruned state', () => {
    const { cfg, w } = model(CONFIGS[0], 91);
    const tokens = randomTokens(92, 20, cfg.vocabSize);
    const r = refForward(cfg, w, tokens, undefined, { simba: simbaOpts('simba', [10, 4]) });
    const next = refForward(cfg, w, [5], r.state);
    const denseNext = refForward(cfg, w, [5], refForward(cfg, w, tokens).state);
    expect(maxAbsDiff(next.logits[0], denseNext.logits[0])).toBeGreaterThan(0); // the state differs
  });
});

// ---------------------------------------------------------------------------------------------
// random models and checkpoint mapping
// ---------------------------------------------------------------------------------------------

describe('random models', () => {
  test('deterministic, sanely scaled', () => {
    const cfg = randomConfig({ dModel: 24, nLayer: 4, dState: 16, vocabSize: 64, dtRank: 2 });
    const a = randomEngineTensors(cfg, 5),
      b = randomEngineTensors(cfg, 5),
      c = randomEngineTensors(cfg, 6);
    expect(a.map((t) => Array.from(t.data))).toEqual(b.map((t) => Array.from(t.data)));
    expect(Array.from(a[0].data)).not.toEqual(Array.from(c[0].data));
    for (const t of a) {
      if (t.name !== 'dt_proj_b') continue;
      for (const v of t.data) {
        expect(softplus(v)).toBeGreaterThanOrEqual(0.001 * 0.9999);
        expect(softplus(v)).toBeLessThanOrEqual(0.1 * 1.0001);
      }
    }
    const w = refWeightsFromEngineTensors(cfg, a);
    const r = refForward(cfg, w, randomTokens(3, 32, cfg.vocabSize));
    const last = r.logits[31];
    const mean = last.reduce((s, v) => s + v, 0) / last.length;
    const std = Math.sqrt(last.reduce((s, v) => s + (v - mean) ** 2, 0) / last.length);
    expect(std).toBeGreaterThan(1);
    expect(std).toBeLessThan(10);
    for (const st of r.state) expect(maxAbs(st.ssm)).toBeLessThan(100);
  });

  test('checkpoint tensors round-trip (both layouts) and config.json objects', () => {
    for (const tie of [true, false]) {
      const cfg = randomConfig({ dModel: 8, nLayer: 2, vocabSize: 16, tieEmbeddings: tie, projBias: !tie });
      const eng = randomEngineTensors(cfg, 9);
      for (const layout of ['hf', 'state-spaces'] as const) {
        const ck = toHfTensors(cfg, eng, layout, 'F32');
        const names = ck.map((t) => t.name);
        expect(names).toEqual([...names].sort());
        expect(names).toContain(layout === 'hf' ? 'backbone.embeddings.weight' : 'backbone.embedding.weight');
        expect(names.includes('lm_head.weight')).toBe(!tie || layout === 'state-spaces');
        expect(ck.find((t) => t.name === 'backbone.layers.1.mixer.conv1d.weight')!.shape).toEqual([cfg.dInner, 1, cfg.dConv]);
        const f32 = ck.find((t) => t.name === 'backbone.layers.0.mixer.A_log')!;
        expect(Array.from(new Float32Array(f32.bytes.buffer, f32.bytes.byteOffset, f32.data.length))).toEqual(
          Array.from(f32.data),
        );
        const back = fromHfTensors(cfg, ck, layout);
        const key = (t: { name: string; layer: number }) => `${t.name}@${t.layer}`;
        const want = new Map(eng.map((t) => [key(t), t]));
        expect(back.length).toBe(eng.length);
        for (const t of back) {
          expect(t.shape).toEqual(want.get(key(t))!.shape);
          expect(Array.from(t.data)).toEqual(Array.from(want.get(key(t))!.data));
        }
      }
      const hf = hfConfigJson(cfg);
      expect(hf).toMatchObject({
        model_type: 'mamba',
        hidden_size: 8,
        intermediate_size: 16,
        state_size: cfg.dState,
        num_hidden_layers: 2,
        conv_kernel: cfg.dConv,
        time_step_rank: cfg.dtRank,
        use_bias: !tie,
        use_conv_bias: true,
        tie_word_embeddings: tie,
        torch_dtype: 'float32',
      });
      expect(stateSpacesConfigJson(cfg)).toMatchObject({
        d_model: 8,
        n_layer: 2,
        vocab_size: 16,
        ssm_cfg: { d_state: cfg.dState, expand: 2 },
      });
    }
  });

  test('f16 / bf16 rounding', () => {
    const cases: [number, number, number][] = [
      // value, f16 bits, bf16 bits
      [1, 0x3c00, 0x3f80],
      [-2, 0xc000, 0xc000],
      [0, 0, 0],
      [65504, 0x7bff, 0x4780],
      [1e6, 0x7c00, 0x4974],
      [2 ** -24, 0x0001, 0x3380],
      [2 ** -14, 0x0400, 0x3880],
      [1 + 2 ** -11, 0x3c00, 0x3f80],
      [1 + 3 * 2 ** -11, 0x3c02, 0x3f80],
    ];
    for (const [v, h, b] of cases) {
      expect(f32ToF16Bits(v)).toBe(h);
      expect(f32ToBf16Bits(v)).toBe(b);
    }
    const rng = makeRng(4);
    for (let i = 0; i < 2000; i++) {
      const v = Math.fround(rng.normal() * 10 ** Math.floor(rng.uniform() * 6 - 3));
      const h = f16BitsToF32(f32ToF16Bits(v));
      const bf = bf16BitsToF32(f32ToBf16Bits(v));
      expect(Math.abs(h - v)).toBeLessThanOrEqual(Math.max(Math.abs(v) * 2 ** -11, 2 ** -25)); // half ulp
      expect(Math.abs(bf - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
    }
    const ck = toHfTensors(
      randomConfig({ dModel: 8, nLayer: 1, vocabSize: 8 }),
      randomEngineTensors(randomConfig({ dModel: 8, nLayer: 1, vocabSize: 8 }), 1),
      'hf',
      'BF16',
    );
    for (const t of ck) {
      expect(t.bytes.length).toBe(2 * t.data.length);
      for (let i = 0; i < t.data.length; i++) expect(t.data[i]).toBe(bf16BitsToF32(t.bytes[2 * i] | (t.bytes[2 * i + 1] << 8)));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (f) the shipped model
// ---------------------------------------------------------------------------------------------

/** Minimal safetensors reader for the test (F32 only, whole file in memory). */
function readSafetensorsF32(file: string): { name: string; shape: number[]; data: Float32Array }[] {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`${name}: ${info.dtype}, this test reader handles F32 only`);
    const [b, e] = info.data_offsets;
    const bytes = buf.subarray(8 + n + b, 8 + n + e);
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    expect(data.length).toBe(info.shape.reduce((x, y) => x * y, 1));
    out.push({ name, shape: info.shape, data });
  }
  return out;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a parsed config.json, read field by field
function configFromHfJson(j: Record<string, any>): MambaConfig {
  return {
    vocabSize: j.vocab_size,
    dModel: j.hidden_size,
    nLayer: j.num_hidden_layers,
    dInner: j.intermediate_size,
    dState: j.state_size,
    dtRank: j.time_step_rank,
    dConv: j.conv_kernel,
    convBias: j.use_conv_bias,
    projBias: j.use_bias,
    eps: j.layer_norm_epsilon,
    tieEmbeddings: j.tie_word_embeddings ?? true,
    bosTokenId: j.bos_token_id ?? null,
    eosTokenId: j.eos_token_id ?? null,
    padTokenId: j.pad_token_id ?? null,
  };
}

function logSoftmaxAt(logits: Float64Array, i: number): number {
  let m = -Infinity;
  for (const v of logits) m = Math.max(m, v);
  let s = 0;
  for (const v of logits) s += Math.exp(v - m);
  return logits[i] - m - Math.log(s);
}

describe('(f) shipped model models/brown-mamba-s', () => {
  const dir = path.join(__dirname, '..', 'models', 'brown-mamba-s');
  const cfg = configFromHfJson(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')));
  const w = refWeightsFromEngineTensors(cfg, fromHfTensors(cfg, readSafetensorsF32(path.join(dir, 'model.safetensors')), 'hf'));
  // The tokenizers library directly, not lib/checkpoint/tokenizer.ts: the reference stands apart from the code it checks.
  const tok = new Tokenizer(
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
  );
  const encode = (s: string): number[] => tok.encode(s, { add_special_tokens: false }).ids;

  test('"The jury said": finite logits, a sensible next token', () => {
    const ids = encode('The jury said');
    expect(ids.length).toBeGreaterThan(1);
    const r = refForward(cfg, w, ids);
    const last = r.logits[ids.length - 1];
    expect(last.every(Number.isFinite)).toBe(true);
    const order = Array.from(last.keys()).sort((a, b) => last[b] - last[a]);
    const top = order.slice(0, 5).map((i) => tok.decode([i]));
    // a word-like continuation (starts with a space or is punctuation), not a special or byte token
    expect(order[0]).toBeGreaterThan(1);
    expect(/^( [A-Za-z]+|[,.:;"'])$/.test(top[0])).toBe(true);
    console.log(`brown-mamba-s: "The jury said" -> top-5 ${JSON.stringify(top)}`);
  });

  test('held-out perplexity on a snippet is far below uniform', () => {
    const text = fs.readFileSync(path.join(__dirname, 'fixtures', 'brown-heldout-slice.txt'), 'utf8');
    const ids = encode(text.slice(0, 2000)).slice(0, 65); // 64 predictions
    const r = refForward(cfg, w, ids);
    let nll = 0;
    for (let t = 0; t + 1 < ids.length; t++) nll -= logSoftmaxAt(r.logits[t], ids[t + 1]);
    const ppl = Math.exp(nll / (ids.length - 1));
    console.log(`brown-mamba-s: held-out snippet perplexity ${ppl.toFixed(2)} over ${ids.length - 1} tokens`);
    expect(ppl).toBeLessThan(1000); // uniform would be 4096; the model's held-out ppl is ~72
    // Pinned value. This reference, run over the whole held-out Brown text the model was evaluated on
    // (90,803 tokens, ctx 256 windows, the README's protocol), gave ppl 72.4125 against the README's
    // 72.413 (its own float64 reference and the float32 training model), so the mixer math matches the
    // model's. The pin catches errors that the self-consistency tests above cannot see (e.g. B and C
    // swapped moves this snippet's ppl only from 69.17 to 76.6).
    expect(Math.abs(nll / (ids.length - 1) - 4.2365354098582664)).toBeLessThan(1e-9);
    // a Simba-pruned prefill stays sane on real weights
    const T = ids.length;
    const keep = Array.from({ length: cfg.nLayer }, (_, l) => Math.max(1, Math.ceil(T * (1 - (0.9 * l) / (cfg.nLayer - 1)))));
    const p = refForward(cfg, w, ids, undefined, { simba: simbaOpts('simba', keep) });
    expect(p.logits[T - 1].every(Number.isFinite)).toBe(true);
    expect(p.kept[cfg.nLayer - 1].length).toBe(keep[cfg.nLayer - 1]);
  });
});
