/**
 * lib/measure/roofline.ts: each benchmark row is held to the compute peak of the GEMM kernel that ran
 * for its rows (f32 FMA, bf16 / int8 dot products, AMX tiles) or to read bandwidth, computed here by hand from
 * a synthetic result; gemmKernel names the kernel the dispatcher picks.
 */
import { gemmKernel, measureReadBandwidth } from '../lib/platform/machine';
import type { BenchResult } from '../lib/measure/bench';
import { boundRows, kernelPeak, kernelsOf } from '../lib/measure/roofline';
import type { MachineLimits } from '../lib/platform/machine';

const limits = { threads: 2, isa: 'avx512', readGBs1: 10, readGBsAll: 20, fmaGflops1: 100, fmaGflopsAll: 200 } as MachineLimits;

const stat = (median: number) => ({ median, min: median, max: median, mean: median, runs: [median] });
function result(weights: 'f32' | 'bf16' | 'int8'): BenchResult {
  return {
    model: { weights, layerFlops: 1e6, nLayer: 10, flopsPerToken: 2e7, weightBytes: 1e9 },
    prefill: [{ length: 512, tokensPerSec: stat(5000), ms: 0 }],
    decode: [
      { batch: 1, tokensPerSec: stat(10) },
      { batch: 32, tokensPerSec: stat(100) },
    ],
  } as unknown as BenchResult;
}

test('kernelPeak: f32 FMA peak times the multiply-adds per instruction of each kernel', () => {
  expect(kernelPeak('f32 fma', limits)).toEqual({ gflops: 200, name: 'fma peak' });
  expect(kernelPeak('bf16 weights, f32 fma', limits)).toEqual({ gflops: 200, name: 'fma peak' });
  expect(kernelPeak('bf16 vdpbf16ps', limits)).toEqual({ gflops: 400, name: 'bf16 dot peak' });
  expect(kernelPeak('int8 (portable)', limits)).toEqual({ gflops: 400, name: 'int8 dot peak' });
  expect(kernelPeak('int8 vpdpbusd', limits)).toEqual({ gflops: 800, name: 'int8 dot peak' });
});

test('kernelPeak: the dot-product kernels use their measured peaks where --limits has them', () => {
  const measured = { ...limits, int8DotGflopsAll: 380, bf16DotGflopsAll: 390 } as MachineLimits;
  expect(kernelPeak('int8 vpdpbusd', measured)).toEqual({ gflops: 380, name: 'int8 dot peak' });
  expect(kernelPeak('bf16 vdpbf16ps', measured)).toEqual({ gflops: 390, name: 'bf16 dot peak' });
  // the kernels without a probe of their own keep the FMA-based figures
  expect(kernelPeak('int8 (portable)', measured)).toEqual({ gflops: 400, name: 'int8 dot peak' });
  expect(kernelPeak('f32 fma', measured)).toEqual({ gflops: 200, name: 'fma peak' });
  const rows = boundRows(result('int8'), measured, new Map([[512, 'int8 vpdpbusd']]));
  expect(rows[0]).toMatchObject({ bound: 38000, boundBy: 'int8 dot peak' });
});

test('kernelPeak: the AMX kernels use the measured tile peaks, else 16x / 32x the FMA peak', () => {
  expect(kernelPeak('bf16 amx', limits)).toEqual({ gflops: 3200, name: 'bf16 amx peak' });
  expect(kernelPeak('int8 amx', limits)).toEqual({ gflops: 6400, name: 'int8 amx peak' });
  const measured = { ...limits, amxBf16GflopsAll: 5000, amxInt8GflopsAll: 9000 } as MachineLimits;
  expect(kernelPeak('bf16 amx', measured)).toEqual({ gflops: 5000, name: 'bf16 amx peak' });
  expect(kernelPeak('int8 amx', measured)).toEqual({ gflops: 9000, name: 'int8 amx peak' });
  // prefill T=512 on AMX int8: 9000 GFLOP/s / 1e7 FLOPs per token
  const rows = boundRows(result('int8'), measured, new Map([[512, 'int8 amx']]));
  expect(rows[0]).toMatchObject({ bound: 900000, boundBy: 'int8 amx peak' });
});

test('boundRows: prefill against the kernel peak, decode against min(read bandwidth, kernel peak)', () => {
  const kernels = new Map([
    [512, 'int8 vpdpbusd'],
    [1, 'int8 vpdpbusd'],
    [32, 'int8 vpdpbusd'],
  ]);
  const rows = boundRows(result('int8'), limits, kernels);
  // prefill: 800 GFLOP/s / (1e6 x 10 FLOPs per token) = 80,000 tokens/s
  expect(rows[0]).toMatchObject({ label: 'prefill T=512', bound: 80000, boundBy: 'int8 dot peak' });
  expect(rows[0].fraction).toBeCloseTo(5000 / 80000, 12);
  // decode B=1: 20 GB/s / 1 GB = 20 tokens/s < 800e9 / 2e7 = 40,000
  expect(rows[1]).toMatchObject({ label: 'decode B=1', bound: 20, boundBy: 'read bandwidth', fraction: 0.5 });
  // B=32: 640 by bandwidth, still under the peak
  expect(rows[2]).toMatchObject({ bound: 640, boundBy: 'read bandwidth' });
  // without kernels every row is held to the f32 FMA peak (the old behaviour)
  expect(boundRows(result('int8'), limits)[0]).toMatchObject({ bound: 20000, boundBy: 'fma peak' });
  // a compute-bound decode row names the kernel's peak
  const big = { ...result('bf16'), model: { ...result('bf16').model, flopsPerToken: 1e10 } } as BenchResult;
  const r = boundRows(big, limits, new Map([[32, 'bf16 vdpbf16ps']]));
  expect(r[2]).toMatchObject({ bound: 40, boundBy: 'bf16 dot peak' });
});

test('boundRows: a decode step also reads and writes every sequence state (Mamba-2: states outweigh the weights)', () => {
  const heavy = { ...result('f32'), model: { ...result('f32').model, stateBytes: 25e6 } } as BenchResult;
  const rows = boundRows(heavy, limits);
  // B=1: 20 GB/s / (1 GB + 2 x 25 MB) = 19.05 tokens/s
  expect(rows[1].bound).toBeCloseTo(20e9 / 1.05e9, 9);
  // B=32: 32 x 20 GB/s / (1 GB + 32 x 50 MB) = 246 tokens/s, where the weights alone would give 640
  expect(rows[2]).toMatchObject({ boundBy: 'read bandwidth' });
  expect(rows[2].bound).toBeCloseTo((32 * 20e9) / 2.6e9, 9);
});

test('boundRows: with the read bandwidth at the weights size, decode is held to that one, by name', () => {
  const atWeights = { readGBs1: 20, readGBsAll: 45, bufferBytes: 1e9 };
  const rows = boundRows(result('int8'), limits, new Map([[1, 'int8 vpdpbusd']]), atWeights);
  // 45 GB/s / 1 GB = 45 tokens/s; prefill rows do not change
  expect(rows[1]).toMatchObject({ label: 'decode B=1', bound: 45, boundBy: 'read at weight size' });
  expect(rows[1].fraction).toBeCloseTo(10 / 45, 12);
  expect(rows[0]).toEqual(boundRows(result('int8'), limits, new Map([[1, 'int8 vpdpbusd']]))[0]);
});

test('measureReadBandwidth streams a buffer of the asked size (to 4 KiB per thread) and checks its arguments', async () => {
  const r = await measureReadBandwidth(3 << 20, 2);
  expect(r.bufferBytes).toBeLessThanOrEqual(3 << 20);
  expect(r.bufferBytes).toBeGreaterThan((3 << 20) - 4096 * 64);
  expect(r.bufferBytes % 4096).toBe(0);
  // a few MB read in a few ms: positive and finite
  for (const v of [r.readGBs1, r.readGBsAll]) expect(Number.isFinite(v) && v > 0.1).toBe(true);
  const tiny = await measureReadBandwidth(5000, 1);
  expect(tiny.bufferBytes).toBeGreaterThanOrEqual(4096);
  await expect(measureReadBandwidth(100)).rejects.toThrow(
    /measureReadBandwidth: bytes must be a number in \[4096, 2\^34\], got 100/,
  );
  await expect(measureReadBandwidth('1e6' as never)).rejects.toThrow(/bytes must be a number/);
  await expect(measureReadBandwidth(1e6, 0)).rejects.toThrow(/reps must be an integer in \[1, 100\], got 0/);
});

test('gemmKernel and kernelsOf name the dispatcher kernel for each format and row count', async () => {
  expect(await gemmKernel('f32', 1)).toBe('f32 fma');
  expect(await gemmKernel('f32', 2048)).toBe('f32 fma');
  expect(await gemmKernel('bf16', 1)).toBe('bf16 weights, f32 fma');
  expect(['bf16 weights, f32 fma', 'bf16 vdpbf16ps', 'bf16 amx']).toContain(await gemmKernel('bf16', 2048));
  expect(['int8 vpdpbusd', 'int8 (portable)']).toContain(await gemmKernel('int8', 8));
  expect(['int8 vpdpbusd', 'int8 (portable)', 'int8 amx']).toContain(await gemmKernel('int8', 2048));
  await expect(gemmKernel('f32', 0)).rejects.toThrow(/M must be an integer >= 1/);
  const k = await kernelsOf(result('f32'));
  expect([...k.keys()].sort((a, b) => a - b)).toEqual([1, 32, 512]);
  expect([...k.values()]).toEqual(['f32 fma', 'f32 fma', 'f32 fma']);
});
