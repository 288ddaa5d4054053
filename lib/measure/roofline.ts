/**
 * The roofline: how close the engine runs to this machine's physical limits (the CLI's
 * `simba bench --limits` and `--gemm`).
 *
 *   prefill  bound = compute peak (all threads) / layer FLOPs per token  (the head runs once: ignored)
 *   decode   bound = min(B x read bandwidth / weight bytes, compute peak / FLOPs per token):
 *            a decode step reads every weight once, whatever B; large B become compute-bound. The
 *            read bandwidth is the one measured over a buffer of the weights' size when given
 *            (measureReadBandwidth: a model that fits the last-level cache in part reads from it
 *            faster than from memory), else the machine's (a buffer far larger than the caches).
 * The compute peak is the one of the GEMM kernel that runs on those rows (kernelPeak): the measured
 * f32 FMA peak, times 2 for bf16 vdpbf16ps and int8 pmaddwd and 4 for int8 vpdpbusd (the
 * multiply-adds each instruction does, against 16 f32 FMAs for a 512-bit vector). bf16 weights
 * on a CPU without AVX512-BF16 are widened and multiplied with f32 FMAs: the f32 peak.
 *
 * @example
 *   const limits = await measureLimits();
 *   const r = await runBench(model, { lengths: [512] });
 *   const kernels = await kernelsOf(r);
 *   const atWeights = await measureReadBandwidth(r.model.weightBytes);
 *   console.log(formatBounds(boundRows(r, limits, kernels, atWeights)));
 *   console.log(formatGemmTable(await gemmTable('mamba-130m', ['f32', 'int8'], limits), limits));
 */
import { SimbaError } from '../errors';
import { SHAPES } from '../engine/load';
import { gemmKernel, timeGemm, type MachineLimits, type ReadBandwidth } from '../platform/machine';
import type { WeightFormat } from '../types';
import type { BenchResult } from './bench';

export interface BoundRow {
  /** e.g. "prefill T=2048", "decode B=1". */
  label: string;
  tokensPerSec: number;
  /** The physical bound (tokens/s) and which one it is. */
  bound: number;
  boundBy: PeakName | 'read bandwidth' | 'read at weight size';
  /** tokensPerSec / bound. */
  fraction: number;
}

export type PeakName = 'fma peak' | 'bf16 dot peak' | 'int8 dot peak' | 'bf16 amx peak' | 'int8 amx peak';

/**
 * The compute peak of a GEMM kernel (its `path`, see gemmKernel) in GFLOP/s; a multiply-add counts 2
 * FLOPs in every format. The dot-product kernels use their own measured peaks (`--limits` times
 * vpdpbusd and vdpbf16ps where they run: their throughput is not a fixed multiple of the FMA's, e.g.
 * Ice Lake runs one 512-bit vpdpbusd per cycle against two FMAs, 2x the FMA's multiply-adds, not
 * 4x). Without a measurement they fall back to the multiply-adds per instruction times the FMA
 * peak, an upper bound: 4x for vpdpbusd, 2x for vdpbf16ps and the portable int8 kernel. The AMX
 * kernels ('bf16 amx', 'int8 amx') use the tile peaks `--limits` measures; without them, 16x and 32x
 * the FMA peak (Sapphire Rapids: 1024 bf16 / 2048 int8 multiply-adds per cycle per core against
 * two 16-wide FMAs).
 *
 * @example
 *   kernelPeak('int8 vpdpbusd', limits);  // { gflops: limits.int8DotGflopsAll, name: 'int8 dot peak' }
 */
export function kernelPeak(path: string, limits: MachineLimits): { gflops: number; name: PeakName } {
  const f32 = limits.fmaGflopsAll;
  if (path === 'bf16 amx') return { gflops: limits.amxBf16GflopsAll ?? 16 * f32, name: 'bf16 amx peak' };
  if (path === 'int8 amx') return { gflops: limits.amxInt8GflopsAll ?? 32 * f32, name: 'int8 amx peak' };
  if (path.includes('vpdpbusd')) return { gflops: limits.int8DotGflopsAll ?? 4 * f32, name: 'int8 dot peak' };
  if (path.startsWith('int8') || path.startsWith('int4')) return { gflops: 2 * f32, name: 'int8 dot peak' };
  if (path.includes('vdpbf16ps')) return { gflops: limits.bf16DotGflopsAll ?? 2 * f32, name: 'bf16 dot peak' };
  return { gflops: f32, name: 'fma peak' };
}

/** The GEMM kernel of each row count a benchmark ran (prefill lengths and decode batches). */
export async function kernelsOf(r: BenchResult): Promise<Map<number, string>> {
  const Ms = new Set([...r.prefill.map((p) => p.length), ...r.decode.map((d) => d.batch)]);
  const out = new Map<number, string>();
  for (const M of Ms) out.set(M, await gemmKernel(r.model.weights, M));
  return out;
}

/**
 * Each prefill and decode row of a benchmark against its bound (see the module comment). `kernels`
 * (from kernelsOf) names the GEMM kernel per row count; without it every row is held to the f32
 * FMA peak. `atWeights` (measureReadBandwidth of the model's weight bytes) bounds decode by the
 * read bandwidth at the weights' size ('read at weight size') instead of the machine's. A decode
 * step moves the weights once and each sequence's state twice (read and written back).
 */
export function boundRows(
  r: BenchResult,
  limits: MachineLimits,
  kernels?: Map<number, string>,
  atWeights?: ReadBandwidth,
): BoundRow[] {
  const read = (atWeights ?? limits).readGBsAll * 1e9;
  const readName = atWeights ? 'read at weight size' : 'read bandwidth';
  const peak = (M: number) => kernelPeak(kernels?.get(M) ?? 'f32 fma', limits);
  const layerFlops = r.model.layerFlops * r.model.nLayer;
  const rows: BoundRow[] = [];
  for (const p of r.prefill) {
    const k = peak(p.length);
    const bound = (k.gflops * 1e9) / layerFlops;
    rows.push({
      label: `prefill T=${p.length}`,
      tokensPerSec: p.tokensPerSec.median,
      bound,
      boundBy: k.name,
      fraction: p.tokensPerSec.median / bound,
    });
  }
  for (const d of r.decode) {
    const k = peak(d.batch);
    // a step reads the weights once and every sequence's state twice (read, write back): Mamba-2's
    // state (19.4 MB a sequence for mamba2-130m) outweighs the weights from a few sequences on
    const stepBytes = r.model.weightBytes + d.batch * 2 * (r.model.stateBytes ?? 0);
    const byRead = (d.batch * read) / stepBytes,
      byPeak = (k.gflops * 1e9) / r.model.flopsPerToken;
    const bound = Math.min(byRead, byPeak);
    rows.push({
      label: `decode B=${d.batch}`,
      tokensPerSec: d.tokensPerSec.median,
      bound,
      boundBy: byRead <= byPeak ? readName : k.name,
      fraction: d.tokensPerSec.median / bound,
    });
  }
  return rows;
}

export interface GemmRow {
  name: string; // in_proj, x_proj, dt_proj, out_proj, head
  M: number;
  N: number;
  K: number;
  format: WeightFormat;
  path: string;
  seconds: number;
  gflops: number;
  /** gflops / the compute peak of the kernel that ran (kernelPeak, all threads). */
  peakFraction: number;
  /** Weight bytes / seconds, GB/s (what bounds M = 1). */
  weightGBs: number;
  /** weightGBs / read bandwidth (all threads). */
  readFraction: number;
}

/** The GEMM shapes of one layer (and the head) of a standard shape. */
export function gemmShapes(shape: string): { name: string; N: number; K: number }[] {
  const c = SHAPES[shape];
  if (!c) throw new SimbaError('E_ARG', `unknown shape '${shape}' (known: ${Object.keys(SHAPES).join(', ')})`);
  const E = c.dInner,
    d = c.dModel,
    R = c.dtRank,
    N = c.dState;
  if (c.mamba2) {
    const GN = c.mamba2.nGroups * N;
    return [
      { name: 'in_proj', N: 2 * E + 2 * GN + c.mamba2.nHeads, K: d },
      { name: 'out_proj', N: d, K: E },
      { name: 'head', N: c.vocabSize, K: d },
    ];
  }
  return [
    { name: 'in_proj', N: 2 * E, K: d },
    { name: 'x_proj', N: R + 2 * N, K: E },
    { name: 'dt_proj', N: E, K: R },
    { name: 'out_proj', N: d, K: E },
    { name: 'head', N: c.vocabSize, K: d },
  ];
}

// int4: half a byte a weight and a 2-byte scale per 32 (native/cpu/kernels.h Q4)
const BYTES: Record<WeightFormat, number> = { f32: 4, bf16: 2, int8: 1, int4: 0.5 + 2 / 32 };

/** Times every GEMM of `shape` for each M and format (best of `reps`). The head only up to M = 32 (it runs on few rows). */
export async function gemmTable(
  shape: string,
  formats: WeightFormat[],
  limits: MachineLimits,
  Ms: number[] = [1, 8, 32, 512, 2048],
  reps = 3,
  onProgress?: (done: number, total: number, label: string) => void,
): Promise<GemmRow[]> {
  const jobs = gemmShapes(shape).flatMap((s) =>
    Ms.filter((M) => s.name !== 'head' || M <= 32).flatMap((M) => formats.map((format) => ({ ...s, M, format }))),
  );
  const rows: GemmRow[] = [];
  for (const [i, j] of jobs.entries()) {
    onProgress?.(i, jobs.length, `${j.name} M=${j.M} ${j.format}`);
    const t = await timeGemm({ M: j.M, N: j.N, K: j.K, format: j.format }, reps);
    const gflops = (2 * j.M * j.N * j.K) / t.seconds / 1e9;
    const weightGBs = (j.N * j.K * BYTES[j.format]) / t.seconds / 1e9;
    rows.push({
      name: j.name,
      M: j.M,
      N: j.N,
      K: j.K,
      format: j.format,
      path: t.path,
      seconds: t.seconds,
      gflops,
      peakFraction: gflops / kernelPeak(t.path, limits).gflops,
      weightGBs,
      readFraction: weightGBs / limits.readGBsAll,
    });
  }
  onProgress?.(jobs.length, jobs.length, 'done');
  return rows;
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

const f1 = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 24 ? 1 : 0)} MiB`;

/** The measured limits, one block. */
export function formatLimits(l: MachineLimits, atWeights?: ReadBandwidth): string {
  const peak = (name: string, one: number | undefined, all: number | undefined) =>
    one === undefined || all === undefined ? '' : `; ${name} ${f1(one)} / ${f1(all)} GFLOP/s (1 / ${l.threads} threads)`;
  return [
    `limits   read ${f1(l.readGBs1)} GB/s (1 thread), ${f1(l.readGBsAll)} GB/s (${l.threads} threads); ` +
      `FMA peak ${f1(l.fmaGflops1)} GFLOP/s (1 thread), ${f1(l.fmaGflopsAll)} GFLOP/s (${l.threads} threads, ${l.isa})` +
      peak('int8 dot (vpdpbusd) peak', l.int8DotGflops1, l.int8DotGflopsAll) +
      peak('bf16 dot (vdpbf16ps) peak', l.bf16DotGflops1, l.bf16DotGflopsAll) +
      peak('bf16 AMX peak', l.amxBf16Gflops1, l.amxBf16GflopsAll) +
      peak('int8 AMX peak', l.amxInt8Gflops1, l.amxInt8GflopsAll) +
      '; best of N runs',
    ...(atWeights
      ? [
          `         read over ${mib(atWeights.bufferBytes)} (the weights' size) ${f1(atWeights.readGBs1)} GB/s (1 thread), ` +
            `${f1(atWeights.readGBsAll)} GB/s (${l.threads} threads), against ${mib(l.bufferBytes)} above`,
        ]
      : []),
  ].join('\n');
}

/** Bench rows as fractions of their bounds. */
export function formatBounds(rows: BoundRow[]): string {
  return table(
    ['vs bound', 'tokens/s', 'bound', 'fraction', 'bound by'],
    rows.map((r) => [r.label, f1(r.tokensPerSec), f1(r.bound), pct(r.fraction), r.boundBy]),
  );
}

/** The GEMM table (GFLOP/s per shape, fraction of its kernel's compute peak, and of read bandwidth at M = 1). */
export function formatGemmTable(rows: GemmRow[]): string {
  return table(
    ['gemm', 'M', 'N', 'K', 'weights', 'kernel', 'ms', 'GFLOP/s', 'of peak', 'weight GB/s', 'of read bw'],
    rows.map((r) => [
      r.name,
      String(r.M),
      String(r.N),
      String(r.K),
      r.format,
      r.path,
      (r.seconds * 1e3).toFixed(3),
      f1(r.gflops),
      pct(r.peakFraction),
      f1(r.weightGBs),
      pct(r.readFraction),
    ]),
  );
}
