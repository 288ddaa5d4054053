/**
 * How close the engine runs to this machine's physical limits (the CLI's `simba bench --limits`
 * and `--gemm`).
 *
 *   prefill  bound = FMA peak (all threads) / layer FLOPs per token  (the head runs once: ignored)
 *   decode   bound = min(B x read bandwidth / weight bytes, FMA peak / FLOPs per token):
 *            a decode step reads every weight once, whatever B; large B become compute-bound.
 * The FMA peak is f32 FMAs with the active kernel build; bf16 (vdpbf16ps) and int8 (vpdpbusd)
 * do 2x and 4x the multiply-adds per instruction, so their prefill fraction can pass 1.
 *
 * @example
 *   const limits = await measureLimits();
 *   const r = await runBench(model, { lengths: [512] });
 *   console.log(formatBounds(boundRows(r, limits), limits));
 *   console.log(formatGemmTable(await gemmTable('mamba-130m', ['f32', 'int8'], limits), limits));
 */
import { SimbaError } from '../errors';
import { SHAPES } from '../engine/load';
import { timeGemm, type MachineLimits } from '../engine/machine';
import type { WeightFormat } from '../types';
import type { BenchResult } from './bench';

export interface BoundRow {
  /** e.g. "prefill T=2048", "decode B=1". */
  label: string;
  tokensPerSec: number;
  /** The physical bound (tokens/s) and which one it is. */
  bound: number;
  boundBy: 'fma peak' | 'read bandwidth';
  /** tokensPerSec / bound. */
  fraction: number;
}

/** Each prefill and decode row of a benchmark against its bound (see the module comment). */
export function boundRows(r: BenchResult, limits: MachineLimits): BoundRow[] {
  const fma = limits.fmaGflopsAll * 1e9,
    read = limits.readGBsAll * 1e9;
  const layerFlops = r.model.layerFlops * r.model.nLayer;
  const rows: BoundRow[] = [];
  for (const p of r.prefill) {
    const bound = fma / layerFlops;
    rows.push({
      label: `prefill T=${p.length}`,
      tokensPerSec: p.tokensPerSec.median,
      bound,
      boundBy: 'fma peak',
      fraction: p.tokensPerSec.median / bound,
    });
  }
  for (const d of r.decode) {
    const byRead = (d.batch * read) / r.model.weightBytes,
      byFma = fma / r.model.flopsPerToken;
    const bound = Math.min(byRead, byFma);
    rows.push({
      label: `decode B=${d.batch}`,
      tokensPerSec: d.tokensPerSec.median,
      bound,
      boundBy: byRead <= byFma ? 'read bandwidth' : 'fma peak',
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
  /** gflops / FMA peak (all threads). */
  fmaFraction: number;
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
  return [
    { name: 'in_proj', N: 2 * E, K: d },
    { name: 'x_proj', N: R + 2 * N, K: E },
    { name: 'dt_proj', N: E, K: R },
    { name: 'out_proj', N: d, K: E },
    { name: 'head', N: c.vocabSize, K: d },
  ];
}

const BYTES: Record<WeightFormat, number> = { f32: 4, bf16: 2, int8: 1 };

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
      fmaFraction: gflops / limits.fmaGflopsAll,
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

/** The measured limits, one block. */
export function formatLimits(l: MachineLimits): string {
  return [
    `limits   read ${f1(l.readGBs1)} GB/s (1 thread), ${f1(l.readGBsAll)} GB/s (${l.threads} threads); ` +
      `FMA peak ${f1(l.fmaGflops1)} GFLOP/s (1 thread), ${f1(l.fmaGflopsAll)} GFLOP/s (${l.threads} threads, ${l.isa}); best of N runs`,
  ].join('\n');
}

/** Bench rows as fractions of their bounds. */
export function formatBounds(rows: BoundRow[]): string {
  return table(
    ['vs bound', 'tokens/s', 'bound', 'fraction', 'bound by'],
    rows.map((r) => [r.label, f1(r.tokensPerSec), f1(r.bound), pct(r.fraction), r.boundBy]),
  );
}

/** The GEMM table (GFLOP/s per shape, fraction of the FMA peak, and of read bandwidth at M = 1). */
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
      pct(r.fmaFraction),
      f1(r.weightGBs),
      pct(r.readFraction),
    ]),
  );
}
