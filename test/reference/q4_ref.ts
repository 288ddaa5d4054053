/**
 * Float64 references for the int4 weights (native/cpu/kernels.h Q4) and their GEMM, written from the
 * formulas, for the tests to hold the native kernels to.
 *
 *   Weights: blocks of 32 inputs per output feature, W[n, k] ~= (u - 8) d, u in [0, 15], d a half
 *   float per block. llama.cpp's Q4_0 picks d = m / -8 (m: the block's value of largest magnitude)
 *   and u = min(15, trunc(x / d + 8.5)); ours starts there and keeps the scale of least squared error
 *   among a few, so its error per block is never above Q4_0's.
 *   Activations: per row, scale = max |A| / 127 (f32), q = floor(A / scale + 0.5) in [-127, 127].
 */

/** v rounded to the nearest IEEE half float (ties to even), finite values below 65504. */
export function halfRound(v: number): number {
  const a = Math.abs(v);
  if (a === 0) return v;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const ulp = 2 ** (e - 10);
  let q = a / ulp;
  const f = Math.floor(q);
  q = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(v) * q * ulp;
}

/** llama.cpp's Q4_0 of one block (ggml-quants.c quantize_row_q4_0_ref), dequantized. */
export function q4_0Block(x: ArrayLike<number>): Float64Array {
  let m = 0;
  for (let k = 0; k < x.length; k++) if (Math.abs(x[k]) > Math.abs(m)) m = x[k];
  const d = halfRound(Math.fround(m / -8));
  const id = d !== 0 ? Math.fround(1 / d) : 0;
  return Float64Array.from(x, (v) => (Math.min(15, Math.trunc(Math.fround(v * id) + 8.5)) - 8) * d);
}

/** Squared error of a dequantized block against the original. */
export function sse(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < x.length; k++) s += (x[k] - y[k]) ** 2;
  return s;
}

/** Whether the values are (u - 8) d for integers u in [0, 15] and one half float d (found from the largest value). */
export function onQ4Grid(v: ArrayLike<number>): boolean {
  let big = 0;
  for (let k = 0; k < v.length; k++) if (Math.abs(v[k]) > Math.abs(big)) big = v[k];
  if (big === 0) return true;
  for (let q = -8; q <= 7; q++) {
    if (q === 0) continue;
    const d = big / q;
    if (halfRound(d) !== d) continue;
    let ok = true;
    for (let k = 0; k < v.length && ok; k++) {
      const u = v[k] / d;
      ok = Math.abs(u - Math.round(u)) < 1e-9 && Math.round(u) >= -8 && Math.round(u) <= 7;
    }
    if (ok) return true;
  }
  return false;
}

/** C [M, N] = quantized A [M, K] times Wq^T (+ bias): the int4 GEMM's result in float64 (Wq: the dequantized weights). */
export function refGemmQ4(
  A: Float32Array,
  Wq: Float32Array,
  bias: Float32Array | null,
  M: number,
  N: number,
  K: number,
): Float64Array {
  const C = new Float64Array(M * N);
  const q = new Float64Array(K);
  for (let m = 0; m < M; m++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(A[m * K + k]));
    const scale = amax > 0 ? Math.fround(amax / 127) : 1;
    const inv = Math.fround(1 / scale);
    for (let k = 0; k < K; k++) q[k] = Math.floor(Math.fround(Math.fround(A[m * K + k] * inv) + 128.5)) - 128;
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += q[k] * Wq[n * K + k];
      C[m * N + n] = s * scale + (bias ? bias[n] : 0);
    }
  }
  return C;
}
