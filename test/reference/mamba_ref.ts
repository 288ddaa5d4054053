/**
 * Float64 reference implementation of Mamba-1 (Hugging Face `MambaForCausalLM`, slow path), of
 * Falcon-Mamba (`FalconMambaForCausalLM`: Mamba-1 plus weightless RMS norms of dt, B and C) and of
 * Simba token pruning (each token's contribution to a layer's last output, scored and pruned between
 * layers). The native engine's tests compare against it.
 *
 * Written from the math, for reading, not for speed: plain loops, every function states its shapes,
 * no fusion. Everything is float64 (f32 weights are widened on the way in).
 *
 * Glossary (code name -> paper symbol):
 *   T        tokens present in a layer (the layer's sequence length)
 *   d        dModel, model width             E  dInner, mixer width
 *   N        dState, SSM state per channel   R  dtRank
 *   K        dConv, causal conv width        L  nLayer
 *   V        vocabSize (embedding rows)
 *   x        mixer input branch, after conv + silu (u in the paper)
 *   z        gate branch
 *   dt       Delta, after softplus           A = -exp(A_log)
 *   B, C     input / output projections of the SSM (per token)
 *   s        SSM state h(t) of the paper, [E, N]
 *
 * Layout: every matrix is a row-major Float64Array; `[T, E]` means element (t, e) is at t * E + e.
 */

import type { EngineTensor, EngineTensorName, MambaConfig } from '../../lib/types';

// ---------------------------------------------------------------------------------------------
// Weights and state
// ---------------------------------------------------------------------------------------------

/** One Mamba block's weights, f64. */
export interface RefLayerWeights {
  norm: Float64Array; //                 [d]
  inProj: Float64Array; //               [2E, d]   rows 0..E-1 give x, rows E..2E-1 give z
  inProjBias: Float64Array | null; //    [2E]
  convW: Float64Array; //                [E, K]    convW[e, K-1] multiplies the current input
  convB: Float64Array | null; //         [E]
  xProj: Float64Array; //                [R+2N, E] rows: dt_low (R), then B (N), then C (N)
  dtProjW: Float64Array; //              [E, R]
  dtProjB: Float64Array; //              [E]
  ALog: Float64Array; //                 [E, N]    A = -exp(ALog)
  D: Float64Array; //                    [E]
  outProj: Float64Array; //              [d, E]
  outProjBias: Float64Array | null; //   [d]
}

/** All weights of a model, f64. */
export interface RefWeights {
  embedding: Float64Array; //            [V, d]
  normF: Float64Array; //                [d]
  lmHead: Float64Array | null; //        [V, d], null = tied to the embedding
  layers: RefLayerWeights[]; //          L entries
}

/** Recurrent state of one layer. */
export interface RefLayerState {
  conv: Float64Array; //                 [E, K-1]  the last K-1 conv inputs (pre-conv x), oldest first
  ssm: Float64Array; //                  [E, N]
}

/** Recurrent state of a sequence: one entry per layer. */
export type RefState = RefLayerState[];

/** A fresh (all-zero) state. */
export function zeroState(cfg: MambaConfig): RefState {
  const st: RefState = [];
  for (let l = 0; l < cfg.nLayer; l++) {
    st.push({
      conv: new Float64Array(cfg.dInner * (cfg.dConv - 1)),
      ssm: new Float64Array(cfg.dInner * cfg.dState),
    });
  }
  return st;
}

/** A deep copy of a state. */
export function cloneState(st: RefState): RefState {
  return st.map((s) => ({ conv: Float64Array.from(s.conv), ssm: Float64Array.from(s.ssm) }));
}

/**
 * Engine tensors (f32, engine names and shapes, see lib/types.ts) -> f64 reference weights.
 * Checks that every tensor the config needs is present with the expected shape.
 */
export function refWeightsFromEngineTensors(cfg: MambaConfig, tensors: EngineTensor[]): RefWeights {
  const { vocabSize: V, dModel: d, dInner: E, dState: N, dtRank: R, dConv: K, nLayer: L } = cfg;
  const byKey = new Map<string, EngineTensor>();
  for (const t of tensors) {
    const key = `${t.name}@${t.layer}`;
    if (byKey.has(key)) throw new Error(`duplicate engine tensor ${t.name} (layer ${t.layer})`);
    if (t.data.length !== t.shape.reduce((a, b) => a * b, 1)) {
      throw new Error(`engine tensor ${t.name} (layer ${t.layer}): ${t.data.length} values for shape [${t.shape}]`);
    }
    byKey.set(key, t);
  }
  const get = (name: EngineTensorName, layer: number, shape: number[]): Float64Array => {
    const t = byKey.get(`${name}@${layer}`);
    if (!t) throw new Error(`missing engine tensor ${name} (layer ${layer})`);
    if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) {
      throw new Error(`engine tensor ${name} (layer ${layer}): shape [${t.shape}], expected [${shape}]`);
    }
    return Float64Array.from(t.data);
  };
  const opt = (name: EngineTensorName, layer: number, shape: number[], wanted: boolean): Float64Array | null => {
    if (!wanted) {
      if (byKey.has(`${name}@${layer}`)) throw new Error(`unexpected engine tensor ${name} (layer ${layer})`);
      return null;
    }
    return get(name, layer, shape);
  };

  const layers: RefLayerWeights[] = [];
  for (let l = 0; l < L; l++) {
    layers.push({
      norm: get('norm', l, [d]),
      inProj: get('in_proj', l, [2 * E, d]),
      inProjBias: opt('in_proj_bias', l, [2 * E], cfg.projBias),
      convW: get('conv_w', l, [E, K]),
      convB: opt('conv_b', l, [E], cfg.convBias),
      xProj: get('x_proj', l, [R + 2 * N, E]),
      dtProjW: get('dt_proj_w', l, [E, R]),
      dtProjB: get('dt_proj_b', l, [E]),
      ALog: get('A_log', l, [E, N]),
      D: get('D', l, [E]),
      outProj: get('out_proj', l, [d, E]),
      outProjBias: opt('out_proj_bias', l, [d], cfg.projBias),
    });
  }
  const hasHead = byKey.has('lm_head@-1');
  if (!cfg.tieEmbeddings && !hasHead) throw new Error('untied model without an lm_head tensor');
  return {
    embedding: get('embedding', -1, [V, d]),
    normF: get('norm_f', -1, [d]),
    lmHead: hasHead ? get('lm_head', -1, [V, d]) : null,
    layers,
  };
}

// ---------------------------------------------------------------------------------------------
// Scalar functions
// ---------------------------------------------------------------------------------------------

/** silu(v) = v * sigmoid(v) */
export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** softplus(v) = log(1 + exp(v)), in the overflow-free form max(v, 0) + log1p(exp(-|v|)). */
export function softplus(v: number): number {
  return v > 0 ? v + Math.log1p(Math.exp(-v)) : Math.log1p(Math.exp(v));
}

// ---------------------------------------------------------------------------------------------
// Building blocks (each on plain arrays, so kernel tests can call them on random inputs)
// ---------------------------------------------------------------------------------------------

/** y = W x + b.   W [rows, cols] @ x [cols] (+ b [rows]) -> [rows] */
export function refLinear(W: Float64Array, rows: number, cols: number, x: Float64Array, b: Float64Array | null): Float64Array {
  const y = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let acc = b ? b[i] : 0;
    for (let j = 0; j < cols; j++) acc += W[i * cols + j] * x[j];
    y[i] = acc;
  }
  return y;
}

/** C = A W^T + bias, row by row with refLinear.   A [M, K], W [N, K], bias [N] -> C [M, N] */
export function refGemm(A: Float32Array, W: Float32Array, bias: Float32Array, M: number, N: number, K: number): Float64Array {
  const W64 = Float64Array.from(W),
    b64 = Float64Array.from(bias);
  const C = new Float64Array(M * N);
  for (let m = 0; m < M; m++) C.set(refLinear(W64, N, K, Float64Array.from(A.subarray(m * K, (m + 1) * K)), b64), m * N);
  return C;
}

/** RMSNorm: x / sqrt(mean(x^2) + eps) * w.   x [d], w [d] -> [d] */
export function refRmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / n + eps);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
  return y;
}

/**
 * Weightless RMSNorm (Falcon-Mamba's norms of dt, B and C): x / sqrt(mean(x^2) + eps).   x [n] -> [n]
 */
export function refRmsNormPlain(x: Float64Array, eps: number): Float64Array {
  return refRmsNorm(x, new Float64Array(x.length).fill(1), eps);
}

/**
 * Causal depthwise conv1d with left context from the state (no activation).
 *   x [T, E], state [E, K-1] (oldest first), w [E, K], b [E] | null
 *   -> y [T, E] with y[t, e] = b[e] + sum_k w[e, k] * in(t - (K-1) + k, e),
 *      where in(j, e) = x[j, e] for j >= 0 and state[e, K-1+j] for j < 0;
 *      state [E, K-1]: the last K-1 inputs of the concatenation [state, x].
 */
export function refConv1d(
  x: Float64Array,
  state: Float64Array,
  w: Float64Array,
  b: Float64Array | null,
  T: number,
  E: number,
  K: number,
): { y: Float64Array; state: Float64Array } {
  const W = K - 1; // state width
  const input = (j: number, e: number): number => (j >= 0 ? x[j * E + e] : state[e * W + (W + j)]);
  const y = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let acc = b ? b[e] : 0;
      for (let k = 0; k < K; k++) acc += w[e * K + k] * input(t - W + k, e);
      y[t * E + e] = acc;
    }
  }
  const next = new Float64Array(E * W);
  for (let e = 0; e < E; e++) {
    for (let j = 0; j < W; j++) next[e * W + j] = input(T - W + j, e);
  }
  return { y, state: next };
}

/**
 * Selective scan (sequential, the definition).
 *   x [T, E] (post conv + silu), dt [T, E] (after softplus), A [E, N] (negative), B [T, N], C [T, N],
 *   D [E], z [T, E] | null (null = no gate), s0 [E, N]
 *   s[e, n] <- exp(dt[t, e] A[e, n]) s[e, n] + dt[t, e] B[t, n] x[t, e]
 *   y[t, e]  = (sum_n C[t, n] s[e, n] + D[e] x[t, e]) * silu(z[t, e])
 *   -> y [T, E], sFinal [E, N]
 */
export function refSelectiveScan(
  x: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  B: Float64Array,
  C: Float64Array,
  D: Float64Array,
  z: Float64Array | null,
  s0: Float64Array,
  T: number,
  E: number,
  N: number,
): { y: Float64Array; sFinal: Float64Array } {
  const s = Float64Array.from(s0); // [E, N]
  const y = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      const dte = dt[t * E + e];
      const xe = x[t * E + e];
      let acc = 0;
      for (let n = 0; n < N; n++) {
        s[e * N + n] = Math.exp(dte * A[e * N + n]) * s[e * N + n] + dte * B[t * N + n] * xe;
        acc += C[t * N + n] * s[e * N + n];
      }
      acc += D[e] * xe;
      y[t * E + e] = z ? acc * silu(z[t * E + e]) : acc;
    }
  }
  return { y, sFinal: s };
}

/**
 * Simba contributions, brute force from the formula (unrolling the scan's recurrence), 0-based with last = T-1:
 *   c(t, e) = sum_n C(T-1, n) * exp(A(e, n) * sum_{k=t+1..T-1} dt(k, e)) * dt(t, e) * B(t, n) * x(t, e)
 *   x [T, E], dt [T, E], A [E, N], B [T, N], C [T, N] -> c [T, E]
 * With s0 = 0, sum_t c(t, e) = y_{T-1}(e) - D(e) x(T-1, e) (before the z gate).
 */
export function refContributionsBruteForce(
  x: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  B: Float64Array,
  C: Float64Array,
  T: number,
  E: number,
  N: number,
): Float64Array {
  const c = new Float64Array(T * E);
  const last = T - 1;
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let dtSum = 0; // sum_{k=t+1..T-1} dt(k, e)
      for (let k = t + 1; k <= last; k++) dtSum += dt[k * E + e];
      let acc = 0;
      for (let n = 0; n < N; n++) {
        acc += C[last * N + n] * Math.exp(A[e * N + n] * dtSum) * dt[t * E + e] * B[t * N + n] * x[t * E + e];
      }
      c[t * E + e] = acc;
    }
  }
  return c;
}

/** score(t) = reduce_e |c(t, e)|.   c [T, E] -> [T] */
export function refReduceAbs(c: Float64Array, T: number, E: number, reduce: 'max' | 'sum'): Float64Array {
  const score = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let acc = 0;
    for (let e = 0; e < E; e++) {
      const v = Math.abs(c[t * E + e]);
      acc = reduce === 'max' ? Math.max(acc, v) : acc + v;
    }
    score[t] = acc;
  }
  return score;
}

/**
 * Simba score by brute force, O(T^2 E N).
 *   x [T, E], dt [T, E], A [E, N], B [T, N], C [T, N] -> score [T] = reduce_e |c(t, e)|
 */
export function refScoresBruteForce(
  x: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  B: Float64Array,
  C: Float64Array,
  T: number,
  E: number,
  N: number,
  reduce: 'max' | 'sum',
): Float64Array {
  return refReduceAbs(refContributionsBruteForce(x, dt, A, B, C, T, E, N), T, E, reduce);
}

/**
 * 'local' baseline: a token's effect on its own output.
 *   c(t, e) = dt(t, e) x(t, e) sum_n C(t, n) B(t, n);  score(t) = reduce_e |c(t, e)|
 *   x [T, E], dt [T, E], B [T, N], C [T, N] -> [T]
 */
export function refLocalScores(
  x: Float64Array,
  dt: Float64Array,
  B: Float64Array,
  C: Float64Array,
  T: number,
  E: number,
  N: number,
  reduce: 'max' | 'sum',
): Float64Array {
  const c = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    let cb = 0;
    for (let n = 0; n < N; n++) cb += C[t * N + n] * B[t * N + n];
    for (let e = 0; e < E; e++) c[t * E + e] = dt[t * E + e] * x[t * E + e] * cb;
  }
  return refReduceAbs(c, T, E, reduce);
}

/** 'norm' baseline: L2 norm over d of the mixer output of each token.   out [T, d] -> [T] */
export function refNormScores(out: Float64Array, T: number, d: number): Float64Array {
  const score = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += out[t * d + i] * out[t * d + i];
    score[t] = Math.sqrt(ss);
  }
  return score;
}

/**
 * 'uniform' baseline: the evenly strided k of T indices, round((i+1) T / k) - 1 for i = 0..k-1
 * (Math.round, i.e. halves round up). Always contains T-1. Requires 1 <= k <= T.
 */
export function refUniformIndices(T: number, k: number): number[] {
  if (!(k >= 1 && k <= T)) throw new Error(`uniform: need 1 <= k <= T, got k=${k}, T=${T}`);
  const idx: number[] = [];
  for (let i = 0; i < k; i++) idx.push(Math.round(((i + 1) * T) / k) - 1);
  return idx;
}

/**
 * Which of T present tokens to keep (indices into the present tokens, ascending).
 *   k >= T: all. Otherwise the protected ones (the last token, the first `protectFirst`, the last
 *   `protectLast`) are always kept and count toward k (all protected are kept even if more than k);
 *   the remaining slots go to the highest scores, ties to the earlier position (NaN counts as -inf).
 */
export function refSelectKeep(scores: Float64Array, k: number, protectFirst = 0, protectLast = 0): number[] {
  const T = scores.length;
  if (T === 0) return [];
  if (k >= T) return Array.from({ length: T }, (_, i) => i);
  const keep = new Set<number>([T - 1]);
  for (let i = 0; i < Math.min(protectFirst, T); i++) keep.add(i);
  for (let i = Math.max(0, T - protectLast); i < T; i++) keep.add(i);
  const val = (i: number): number => (Number.isNaN(scores[i]) ? -Infinity : scores[i]);
  const rest = Array.from({ length: T }, (_, i) => i)
    .filter((i) => !keep.has(i))
    .sort((a, b) => (val(a) !== val(b) ? (val(b) > val(a) ? 1 : -1) : a - b));
  for (const i of rest) {
    if (keep.size >= k) break;
    keep.add(i);
  }
  return [...keep].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// One Mamba block
// ---------------------------------------------------------------------------------------------

/** Everything one mixer computes for T tokens (returned so tests can compare intermediate stages). */
export interface RefMixerResult {
  out: Float64Array; //    [T, d]  mixer output (before the residual add)
  xPre: Float64Array; //   [T, E]  in_proj x branch, before the conv
  x: Float64Array; //      [T, E]  after conv + bias + silu
  z: Float64Array; //      [T, E]  gate branch
  dt: Float64Array; //     [T, E]  after softplus
  B: Float64Array; //      [T, N]
  C: Float64Array; //      [T, N]
  A: Float64Array; //      [E, N]  -exp(A_log)
  y: Float64Array; //      [T, E]  scan output, gated by silu(z)
  state: RefLayerState; //         state after the T tokens
}

/**
 * The Mamba-1 mixer of one layer (pre-norm included) on the residual stream h. With
 * cfg.mixerRmsEps set it is Falcon-Mamba's mixer: dt_low, B and C (the slices of x_proj's output)
 * each go through a weightless RMSNorm with that epsilon before dt_proj, the scan and the scores.
 *   h [T, d] (residual, un-normalised), st: this layer's state (not modified) -> RefMixerResult
 */
export function refMixer(cfg: MambaConfig, lw: RefLayerWeights, h: Float64Array, T: number, st: RefLayerState): RefMixerResult {
  const { dModel: d, dInner: E, dState: N, dtRank: R, dConv: K, mixerRmsEps } = cfg;
  const xPre = new Float64Array(T * E);
  const z = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    const xn = refRmsNorm(h.subarray(t * d, (t + 1) * d), lw.norm, cfg.eps); //   [d]
    const xz = refLinear(lw.inProj, 2 * E, d, xn, lw.inProjBias); //              [2E, d] @ [d] -> [2E]
    xPre.set(xz.subarray(0, E), t * E);
    z.set(xz.subarray(E, 2 * E), t * E);
  }

  const conv = refConv1d(xPre, st.conv, lw.convW, lw.convB, T, E, K); //          [T, E]
  const x = conv.y.map(silu);

  const dt = new Float64Array(T * E);
  const B = new Float64Array(T * N);
  const C = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    const dbc = refLinear(lw.xProj, R + 2 * N, E, x.subarray(t * E, (t + 1) * E), null); // [R+2N]
    let dtLow = dbc.subarray(0, R); //                                            [R]
    let Bt = dbc.subarray(R, R + N); //                                           [N]
    let Ct = dbc.subarray(R + N, R + 2 * N); //                                   [N]
    if (mixerRmsEps !== undefined) {
      // Falcon-Mamba: each slice normalised on its own, no weight, the mixer's own epsilon
      dtLow = refRmsNormPlain(dtLow, mixerRmsEps);
      Bt = refRmsNormPlain(Bt, mixerRmsEps);
      Ct = refRmsNormPlain(Ct, mixerRmsEps);
    }
    B.set(Bt, t * N);
    C.set(Ct, t * N);
    const dtLin = refLinear(lw.dtProjW, E, R, dtLow, lw.dtProjB); //              [E, R] @ [R] -> [E]
    for (let e = 0; e < E; e++) dt[t * E + e] = softplus(dtLin[e]);
  }

  const A = lw.ALog.map((v) => -Math.exp(v)); //                                  [E, N]
  const scan = refSelectiveScan(x, dt, A, B, C, lw.D, z, st.ssm, T, E, N); //     y [T, E], s [E, N]

  const out = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    out.set(refLinear(lw.outProj, d, E, scan.y.subarray(t * E, (t + 1) * E), lw.outProjBias), t * d); // [d, E] @ [E]
  }
  return { out, xPre, x, z, dt, B, C, A, y: scan.y, state: { conv: conv.state, ssm: scan.sFinal } };
}

/** Final norm + LM head for one residual vector.   h [d] -> logits [V] */
export function refHead(cfg: MambaConfig, w: RefWeights, h: Float64Array): Float64Array {
  const hn = refRmsNorm(h, w.normF, cfg.eps);
  return refLinear(w.lmHead ?? w.embedding, cfg.vocabSize, cfg.dModel, hn, null); // [V, d] @ [d] -> [V]
}

// ---------------------------------------------------------------------------------------------
// Whole model, with optional Simba pruning
// ---------------------------------------------------------------------------------------------

export type RefCriterion = 'simba' | 'local' | 'norm' | 'uniform' | 'random';

export interface RefSimbaOptions {
  /** Tokens kept after each layer l = 0..L-1 (k >= tokens present keeps all). */
  keepCounts: number[];
  criterion: RefCriterion;
  reduce: 'max' | 'sum';
  /** The first this many present tokens are always kept (default 0). */
  protectFirst?: number;
  /** The last this many present tokens are always kept (default 0; the very last one always is). */
  protectLast?: number;
  /** Scores for criterion 'random': one value per present token of that layer. */
  randomScores?: (layer: number, T: number) => Float64Array;
}

export interface RefForwardOptions {
  simba?: RefSimbaOptions;
}

export interface RefForwardResult {
  /** Per original position, [V] each. A token dropped after layer l exits early: its residual after layer l goes to norm_f + head. */
  logits: Float64Array[];
  /** State after the call: per layer, the conv window and SSM state over the tokens that layer processed. */
  state: RefState;
  /** Original positions kept after each layer (all positions when not pruning). */
  kept: number[][];
  /** Per layer, the criterion's score of each token present in that layer (empty arrays when not pruning). */
  scores: Float64Array[];
}

/** Scores of the T tokens present in layer l under a pruning criterion. */
function criterionScores(
  cfg: MambaConfig,
  simba: RefSimbaOptions,
  layer: number,
  mix: RefMixerResult,
  T: number,
  k: number,
): Float64Array {
  const { dModel: d, dInner: E, dState: N } = cfg;
  switch (simba.criterion) {
    case 'simba':
      return refScoresBruteForce(mix.x, mix.dt, mix.A, mix.B, mix.C, T, E, N, simba.reduce);
    case 'local':
      return refLocalScores(mix.x, mix.dt, mix.B, mix.C, T, E, N, simba.reduce);
    case 'norm':
      return refNormScores(mix.out, T, d);
    case 'uniform': {
      // 1 on the evenly strided set, 0 elsewhere; with no protection the selection is exactly that set.
      const s = new Float64Array(T);
      if (k < T) for (const i of refUniformIndices(T, Math.max(1, k))) s[i] = 1;
      else s.fill(1);
      return s;
    }
    case 'random': {
      if (!simba.randomScores) throw new Error("criterion 'random' needs opts.simba.randomScores");
      const s = simba.randomScores(layer, T);
      if (s.length !== T) throw new Error(`randomScores(${layer}, ${T}) returned ${s.length} values`);
      return Float64Array.from(s);
    }
    default:
      throw new Error(`unknown criterion ${String(simba.criterion)}`);
  }
}

/**
 * Run the model over `tokens`, continuing from `state` (default: zero state; not modified).
 *   tokens [T0] -> logits T0 x [V], state, kept, scores (see RefForwardResult)
 */
export function refForward(
  cfg: MambaConfig,
  w: RefWeights,
  tokens: number[],
  state?: RefState,
  opts?: RefForwardOptions,
): RefForwardResult {
  const { dModel: d, nLayer: L, vocabSize: V } = cfg;
  const simba = opts?.simba;
  if (simba && simba.keepCounts.length !== L) {
    throw new Error(`keepCounts has ${simba.keepCounts.length} entries, the model has ${L} layers`);
  }
  const st = state ? cloneState(state) : zeroState(cfg);
  if (st.length !== L) throw new Error(`state has ${st.length} layers, the model has ${L}`);

  // Residual stream of the tokens present in the current layer, and their original positions.
  let pos: number[] = tokens.map((_, i) => i);
  let h = new Float64Array(tokens.length * d); //                                 [T, d]
  tokens.forEach((tok, i) => {
    if (!(Number.isInteger(tok) && tok >= 0 && tok < V)) throw new Error(`token ${tok} out of range [0, ${V})`);
    h.set(w.embedding.subarray(tok * d, (tok + 1) * d), i * d);
  });
  const exitH: (Float64Array | null)[] = tokens.map(() => null); //              residual at exit, per original position
  const kept: number[][] = [];
  const scores: Float64Array[] = [];

  for (let l = 0; l < L; l++) {
    const T = pos.length;
    const mix = refMixer(cfg, w.layers[l], h, T, st[l]);
    st[l] = mix.state;
    for (let i = 0; i < T * d; i++) h[i] += mix.out[i]; //                         h = h + out

    if (!simba) {
      kept.push(pos.slice());
      scores.push(new Float64Array(0));
      continue;
    }
    const k = simba.keepCounts[l];
    const sc = criterionScores(cfg, simba, l, mix, T, k);
    scores.push(sc);
    const keepIdx = refSelectKeep(sc, k, simba.protectFirst ?? 0, simba.protectLast ?? 0);
    const keepSet = new Set(keepIdx);
    for (let i = 0; i < T; i++) {
      if (!keepSet.has(i)) exitH[pos[i]] = h.slice(i * d, (i + 1) * d); //        early exit
    }
    const hNext = new Float64Array(keepIdx.length * d);
    keepIdx.forEach((i, j) => hNext.set(h.subarray(i * d, (i + 1) * d), j * d));
    h = hNext;
    pos = keepIdx.map((i) => pos[i]);
    kept.push(pos.slice());
  }
  pos.forEach((p, i) => {
    exitH[p] = h.slice(i * d, (i + 1) * d);
  });

  const logits = exitH.map((hv) => refHead(cfg, w, hv as Float64Array));
  return { logits, state: st, kept, scores };
}
