/** `simba bench`: prefill and decode throughput (tokens/s), optionally with Simba rows. */
import type { Command } from 'commander';

import { BENCH_DEFAULTS, LIMITS } from '../limits';
import { formatBench, runBench } from '../measure/bench';
import { boundRows, formatBounds, formatGemmTable, formatLimits, gemmTable, kernelsOf } from '../measure/roofline';
import { measureLimits, measureReadBandwidth } from '../platform/machine';
import { WEIGHT_FORMATS } from '../types';
import {
  addModelOptions,
  addSimbaModifiers,
  intArg,
  listArg,
  out,
  parseFloatStrict,
  parseIntStrict,
  progress,
  simbaModifiers,
  usage,
  withModel,
  type ModelFlags,
  type SimbaFlags,
} from './args';

interface BenchFlags extends ModelFlags, Omit<SimbaFlags, 'flops'> {
  json?: boolean;
  runs: number;
  lengths?: number[];
  batches?: number[];
  decodeTokens?: number;
  decodePrompt?: number;
  /** Budgets (a list here, unlike the other commands' --flops). */
  flops?: number[];
  seed?: number;
  /** Measure the machine's bounds and print each row as a fraction of its bound. */
  limits?: boolean;
  /** Instead of the model benchmark: the GEMM table of --shape (default mamba-130m), all weight formats. */
  gemm?: boolean;
}

async function cmdGemm(f: BenchFlags): Promise<void> {
  const bar = progress('gemm');
  try {
    const limits = await measureLimits();
    const rows = await gemmTable(
      f.shape ?? 'mamba-130m',
      [...WEIGHT_FORMATS],
      limits,
      undefined,
      Math.min(f.runs, 5),
      (d, t, l) => bar.update(d, t, l),
    );
    bar.stop();
    out(
      f.json ? JSON.stringify({ limits, gemm: rows }, null, 2) + '\n' : `${formatLimits(limits)}\n\n${formatGemmTable(rows)}\n`,
    );
  } finally {
    bar.stop();
  }
}

async function cmdBench(f: BenchFlags): Promise<void> {
  if (f.gemm) {
    if (f.model !== undefined) throw usage('--gemm times the GEMMs of a --shape (random weights), not of --model');
    return cmdGemm(f);
  }
  const mods = simbaModifiers(f);
  if (Object.keys(mods).length && !f.flops)
    throw usage('--start, --criterion, --reduce, --protect-* and --prune-seed need --flops');
  await withModel(f, async (model) => {
    const bar = progress('bench');
    let r;
    try {
      r = await runBench(
        model,
        {
          runs: f.runs,
          lengths: f.lengths,
          batches: f.batches,
          decodeTokens: f.decodeTokens,
          decodePrompt: f.decodePrompt,
          flops: f.flops,
          simba: mods,
          seed: f.seed,
        },
        (p) => bar.update(p.done, p.total, p.label),
      );
    } finally {
      bar.stop();
    }
    if (!f.limits) {
      out(f.json ? JSON.stringify(r, null, 2) + '\n' : formatBench(r) + '\n');
      return;
    }
    const limits = await measureLimits();
    const atWeights = await measureReadBandwidth(Math.max(4096, r.model.weightBytes));
    const bounds = boundRows(r, limits, await kernelsOf(r), atWeights);
    out(
      f.json
        ? JSON.stringify({ ...r, limits, readAtWeights: atWeights, bounds }, null, 2) + '\n'
        : `${formatBench(r)}\n\n${formatLimits(limits, atWeights)}\n${formatBounds(bounds)}\n`,
    );
  });
}

export function addBenchCommand(program: Command): void {
  const bench = program.command('bench').description('prefill and decode throughput (tokens/s), optionally with Simba rows');
  const d = BENCH_DEFAULTS;
  addModelOptions(bench, { shape: true })
    .option('--json', 'print one JSON document at the end')
    .option('--runs <n>', 'timed runs per row, after one warm-up', intArg(1), d.runs)
    .option(
      '--lengths <list>',
      `prefill lengths (default ${d.lengths.join(',')})`,
      listArg((s) => parseIntStrict(s, 1, LIMITS.requestTokens), 'integers >= 1'),
    )
    .option(
      '--batches <list>',
      `decode batch sizes (default ${d.batches.join(',')})`,
      listArg((s) => parseIntStrict(s, 1), 'integers >= 1'),
    )
    .option('--decode-tokens <n>', `decode steps per run (default ${d.decodeTokens})`, intArg(1))
    .option('--decode-prompt <n>', `prompt tokens prefilled before decoding (default ${d.decodePrompt})`, intArg(1))
    .option(
      '--flops <list>',
      'Simba FLOPs budgets for extra prefill rows, e.g. 0.25,0.5,0.75',
      listArg((s) => parseFloatStrict(s, 0, 1, true), 'numbers in (0, 1]'),
    )
    .option('--seed <n>', `seed of the random token ids (default ${d.seed})`, intArg(0, LIMITS.seed))
    .option(
      '--limits',
      "also measure this machine's read bandwidth (over a buffer far larger than the caches, and over one of the weights' size) and FMA / dot-product peaks (a few seconds) and print each row as a fraction of its bound",
    )
    .option(
      '--gemm',
      'instead: GFLOP/s of every GEMM shape of --shape (default mamba-130m) for M = 1, 8, 32, 512, 2048 and each weight format',
    );
  addSimbaModifiers(bench).action((o: BenchFlags) => cmdBench(o));
}
