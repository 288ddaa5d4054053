/**
 * Float64 reference of Mamba-2 (SSD), as state-spaces/mamba `modules/mamba2.py` with rmsnorm=True,
 * norm_before_gate=False (the gated RMSNorm per group, as mamba_ssm and llama.cpp do it; HF
 * transformers' torch path normalizes over all of E when G > 1, which is wrong for such models),
 * and of the Simba score generalized to it. Written from the math, for reading, not speed.
 *
 * Glossary (code name -> symbol of mamba2.py / the SSD paper):
 *   T   tokens in the layer           d   dModel (hidden_size)
 *   E   dInner = H * P                H   heads (num_heads)         P  head_dim
 *   G   groups of B and C (n_groups)  N   state per head row (state_size)
 *   K   conv width (conv_kernel)      CH  conv channels = E + 2 G N (x, B, C convolved together)
 *   g(h) = floor(h / (H / G))         the group head h reads B and C from
 *   a[t,h] = dt[t,h] A_h              the log decay of step t (A_h = -exp(A_log[h]) < 0)
 *   s[h,p,n]                          the SSM state
 *
 * Layout: row-major Float64Arrays; `[T, E]` means element (t, e) at t * E + e; x[t, h, p] is
 * x[t * E + h * P + p]; B[t, g, n] is B[t * G * N + g * N + n].
 */

/** The shape of a Mamba-2 model, as the reference needs it. */
export interface Mamba2RefConfig {
  d: number;
  L: number;
  V: number;
  H: number;
  P: number;
  G: number;
  N: number;
  K: number;
  /** RMSNorm epsilon, of the layer norms, norm_f and the gated norm (layer_norm_epsilon). */
  eps: number;
  /** dt is clamped to [lo, hi] after softplus (time_step_limit; [0, Infinity] = no clamp). */
  dtLimit: [number, number];
  /** The SSD chunk length of the chunked form (chunk_size). */
  chunk: number;
  convBias: boolean;
}

export const dInner = (c: Mamba2RefConfig): number => c.H * c.P;
export const convChannels = (c: Mamba2RefConfig): number => c.H * c.P + 2 * c.G * c.N;
/** in_proj rows: z (E), x (E), B (G N), C (G N), dt (H). */
export const inProjRows = (c: Mamba2RefConfig): number => 2 * c.H * c.P + 2 * c.G * c.N + c.H;

export interface Mamba2RefLayer {
  norm: Float64Array; //       [d]
  inProj: Float64Array; //     [inProjRows, d]
  convW: Float64Array; //      [CH, K]   convW[c, K-1] multiplies the current input
  convB: Float64Array | null; // [CH]
  dtBias: Float64Array; //     [H]
  ALog: Float64Array; //       [H]
  D: Float64Array; //          [H]
  gateNorm: Float64Array; //   [E]      mixer.norm.weight
  outProj: Float64Array; //    [d, E]
}

export interface Mamba2RefWeights {
  embedding: Float64Array; //  [V, d]
  normF: Float64Array; //      [d]
  lmHead: Float64Array | null; // [V, d]; null = tied to the embedding
  layers: Mamba2RefLayer[];
}

export interface Mamba2RefLayerState {
  conv: Float64Array; //       [CH, K-1] the last K-1 conv inputs, oldest first
  ssm: Float64Array; //        [H, P, N]
}

export function mamba2ZeroState(c: Mamba2RefConfig): Mamba2RefLayerState[] {
  return Array.from({ length: c.L }, () => ({
    conv: new Float64Array(convChannels(c) * (c.K - 1)),
    ssm: new Float64Array(c.H * c.P * c.N),
  }));
}

/**
 * The weights of an HF `Mamba2ForCausalLM` state dict (names `backbone.layers.{i}.mixer.*`), widened
 * to f64. `get` returns a tensor's values or undefined when absent.
 */
export function mamba2WeightsFromHf(c: Mamba2RefConfig, get: (name: string) => ArrayLike<number> | undefined): Mamba2RefWeights {
  const need = (name: string, n: number): Float64Array => {
    const v = get(name);
    if (!v) throw new Error(`mamba2 reference: missing tensor ${name}`);
    if (v.length !== n) throw new Error(`mamba2 reference: ${name} has ${v.length} values, expected ${n}`);
    return Float64Array.from(v);
  };
  const E = dInner(c);
  const CH = convChannels(c);
  const layers: Mamba2RefLayer[] = [];
  for (let i = 0; i < c.L; i++) {
    const p = `backbone.layers.${i}`;
    layers.push({
      norm: need(`${p}.norm.weight`, c.d),
      inProj: need(`${p}.mixer.in_proj.weight`, inProjRows(c) * c.d),
      convW: need(`${p}.mixer.conv1d.weight`, CH * c.K),
      convB: c.convBias ? need(`${p}.mixer.conv1d.bias`, CH) : null,
      dtBias: need(`${p}.mixer.dt_bias`, c.H),
      ALog: need(`${p}.mixer.A_log`, c.H),
      D: need(`${p}.mixer.D`, c.H),
      gateNorm: need(`${p}.mixer.norm.weight`, E),
      outProj: need(`${p}.mixer.out_proj.weight`, c.d * E),
    });
  }
  const head = get('lm_head.weight');
  return {
    embedding: need('backbone.embeddings.weight', c.V * c.d),
    normF: need('backbone.norm_f.weight', c.d),
    lmHead: head ? need('lm_head.weight', c.V * c.d) : null,
    layers,
  };
}

const silu = (v: number): number => v / (1 + Math.exp(-v));
const softplus = (v: number): number => (v > 20 ? v : Math.log1p(Math.exp(v)));

/** y[T, rows] = x[T, cols] W^T, W [rows, cols]. */
function linear(W: Float64Array, rows: number, cols: number, x: Float64Array, T: number): Float64Array {
  const y = new Float64Array(T * rows);
  for (let t = 0; t < T; t++)
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let k = 0; k < cols; k++) acc += W[r * cols + k] * x[t * cols + k];
      y[t * rows + r] = acc;
    }
  return y;
}

/** RMSNorm of each row of x [T, n] (in groups of `group` channels) times w [n]. */
export function refRmsNormGroups(
  x: Float64Array,
  T: number,
  n: number,
  group: number,
  w: Float64Array,
  eps: number,
): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++)
    for (let g0 = 0; g0 < n; g0 += group) {
      let ss = 0;
      for (let j = g0; j < g0 + group; j++) ss += x[t * n + j] ** 2;
      const r = 1 / Math.sqrt(ss / group + eps);
      for (let j = g0; j < g0 + group; j++) y[t * n + j] = x[t * n + j] * r * w[j];
    }
  return y;
}

/** What a mixer call computes on the way, for the scan and score checks. */
export interface Mamba2RefMixer {
  out: Float64Array; //  [T, d]
  x: Float64Array; //    [T, E]      after conv + silu
  B: Float64Array; //    [T, G, N]
  C: Float64Array; //    [T, G, N]
  dt: Float64Array; //   [T, H]      after softplus and clamp
  A: Float64Array; //    [H]
}

/** The SSM inputs of one layer for T tokens of u (the normed residual): conv state is advanced. */
export function refMamba2Inputs(
  c: Mamba2RefConfig,
  lw: Mamba2RefLayer,
  u: Float64Array,
  T: number,
  st: Mamba2RefLayerState,
): { z: Float64Array; x: Float64Array; B: Float64Array; C: Float64Array; dt: Float64Array; A: Float64Array } {
  const E = dInner(c);
  const CH = convChannels(c);
  const GN = c.G * c.N;
  const R = inProjRows(c);
  const zxbcdt = linear(lw.inProj, R, c.d, u, T);
  // depthwise causal conv over x, B, C (channels E + 2GN), the state holding the K-1 previous inputs
  const xbc = new Float64Array(T * CH);
  for (let ch = 0; ch < CH; ch++) {
    const hist = Array.from(st.conv.subarray(ch * (c.K - 1), (ch + 1) * (c.K - 1)));
    for (let t = 0; t < T; t++) {
      hist.push(zxbcdt[t * R + E + ch]);
      let acc = lw.convB ? lw.convB[ch] : 0;
      for (let k = 0; k < c.K; k++) acc += lw.convW[ch * c.K + k] * hist[hist.length - c.K + k];
      xbc[t * CH + ch] = silu(acc);
    }
    st.conv.set(hist.slice(hist.length - (c.K - 1)), ch * (c.K - 1));
  }
  const z = new Float64Array(T * E);
  const x = new Float64Array(T * E);
  const B = new Float64Array(T * GN);
  const C = new Float64Array(T * GN);
  const dt = new Float64Array(T * c.H);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      z[t * E + e] = zxbcdt[t * R + e];
      x[t * E + e] = xbc[t * CH + e];
    }
    for (let j = 0; j < GN; j++) {
      B[t * GN + j] = xbc[t * CH + E + j];
      C[t * GN + j] = xbc[t * CH + E + GN + j];
    }
    for (let h = 0; h < c.H; h++) {
      const v = softplus(zxbcdt[t * R + E + CH + h] + lw.dtBias[h]);
      dt[t * c.H + h] = Math.min(Math.max(v, c.dtLimit[0]), c.dtLimit[1]);
    }
  }
  const A = lw.ALog.map((v) => -Math.exp(v));
  return { z, x, B, C, dt, A };
}

/** y[T, E] of the SSM by the recurrence, one token at a time; s [H, P, N] is advanced. */
export function refSsdSequential(
  c: Mamba2RefConfig,
  x: Float64Array,
  B: Float64Array,
  C: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  T: number,
  s: Float64Array,
): Float64Array {
  const { H, P, N, G } = c;
  const E = H * P;
  const y = new Float64Array(T * E);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      const decay = Math.exp(dt[t * H + h] * A[h]);
      for (let p = 0; p < P; p++) {
        const xv = x[t * E + h * P + p];
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const i = (h * P + p) * N + n;
          s[i] = decay * s[i] + dt[t * H + h] * xv * B[(t * G + g) * N + n];
          acc += C[(t * G + g) * N + n] * s[i];
        }
        y[t * E + h * P + p] = acc;
      }
    }
  return y;
}

/**
 * The same y by the chunked SSD form: within a chunk of Q tokens, y_i = sum_{j <= i} (C_i . B_j)
 * exp(sum_{k=j+1..i} a_k) dt_j x_j (the (C B^T o decay mask) product), plus the incoming state
 * decayed to i, C_i . exp(sum_{k=start..i} a_k) s; then the state is passed to the next chunk.
 */
export function refSsdChunked(
  c: Mamba2RefConfig,
  x: Float64Array,
  B: Float64Array,
  C: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  T: number,
  s: Float64Array,
): Float64Array {
  const { H, P, N, G } = c;
  const E = H * P;
  const y = new Float64Array(T * E);
  for (let t0 = 0; t0 < T; t0 += c.chunk) {
    const Q = Math.min(c.chunk, T - t0);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      // cum[i] = sum_{k=t0..t0+i} a_k
      const cum = new Float64Array(Q);
      let run = 0;
      for (let i = 0; i < Q; i++) cum[i] = run += dt[(t0 + i) * H + h] * A[h];
      const dot = (ti: number, tj: number): number => {
        let acc = 0;
        for (let n = 0; n < N; n++) acc += C[(ti * G + g) * N + n] * B[(tj * G + g) * N + n];
        return acc;
      };
      for (let i = 0; i < Q; i++) {
        const ti = t0 + i;
        for (let p = 0; p < P; p++) {
          let acc = 0;
          for (let j = 0; j <= i; j++) {
            const tj = t0 + j;
            acc += dot(ti, tj) * Math.exp(cum[i] - cum[j]) * dt[tj * H + h] * x[tj * E + h * P + p];
          }
          let fromState = 0;
          for (let n = 0; n < N; n++) fromState += C[(ti * G + g) * N + n] * s[(h * P + p) * N + n];
          y[ti * E + h * P + p] = acc + Math.exp(cum[i]) * fromState;
        }
      }
      // state at the chunk's end
      for (let p = 0; p < P; p++)
        for (let n = 0; n < N; n++) {
          let acc = Math.exp(cum[Q - 1]) * s[(h * P + p) * N + n];
          for (let j = 0; j < Q; j++) {
            const tj = t0 + j;
            acc += Math.exp(cum[Q - 1] - cum[j]) * dt[tj * H + h] * x[tj * E + h * P + p] * B[(tj * G + g) * N + n];
          }
          s[(h * P + p) * N + n] = acc;
        }
    }
  }
  return y;
}

/**
 * Each token's contribution to the layer's last SSM output (from a zero state, without the D skip):
 * c[t,h,p] = exp(A_h sum_{k=t+1..T-1} dt[k,h]) dt[t,h] x[t,h,p] (C[T-1,g(h)] . B[t,g(h)]), so
 * that sum_t c[t,h,p] is y[T-1,h,p]. Written directly with suffix sums, O(T H (P + N)). [T, E]
 */
export function refMamba2Contributions(
  c: Mamba2RefConfig,
  x: Float64Array,
  B: Float64Array,
  C: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  T: number,
): Float64Array {
  const { H, P, N, G } = c;
  const E = H * P;
  const out = new Float64Array(T * E);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / G));
    let suffix = 0; // sum_{k=t+1..T-1} dt[k,h]
    for (let t = T - 1; t >= 0; t--) {
      let cb = 0;
      for (let n = 0; n < N; n++) cb += C[((T - 1) * G + g) * N + n] * B[(t * G + g) * N + n];
      const w = Math.exp(A[h] * suffix) * dt[t * H + h] * cb;
      for (let p = 0; p < P; p++) out[t * E + h * P + p] = w * x[t * E + h * P + p];
      suffix += dt[t * H + h];
    }
  }
  return out;
}

/** Simba's score on Mamba-2: |c[t,h,p]| reduced over (h, p) by max or sum. [T] */
export function refMamba2Scores(
  c: Mamba2RefConfig,
  x: Float64Array,
  B: Float64Array,
  C: Float64Array,
  dt: Float64Array,
  A: Float64Array,
  T: number,
  reduce: 'max' | 'sum',
): Float64Array {
  const E = c.H * c.P;
  const contrib = refMamba2Contributions(c, x, B, C, dt, A, T);
  const score = new Float64Array(T);
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++) {
      const v = Math.abs(contrib[t * E + e]);
      score[t] = reduce === 'max' ? Math.max(score[t], v) : score[t] + v;
    }
  return score;
}

/** One layer's mixer on T tokens of the residual stream h [T, d]; the state is advanced. */
export function refMamba2Mixer(
  c: Mamba2RefConfig,
  lw: Mamba2RefLayer,
  hIn: Float64Array,
  T: number,
  st: Mamba2RefLayerState,
  scan: 'sequential' | 'chunked' = 'sequential',
): Mamba2RefMixer {
  const E = dInner(c);
  const u = refRmsNormGroups(hIn, T, c.d, c.d, lw.norm, c.eps);
  const { z, x, B, C, dt, A } = refMamba2Inputs(c, lw, u, T, st);
  const y = (scan === 'chunked' ? refSsdChunked : refSsdSequential)(c, x, B, C, dt, A, T, st.ssm);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < c.H; h++)
      for (let p = 0; p < c.P; p++) {
        const i = t * E + h * c.P + p;
        y[i] = (y[i] + lw.D[h] * x[i]) * silu(z[i]);
      }
  const yn = refRmsNormGroups(y, T, E, E / c.G, lw.gateNorm, c.eps);
  return { out: linear(lw.outProj, c.d, E, yn, T), x, B, C, dt, A };
}

/** Logits [T, V] of every position of `tokens`, from `state` (advanced), dense. */
export function refMamba2Forward(
  c: Mamba2RefConfig,
  w: Mamba2RefWeights,
  tokens: number[],
  state: Mamba2RefLayerState[],
  scan: 'sequential' | 'chunked' = 'sequential',
): Float64Array {
  const T = tokens.length;
  const h = new Float64Array(T * c.d);
  tokens.forEach((id, t) => h.set(w.embedding.subarray(id * c.d, (id + 1) * c.d), t * c.d));
  for (let l = 0; l < c.L; l++) {
    const m = refMamba2Mixer(c, w.layers[l], h, T, state[l], scan);
    for (let i = 0; i < h.length; i++) h[i] += m.out[i];
  }
  const hn = refRmsNormGroups(h, T, c.d, c.d, w.normF, c.eps);
  return linear(w.lmHead ?? w.embedding, c.V, c.d, hn, T);
}

/** The 'local' criterion on Mamba-2: |dt[t,h] x[t,h,p] (C[t,g(h)] . B[t,g(h)])| reduced over (h, p). [T] */
export function refMamba2LocalScores(
  c: Mamba2RefConfig,
  x: Float64Array,
  B: Float64Array,
  C: Float64Array,
  dt: Float64Array,
  T: number,
  reduce: 'max' | 'sum',
): Float64Array {
  const { H, P, N, G } = c;
  const E = H * P;
  const score = new Float64Array(T);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      let cb = 0;
      for (let n = 0; n < N; n++) cb += C[(t * G + g) * N + n] * B[(t * G + g) * N + n];
      for (let p = 0; p < P; p++) {
        const v = Math.abs(dt[t * H + h] * x[t * E + h * P + p] * cb);
        score[t] = reduce === 'max' ? Math.max(score[t], v) : score[t] + v;
      }
    }
  return score;
}

/** Simba's pruning as the engine applies it between layers (keep counts per layer, scan-based criteria). */
export interface Mamba2RefSimba {
  keepCounts: number[];
  criterion: 'simba' | 'local';
  reduce: 'max' | 'sum';
}

/**
 * Logits of every position of `tokens` with Simba pruning: after layer l only keepCounts[l] tokens go on
 * (selectKeep: the caller's selection rule, test/reference/mamba_ref.ts refSelectKeep); a dropped token's
 * logits come from its residual at exit. `kept[l]` lists the original positions that went on after layer l.
 */
export function refMamba2PrunedForward(
  c: Mamba2RefConfig,
  w: Mamba2RefWeights,
  tokens: number[],
  state: Mamba2RefLayerState[],
  simba: Mamba2RefSimba,
  selectKeep: (scores: Float64Array, k: number) => number[],
): { logits: Float64Array[]; kept: number[][] } {
  let pos = tokens.map((_, i) => i);
  let h = new Float64Array(tokens.length * c.d);
  tokens.forEach((id, t) => h.set(w.embedding.subarray(id * c.d, (id + 1) * c.d), t * c.d));
  const exit: Float64Array[] = [];
  const kept: number[][] = [];
  for (let l = 0; l < c.L; l++) {
    const T = pos.length;
    const m = refMamba2Mixer(c, w.layers[l], h, T, state[l]);
    for (let i = 0; i < h.length; i++) h[i] += m.out[i];
    const sc =
      simba.criterion === 'simba'
        ? refMamba2Scores(c, m.x, m.B, m.C, m.dt, m.A, T, simba.reduce)
        : refMamba2LocalScores(c, m.x, m.B, m.C, m.dt, T, simba.reduce);
    const keep = selectKeep(sc, simba.keepCounts[l]);
    const keepSet = new Set(keep);
    for (let i = 0; i < T; i++) if (!keepSet.has(i)) exit[pos[i]] = h.slice(i * c.d, (i + 1) * c.d);
    const next = new Float64Array(keep.length * c.d);
    keep.forEach((i, j) => next.set(h.subarray(i * c.d, (i + 1) * c.d), j * c.d));
    h = next;
    pos = keep.map((i) => pos[i]);
    kept.push(pos.slice());
  }
  pos.forEach((p, i) => (exit[p] = h.slice(i * c.d, (i + 1) * c.d)));
  const logits = exit.map((hv) => {
    const hn = refRmsNormGroups(hv, 1, c.d, c.d, w.normF, c.eps);
    return linear(w.lmHead ?? w.embedding, c.V, c.d, hn, 1);
  });
  return { logits, kept };
}
