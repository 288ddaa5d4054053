/**
 * This machine's physical limits and single-GEMM timings, measured by the native probes
 * (native/cpu/limits.cc, native/napi/bench_bindings.cc): what `simba bench --limits` and `--gemm`
 * read from the machine (lib/measure/roofline.ts turns them into bounds).
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

/** Streaming-read bandwidth over one buffer of about `bytes`. */
export interface ReadBandwidth {
  /** GB/s (1e9 bytes/s), one thread and every pool thread. */
  readGBs1: number;
  readGBsAll: number;
  /** The buffer streamed (bytes rounded down to 4 KiB per thread). */
  bufferBytes: number;
}

/**
 * The read-bandwidth probe of measureLimits alone, over a buffer of about `bytes`: given a model's
 * weight bytes, what a decode step that reads every weight once can get on this machine, caches
 * included (a model smaller than the last-level cache reads partly from it). Best of `reps`.
 *
 * @example
 *   const r = await measureReadBandwidth(model.info().weightBytes);  // { readGBsAll: 47.5, ... }
 */
export async function measureReadBandwidth(bytes: number, reps = 5): Promise<ReadBandwidth> {
  if (typeof bytes !== 'number' || !(bytes >= 4096 && bytes <= 2 ** 34))
    throw new SimbaError('E_ARG', `measureReadBandwidth: bytes must be a number in [4096, 2^34], got ${String(bytes)}`);
  if (!Number.isInteger(reps) || reps < 1 || reps > 100)
    throw new SimbaError('E_ARG', `measureReadBandwidth: reps must be an integer in [1, 100], got ${String(reps)}`);
  try {
    return await loadAddon().kernels.readBandwidth({ bytes, reps });
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
