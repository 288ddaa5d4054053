/**
 * This machine's physical limits and single-GEMM timings, measured by the native probes
 * (native/cpu/limits.cc, native/napi/bench_bindings.cc). The engine side of `simba bench --limits`
 * and `--gemm` (lib/measure/limits.ts turns them into bounds).
 *
 * @example
 *   const l = await measureLimits();          // { readGBsAll: 27.1, fmaGflopsAll: 250, ... }
 *   const t = await timeGemm({ M: 2048, N: 3072, K: 768, format: 'int8' });  // { seconds, path }
 */
import { loadAddon, type NativeLimits } from '../../bindings';
import { SimbaError, fromNative } from '../errors';
import type { WeightFormat } from '../types';

export type MachineLimits = NativeLimits;

/**
 * Streaming-read bandwidth (GB/s, 1 thread and the whole pool), FMA peak and, where those kernels run,
 * the vpdpbusd / vdpbf16ps and AMX tile peaks (GFLOP/s); best of `reps`.
 */
export async function measureLimits(opts: { reps?: number; bufferMB?: number } = {}): Promise<MachineLimits> {
  try {
    return await loadAddon().kernels.limits(opts);
  } catch (e) {
    throw fromNative(e);
  }
}

export interface GemmShape {
  M: number;
  N: number;
  K: number;
  format: WeightFormat;
}

/**
 * The GEMM kernel this machine runs for `format` weights on M rows (the `path` of timeGemm:
 * 'f32 fma', 'bf16 weights, f32 fma', 'bf16 vdpbf16ps', 'bf16 amx', 'int8 vpdpbusd', 'int8 amx',
 * 'int8 (portable)').
 *
 * @example
 *   await gemmKernel('int8', 2048);  // 'int8 vpdpbusd' on a CPU with AVX512-VNNI
 */
export async function gemmKernel(format: WeightFormat, M: number): Promise<string> {
  if (!Number.isInteger(M) || M < 1) throw new SimbaError('E_ARG', `gemmKernel: M must be an integer >= 1, got ${String(M)}`);
  try {
    return (await loadAddon().kernels.gemmTime({ M, N: 32, K: 32, format, reps: 1, minSeconds: 0 })).path;
  } catch (e) {
    throw fromNative(e);
  }
}

/** Best seconds of C[M,N] = A[M,K] W^T with random inputs (each run repeated to >= 50 ms), and the kernel used. */
export async function timeGemm(shape: GemmShape, reps = 5): Promise<{ seconds: number; path: string }> {
  for (const k of ['M', 'N', 'K'] as const)
    if (!Number.isInteger(shape[k]) || shape[k] < 1)
      throw new SimbaError('E_ARG', `timeGemm: ${k} must be an integer >= 1, got ${String(shape[k])}`);
  try {
    return await loadAddon().kernels.gemmTime({ ...shape, reps });
  } catch (e) {
    throw fromNative(e);
  }
}
