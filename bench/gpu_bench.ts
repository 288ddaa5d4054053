/**
 * GPU timing driver for bench/gpu.sh (compiled by tsc to dist/bench/gpu_bench.js):
 *   1. the selective scan kernel alone (cudaKernels.benchScan): bytes it must move per second,
 *      against the device-to-device copy bandwidth measured in the same call, as a fraction;
 *   2. prefill tokens/s for the mamba-130m and mamba-1.4b shapes at batch x length 8 x 2048,
 *      dense and with Simba at 0.5 relative FLOPs (random weights, bf16 by default);
 *   3. decode tokens/s at batch 1, 32 and 256 (states live in host memory and are copied in and
 *      out on every call: at large batch that copy is what decode measures).
 * Prints one line per measurement and a markdown table last.
 *
 *   node dist/bench/gpu_bench.js [--weights bf16|f32] [--shapes mamba-130m,mamba-1.4b] [--quick]
 */
import { loadAddon } from '../bindings';
import { budgetOptions } from '../lib/measure/bench';
import { randomModel, SHAPES } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const quick = process.argv.includes('--quick');
const weights = arg('weights', 'bf16') as 'bf16' | 'f32';
const shapes = arg('shapes', 'mamba-130m,mamba-1.4b').split(',');
const rows: string[][] = [];
const log = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const now = (): number => Number(process.hrtime.bigint()) / 1e9;

function tokens(n: number, V: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % V;
  });
}

async function timeIt(reps: number, f: () => Promise<unknown>): Promise<number> {
  await f(); // warm-up (workspace allocation, first-touch)
  const t0 = now();
  for (let i = 0; i < reps; i++) await f();
  return (now() - t0) / reps;
}

function scanBench(): void {
  const k = loadAddon().cudaKernels;
  for (const [name, E] of [
    ['mamba-130m', 1536],
    ['mamba-1.4b', 4096],
  ] as const) {
    const r = k.benchScan({ nSeq: 8, T: 2048, E, N: 16, iters: quick ? 3 : 20 });
    const gbs = r.scanBytes / (r.scanMs * 1e-3) / 1e9;
    const frac = gbs / r.copyGBs;
    log(
      `scan ${name} (8x2048, E=${E}, N=16): ${r.scanMs.toFixed(3)} ms, ${gbs.toFixed(0)} GB/s, copy ${r.copyGBs.toFixed(0)} GB/s -> ${frac.toFixed(2)} of copy`,
    );
    rows.push([
      `selective scan ${name} 8x2048`,
      `${r.scanMs.toFixed(3)} ms`,
      `${gbs.toFixed(0)} GB/s = ${frac.toFixed(2)} x copy (${r.copyGBs.toFixed(0)} GB/s)`,
    ]);
  }
}

async function prefillBench(m: MambaModel, name: string): Promise<void> {
  const B = 8,
    T = 2048,
    V = m.config.vocabSize,
    L = m.config.nLayer;
  const prompts = Array.from({ length: B }, (_, i) => tokens(T, V, 17 + i));
  const reps = quick ? 1 : 3;
  // Dense: at most MAX_CHUNK_TOKENS (8192) per call, so two calls of 4 x 2048.
  const dense = await timeIt(reps, async () => {
    for (let i = 0; i < B; i += 4)
      await m.prefill(
        prompts.slice(i, i + 4).map((t) => ({ tokens: t })),
        { logits: 'last' },
      );
  });
  log(`prefill ${name} dense ${B}x${T}: ${((B * T) / dense).toFixed(0)} tok/s (${(dense * 1e3).toFixed(1)} ms)`);
  rows.push([`prefill ${name} ${B}x${T} dense`, `${(dense * 1e3).toFixed(1)} ms`, `${((B * T) / dense).toFixed(0)} tok/s`]);
  const { options, schedule } = budgetOptions(L, T, 0.5);
  let rel = 0;
  const pruned = await timeIt(reps, async () => {
    const r = await m.prefill(
      prompts.map((t) => ({ tokens: t })),
      { logits: 'last', simba: options },
    );
    rel = r[0].relFlops;
  });
  log(
    `prefill ${name} Simba flops 0.5 (${schedule}, rel ${rel.toFixed(3)}) ${B}x${T}: ${((B * T) / pruned).toFixed(0)} tok/s (${(pruned * 1e3).toFixed(1)} ms)`,
  );
  rows.push([
    `prefill ${name} ${B}x${T} Simba flops 0.5`,
    `${(pruned * 1e3).toFixed(1)} ms`,
    `${((B * T) / pruned).toFixed(0)} tok/s (x${(dense / pruned).toFixed(2)} vs dense)`,
  ]);
}

async function decodeBench(m: MambaModel, name: string): Promise<void> {
  for (const B of [1, 32, 256]) {
    const seqs = Array.from({ length: B }, () => m.newSequence());
    const steps = quick ? 2 : B >= 256 ? 5 : 20;
    let step = 0;
    const t = await timeIt(steps, async () => {
      await m.decode(seqs, tokens(B, m.config.vocabSize, 99 + step++));
    });
    log(`decode ${name} batch ${B}: ${(B / t).toFixed(0)} tok/s (${(t * 1e3).toFixed(2)} ms/step)`);
    rows.push([`decode ${name} batch ${B}`, `${(t * 1e3).toFixed(2)} ms/step`, `${(B / t).toFixed(0)} tok/s`]);
  }
}

async function main(): Promise<void> {
  const s = loadAddon().cudaAvailable();
  if (!s.available) throw new Error(`no GPU: ${s.reason}`);
  log(`device: ${s.device}; weights ${weights}`);
  const t0 = now();
  scanBench();
  for (const shape of shapes) {
    if (!SHAPES[shape]) throw new Error(`unknown shape ${shape}`);
    const t1 = now();
    const m = await randomModel(shape, { device: 'cuda', weights, seed: 1 });
    log(
      `${shape}: random weights on the device in ${(now() - t1).toFixed(1)} s (${(m.info().weightBytes / 2 ** 30).toFixed(2)} GiB)`,
    );
    try {
      await prefillBench(m, shape);
      await decodeBench(m, shape);
    } finally {
      m.dispose();
    }
  }
  log(`\nbench total ${(now() - t0).toFixed(0)} s, device ${s.device}, weights ${weights}\n`);
  log('| measurement | time | throughput |');
  log('| --- | --- | --- |');
  for (const r of rows) log(`| ${r.join(' | ')} |`);
}

main().catch((e: unknown) => {
  process.stderr.write(`gpu_bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
