/**
 * The kernel test table shared by test/kernels.test.ts and test/cuda.test.ts, in the style of ggml's
 * test-backend-ops: each case is one op on one shape with fixed random inputs (seeded from the test
 * seed), run on a backend (a kernel table: `addon.kernels` for the active CPU build, or
 * `addon.cudaKernels`) into named outputs. Every backend is compared with the CPU, each with its own
 * tolerance per output (relative error ||a - b|| / ||b||):
 *   ref   a CPU build against the float64 reference (test/reference/mamba_ref.ts)
 *   cuda  the CUDA kernel against the CPU build (absent: the op does not run on CUDA)
 * A case with `minRef` also asserts that the output really is rounded (bf16 and int8 weights).
 */
import type { NativeKernels } from '../../bindings';
import {
  refConv1d,
  refGemm,
  refLocalScores,
  refRmsNorm,
  refScoresBruteForce,
  refSelectiveScan,
  silu,
  softplus,
} from '../reference/mamba_ref';
import { f64, randArray, relErr } from './util';

/** The ops a backend runs; rmsnorm only on the CPU (the CUDA one is fused into the model). */
export type KernelBackend = Pick<NativeKernels, 'gemm' | 'conv1d' | 'scan' | 'score'> & Partial<Pick<NativeKernels, 'rmsnorm'>>;
export type Outputs = Record<string, ArrayLike<number>>;
export type Limits = Record<string, number>;

export interface KernelCase {
  op: 'gemm' | 'rmsnorm' | 'conv1d' | 'scan' | 'score';
  /** The op and its shape, e.g. "gemm bf16 M=7 N=33 K=17". */
  name: string;
  run(k: KernelBackend): Outputs;
  /** float64, the same output names (computed once). */
  reference(): Outputs;
  tol: { ref: Limits; cuda?: Limits };
  minRef?: Limits;
}

/** Outputs whose error is not within its limit (the empty list when all are), for a readable failure. */
export function overLimits(got: Outputs, want: Outputs, limits: Limits): { output: string; err: number; limit: number }[] {
  const bad: { output: string; err: number; limit: number }[] = [];
  for (const [output, limit] of Object.entries(limits)) {
    const err = relErr(got[output], want[output]);
    if (!(err < limit)) bad.push({ output, err, limit });
  }
  return bad;
}

/** Outputs that are closer to float64 than their floor (a rounding that did not happen). */
export function underFloors(got: Outputs, want: Outputs, floors: Limits): { output: string; err: number; floor: number }[] {
  const bad: { output: string; err: number; floor: number }[] = [];
  for (const [output, floor] of Object.entries(floors)) {
    const err = relErr(got[output], want[output]);
    if (!(err > floor)) bad.push({ output, err, floor });
  }
  return bad;
}

function once<T>(f: () => T): () => T {
  let v: T | undefined;
  return () => (v ??= f());
}

// ---------------------------------------------------------------- gemm: C[M, N] = A[M, K] W^T (+ bias)

type Format = 'f32' | 'bf16' | 'int8';
// bf16 weights: 8 mantissa bits, relative rounding 2^-9 per weight. int8 weights (scale per output
// feature) and int8 activations (scale per row): two roundings of 1/254 of the row's largest
// magnitude, ~6e-3 relative on uniform inputs. int8 runs on the CPU only.
const GEMM_TOL: Record<Format, { ref: number; cuda?: number; min?: number }> = {
  f32: { ref: 1e-6, cuda: 1e-4 },
  bf16: { ref: 5e-3, cuda: 2e-2, min: 1e-5 },
  int8: { ref: 1.5e-2, min: 1e-4 },
};

function gemmCases(seed: number, shapes: number[][], mul: number): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const [M, N, K] of shapes) {
    const inputs = once(() => ({
      A: randArray(M * K, seed + mul * M),
      W: randArray(N * K, seed + mul * N),
      bias: randArray(N, seed + mul * K),
    }));
    for (const withBias of [true, false]) {
      const reference = once(() => {
        const { A, W, bias } = inputs();
        return { C: refGemm(A, W, withBias ? bias : new Float32Array(N), M, N, K) };
      });
      for (const format of ['f32', 'bf16', 'int8'] as const) {
        const t = GEMM_TOL[format];
        cases.push({
          op: 'gemm',
          name: `gemm ${format} M=${M} N=${N} K=${K}${withBias ? '' : ' no bias'}`,
          run: (k) => {
            const { A, W, bias } = inputs();
            // the CUDA gemm reads bf16 (f32 or bf16 weights), the CPU one format
            return { C: k.gemm({ A, W, bias: withBias ? bias : null, M, N, K, format, bf16: format === 'bf16' }) };
          },
          reference,
          tol: { ref: { C: t.ref }, ...(t.cuda ? { cuda: { C: t.cuda } } : {}) },
          ...(t.min ? { minRef: { C: t.min } } : {}),
        });
      }
    }
  }
  return cases;
}

// ---------------------------------------------------------------- rmsnorm: y = x / rms(x) * w, per row

function rmsnormCase(seed: number): KernelCase {
  const rows = 9,
    d = 37,
    eps = 1e-5;
  const inputs = once(() => ({ x: randArray(rows * d, seed + 1, 3), w: randArray(d, seed + 2) }));
  const perRow = (y: ArrayLike<number>): Outputs => {
    const o: Outputs = {};
    for (let r = 0; r < rows; r++) o[`row ${r}`] = Array.prototype.slice.call(y, r * d, (r + 1) * d) as number[];
    return o;
  };
  const limits: Limits = {};
  for (let r = 0; r < rows; r++) limits[`row ${r}`] = 1e-6;
  return {
    op: 'rmsnorm',
    name: `rmsnorm rows=${rows} d=${d}`,
    run: (k) => {
      if (!k.rmsnorm) throw new Error('this backend has no rmsnorm kernel');
      const { x, w } = inputs();
      return perRow(k.rmsnorm({ x, w, rows, d, eps }));
    },
    reference: once(() => {
      const { x, w } = inputs();
      const y = new Float64Array(rows * d);
      for (let r = 0; r < rows; r++) y.set(refRmsNorm(f64(x.subarray(r * d, (r + 1) * d)), f64(w), eps), r * d);
      return perRow(y);
    }),
    tol: { ref: limits },
  };
}

// ---------------------------------------------------------------- conv1d (+ bias, SiLU), from a state

function conv1dCases(seed: number): KernelCase[] {
  const shapes = [
    [2, 1, 37],
    [3, 5, 37],
    [4, 40, 37],
    [4, 1, 37],
    [4, 300, 37],
    // several blocks of channel groups walked together, the last group partial
    [4, 40, 16 * 8 * 2 + 5],
    [2, 9, 16 * 8 * 2 + 5],
  ];
  const cases: KernelCase[] = [];
  for (const [K, T, E] of shapes) {
    const inputs = once(() => ({
      x: randArray(T * E, seed + 3),
      w: randArray(E * K, seed + 4),
      b: randArray(E, seed + 5),
      st: randArray(E * (K - 1), seed + 6),
    }));
    for (const withBias of [true, false]) {
      cases.push({
        op: 'conv1d',
        name: `conv1d K=${K} T=${T} E=${E}${withBias ? '' : ' no bias'}, continuing from a state`,
        run: (k) => {
          const { x, w, b, st } = inputs();
          const r = k.conv1d({ x, w, bias: withBias ? b : null, state: st.slice(), T, E, K });
          return { out: r.out, state: r.state };
        },
        reference: once(() => {
          const { x, w, b, st } = inputs();
          const r = refConv1d(f64(x), f64(st), f64(w), withBias ? f64(b) : null, T, E, K);
          return { out: r.y.map(silu), state: r.state };
        }),
        tol: { ref: { out: 1e-6, state: 1e-7 }, cuda: { out: 1e-4, state: 1e-6 } },
      });
    }
  }
  return cases;
}

// ---------------------------------------------------------------- selective scan (softplus, D, gate)

// [N, T, E, limit of y and state against float64]: E not a multiple of any vector width. T <= 4
// takes CUDA's sequential (decode) kernel, longer sequences its chunked parallel scan; the long
// ones accumulate more f32 rounding on the CPU too.
const SCAN_SHAPES: [number, number, number, number][] = [
  [16, 1, 37, 1e-6],
  [16, 1, 200, 1e-6], // the CPU decode step on 12 full groups of 16 channels, then a tail of 8
  [16, 4, 37, 1e-6],
  [16, 33, 37, 1e-6],
  [5, 20, 37, 1e-6],
  [12, 7, 37, 1e-6],
  [16, 200, 100, 1e-6],
  [5, 70, 37, 1e-6],
  [12, 7, 64, 1e-6],
  [64, 130, 40, 1e-6],
  [24, 1000, 33, 1e-6],
];

function scanCases(seed: number): KernelCase[] {
  return SCAN_SHAPES.map(([N, T, E, limit]) => {
    const inputs = once(() => ({
      x: randArray(T * E, seed + 7),
      dtRaw: randArray(T * E, seed + 8, 4),
      A_log: randArray(E * N, seed + 9),
      B: randArray(T * N, seed + 10),
      C: randArray(T * N, seed + 11),
      D: randArray(E, seed + 12),
      z: randArray(T * E, seed + 13, 3),
      s0: randArray(E * N, seed + 14),
    }));
    return {
      op: 'scan',
      name: `selective scan N=${N} T=${T} E=${E}`,
      run: (k) => {
        const { x, dtRaw, A_log, B, C, D, z, s0 } = inputs();
        const r = k.scan({ x, dt: dtRaw.slice(), A_log, B, C, D, z, state: s0.slice(), T, E, N });
        return { dt: r.dt, y: r.y, state: r.state };
      },
      reference: once(() => {
        const { x, dtRaw, A_log, B, C, D, z, s0 } = inputs();
        const dt = f64(dtRaw).map(softplus);
        const A = f64(A_log).map((v) => -Math.exp(v));
        const r = refSelectiveScan(f64(x), dt, A, f64(B), f64(C), f64(D), f64(z), f64(s0), T, E, N);
        return { dt, y: r.y, state: r.sFinal };
      }),
      tol: { ref: { dt: 1e-6, y: limit, state: limit }, cuda: { dt: 1e-5, y: 1e-4, state: 1e-4 } },
    };
  });
}

// ---------------------------------------------------------------- Simba scores ('simba', 'local')

// 'simba' against the O(T^2) brute force of the definition, 'local' against its direct form.
const SCORE_SHAPES: ['simba' | 'local', 'max' | 'sum', number, number][] = [
  ['simba', 'max', 16, 50],
  ['simba', 'sum', 16, 50],
  ['simba', 'max', 7, 23],
  ['simba', 'sum', 3, 1],
  ['simba', 'max', 16, 700],
  ['local', 'max', 16, 50],
  ['local', 'sum', 16, 50],
  ['local', 'max', 7, 23],
  ['local', 'sum', 3, 1],
  ['local', 'sum', 5, 90],
];

function scoreCases(seed: number): KernelCase[] {
  const E = 37;
  return SCORE_SHAPES.map(([crit, reduce, N, T]) => {
    const inputs = once(() => ({
      x: randArray(T * E, seed + 15),
      A_log: randArray(E * N, seed + 16),
      dt: Float32Array.from(f64(randArray(T * E, seed + 17, 3)).map(softplus)),
      B: randArray(T * N, seed + 18),
      C: randArray(T * N, seed + 19),
    }));
    return {
      op: 'score',
      name: `score ${crit} reduce=${reduce} N=${N} T=${T}`,
      run: (k) => ({ score: k.score({ ...inputs(), T, E, N, local: crit === 'local', reduceSum: reduce === 'sum' }) }),
      reference: once(() => {
        const { x, A_log, dt, B, C } = inputs();
        const A = f64(A_log).map((v) => -Math.exp(v));
        return {
          score:
            crit === 'simba'
              ? refScoresBruteForce(f64(x), f64(dt), A, f64(B), f64(C), T, E, N, reduce)
              : refLocalScores(f64(x), f64(dt), f64(B), f64(C), T, E, N, reduce),
        };
      }),
      tol: { ref: { score: 1e-5 }, cuda: { score: 1e-4 } },
    };
  });
}

/** Every case of the table, for inputs seeded from `seed`. */
export function kernelCases(seed: number): KernelCase[] {
  return [
    ...gemmCases(
      seed,
      [
        [1, 5, 3],
        [8, 64, 40],
        [7, 33, 17],
        [100, 70, 50],
        [13, 100, 64],
        [130, 65, 200],
        [300, 257, 96],
      ],
      1,
    ),
    // past the k-slices of every kernel (256 f32, 512 bf16, 1024 int8 k per slice) with odd and
    // non-multiple-of-4 K, and M past the 84-row blocks (threaded)
    ...gemmCases(
      seed,
      [
        [200, 45, 1031],
        [33, 64, 1300],
        [17, 130, 515],
      ],
      7,
    ),
    rmsnormCase(seed),
    ...conv1dCases(seed),
    ...scanCases(seed),
    ...scoreCases(seed),
  ];
}
