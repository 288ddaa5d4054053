/**
 * Throughput benchmark (the CLI's `simba bench`), usable from code.
 *
 *   prefill  one prompt of T random token ids from a zero state, logits at the last position;
 *            tokens/s = T / time.
 *   decode   B sequences, each prefilled (untimed) with a short random prompt, then `decodeTokens`
 *            lockstep steps of model.step(B sequences, one random id each, a greedy native sample
 *            each): the call generation and the server make, and what the peer's bench times
 *            (greedy sampling, only tokens back to JS). tokens/s = B * steps / time. The fed ids
 *            are the random ones, not the samples, so every run does the same work.
 *   simba    prefill rows under Simba for each length and FLOPs budget: tokens/s, the plan's
 *            relFlops (layers only), the measured speedup over the dense median of the same run,
 *            and the theoretical 1 / relFlops.
 * Every row is one untimed warm-up run, then `runs` timed runs; the median, min and max are reported.
 *
 * Budgets below what the trapezoid can reach (rLast = 0 costs about half of dense) use a *steep*
 * schedule instead: keep ratio r_l = max(0, 1 - s*l) with the slope s solved for the budget (the
 * trapezoid is the case s = 1/(L-1)), given to the engine as explicit keep counts. Such rows say
 * schedule: 'steep'.
 *
 * @example
 *   const model = await randomModel('mamba-130m');
 *   const r = await runBench(model, { lengths: [512], batches: [1, 8], flops: [0.5] });
 *   r.prefill[0].tokensPerSec.median; r.simba[0].speedup;
 */
import * as os from 'os';

import { SimbaError } from '../errors';
import { BENCH_DEFAULTS, LIMITS } from '../limits';
import * as v from '../validate';
import { mulberry32 } from '../generate/sampler';
import { rngFromSeed, type LanguageModel, type SamplingParams } from '../engine/lm';
import type { WeightFormat } from '../types';
import { planSimba, solveRLast, trapezoidFloor, validateSimbaOptions, type SimbaOptions } from '../engine/simba';

/** Simba options other than the budget (criterion, reduce, start, protect, seed). */
export type SimbaModifiers = Omit<SimbaOptions, 'flops' | 'rLast' | 'keepCounts' | 'keepRatios'>;

export interface BenchOptions {
  /** Timed runs per row (default 5), after one warm-up. */
  runs?: number;
  /** Prefill prompt lengths (default [128, 512, 2048]). */
  lengths?: number[];
  /** Decode batch sizes (default [1, 8, 32]). */
  batches?: number[];
  /** Decode steps per run (default 32). */
  decodeTokens?: number;
  /** Prompt length prefilled before decoding (default 16). */
  decodePrompt?: number;
  /** Simba FLOPs budgets for the prefill rows (default none). */
  flops?: number[];
  /** Other Simba settings for those rows. */
  simba?: SimbaModifiers;
  /** Seed of the random token ids (default 1). */
  seed?: number;
  signal?: AbortSignal;
}

export interface BenchProgress {
  done: number;
  total: number;
  /** What runs now, e.g. "prefill T=512". */
  label: string;
}

/** Tokens per second over the timed runs. */
export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Each timed run, in order. */
  samples: number[];
}

export interface PrefillRow {
  length: number;
  tokensPerSec: Stat;
  /** Median milliseconds per prefill. */
  ms: number;
}

export interface DecodeRow {
  batch: number;
  steps: number;
  tokensPerSec: Stat;
  /** Median milliseconds per decode step (all B sequences). */
  msPerStep: number;
}

export interface SimbaRow {
  length: number;
  /** The requested relative-FLOPs budget. */
  budget: number;
  schedule: 'trapezoid' | 'steep';
  /** What the plan achieves: sum_l n_l / (L T), layers only. */
  relFlops: number;
  /** Tokens processed by each layer. */
  processed: number[];
  tokensPerSec: Stat;
  ms: number;
  /** Median tokens/s over the dense median at the same length (same run). */
  speedup: number;
  /** 1 / relFlops. */
  theoreticalSpeedup: number;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  isa: string;
  threads: number;
  node: string;
  os: string;
  arch: string;
  memoryBytes: number;
  date: string;
}

export interface BenchResult {
  machine: MachineInfo;
  model: {
    source: string;
    weights: WeightFormat;
    paramCount: number;
    nLayer: number;
    dModel: number;
    vocabSize: number;
    flopsPerToken: number;
    /** FLOPs of one token through one layer, and the bytes of all weights (what one decode step reads). */
    layerFlops: number;
    weightBytes: number;
    /** One sequence's recurrent state: a decode step reads and writes it for every sequence. */
    stateBytes: number;
  };
  settings: Required<Omit<BenchOptions, 'signal' | 'simba'>> & { simba: SimbaModifiers };
  prefill: PrefillRow[];
  decode: DecodeRow[];
  simba: SimbaRow[];
  /** Wall-clock seconds of the whole benchmark. */
  seconds: number;
}

const BENCH_KEYS = ['runs', 'lengths', 'batches', 'decodeTokens', 'decodePrompt', 'flops', 'simba', 'seed', 'signal'] as const;
const MODIFIER_KEYS = ['start', 'criterion', 'reduce', 'protect', 'seed'] as const;

function machineInfo(model: LanguageModel): MachineInfo {
  const info = model.info(),
    cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    isa: info.isa,
    threads: info.threads,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    memoryBytes: os.totalmem(),
    date: new Date().toISOString(),
  };
}

/** Median (mean of the middle two for an even count), min, max. */
export function stat(samples: number[]): Stat {
  const s = [...samples].sort((a, b) => a - b),
    n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return { median, min: s[0], max: s[n - 1], samples: [...samples] };
}

function relOf(processed: number[], T: number): number {
  return processed.reduce((a, b) => a + b, 0) / (processed.length * T);
}

function steep(L: number, T: number, slope: number): number[] {
  return Array.from({ length: L }, (_, l) =>
    Math.min(T, Math.max(1, Math.ceil(T * (l === 0 ? 1 : Math.max(0, 1 - slope * l)) - 1e-9))),
  );
}

/**
 * Simba options reaching a relative-FLOPs budget for a prompt of T tokens: the trapezoid when it
 * can (flops: budget), else the steep schedule as explicit keep counts (see the module comment).
 */
export function budgetOptions(
  L: number,
  T: number,
  budget: number,
  modifiers?: SimbaModifiers,
): { options: SimbaOptions; schedule: 'trapezoid' | 'steep' } {
  const mods = v.options('budgetOptions', modifiers, MODIFIER_KEYS, 'simba') as SimbaModifiers;
  v.int('budgetOptions', 'L (layers)', L, 1);
  v.int('budgetOptions', 'T (prompt length)', T, 1);
  if (!(budget > 0 && budget <= 1))
    throw new SimbaError('E_ARG', `bench: a FLOPs budget must be in (0, 1], got ${String(budget)}`);
  const start = mods.start ?? 0;
  if (budget >= trapezoidFloor(L, T, start) - 1e-9) {
    solveRLast(L, T, budget, start); // throws if unreachable
    return { options: { ...mods, flops: budget }, schedule: 'trapezoid' };
  }
  const least = relOf(steep(L, T, Infinity), T);
  if (budget < least - 1e-9)
    throw new SimbaError(
      'E_ARG',
      `bench: FLOPs budget ${budget} is below ${least.toFixed(4)}, the least a ${L}-layer model can spend on T=${T} (the first layer sees every token)`,
    );
  let lo = 1 / Math.max(1, L - 1),
    hi = 1e6;
  for (let i = 0; i < 100; i++) {
    const mid = Math.sqrt(lo * hi);
    if (relOf(steep(L, T, mid), T) > budget) lo = mid;
    else hi = mid;
  }
  const a = steep(L, T, lo),
    b = steep(L, T, hi);
  const best = Math.abs(relOf(a, T) - budget) <= Math.abs(relOf(b, T) - budget) ? a : b;
  return { options: { ...mods, start: undefined, keepCounts: best.slice(1) }, schedule: 'steep' };
}

/** Runs the benchmark; onProgress is called before each run with the number of runs done. */
export async function runBench(
  model: LanguageModel,
  options?: BenchOptions,
  onProgress?: (p: BenchProgress) => void,
): Promise<BenchResult> {
  const w = 'runBench',
    o = v.options(w, options, BENCH_KEYS),
    d = BENCH_DEFAULTS;
  v.func(w, 'onProgress', onProgress);
  const signal = v.signal(w, 'signal', o.signal);
  const runs = v.int(w, 'runs', o.runs, 1) ?? d.runs;
  const lengths = v.arrayOf(w, 'lengths', o.lengths, (n, x) => v.int(w, n, x, 1, LIMITS.requestTokens)!, 1) ?? [...d.lengths];
  const batches = v.arrayOf(w, 'batches', o.batches, (n, x) => v.int(w, n, x, 1)!, 1) ?? [...d.batches];
  const decodeTokens = v.int(w, 'decodeTokens', o.decodeTokens, 1) ?? d.decodeTokens;
  const decodePrompt = v.int(w, 'decodePrompt', o.decodePrompt, 1) ?? d.decodePrompt;
  const flops = v.arrayOf(w, 'flops', o.flops, (n, x) => v.number(w, n, x, 0, 1, true)!) ?? [];
  const seed = v.int(w, 'seed', o.seed, 0, LIMITS.seed) ?? d.seed;
  for (const k of ['flops', 'rLast', 'keepCounts', 'keepRatios'])
    if (v.is.object(o.simba) && o.simba[k] !== undefined)
      throw new SimbaError('E_ARG', `bench: give budgets through flops, not simba.${k}`);
  const mods = { ...v.options(w, o.simba, MODIFIER_KEYS, 'simba') } as SimbaModifiers;
  if (Object.keys(mods).length) validateSimbaOptions(model.config, { ...mods, rLast: 1 }, w);

  const cfg = model.config,
    L = cfg.nLayer,
    V = cfg.vocabSize;
  // Plans first, so a bad budget fails before minutes of measuring.
  const simbaPlans = lengths.flatMap((T) =>
    flops.map((budget) => {
      const { options, schedule } = budgetOptions(L, T, budget, mods);
      return { T, budget, options, schedule, plan: planSimba(cfg, T, options) };
    }),
  );
  const rand = mulberry32(seed);
  const randomIds = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rand() * V));
  const total = (runs + 1) * (lengths.length + batches.length + simbaPlans.length);
  let done = 0;
  const t0 = performance.now();
  const tick = (label: string) => onProgress?.({ done: done++, total, label });
  const abort = () => {
    if (signal?.aborted) throw new SimbaError('E_ABORTED', 'bench: aborted', { cause: signal.reason });
  };

  /** Warm-up + timed runs of fn (which returns seconds); returns tokens/s per run. */
  async function measure(label: string, tokens: number, fn: () => Promise<number>): Promise<Stat> {
    const out: number[] = [];
    for (let r = 0; r <= runs; r++) {
      abort();
      tick(label);
      const sec = await fn();
      if (r > 0) out.push(tokens / sec);
    }
    return stat(out);
  }

  async function prefillOnce(ids: Int32Array, simba?: SimbaOptions): Promise<number> {
    const t = performance.now();
    const [r] = await model.prefill([{ tokens: ids }], { logits: 'last', simba });
    const sec = (performance.now() - t) / 1000;
    r.sequence.dispose();
    return sec;
  }

  const prefill: PrefillRow[] = [];
  const prompts = new Map<number, Int32Array>();
  for (const T of lengths) {
    const ids = randomIds(T);
    prompts.set(T, ids);
    const s = await measure(`prefill T=${T}`, T, () => prefillOnce(ids));
    prefill.push({ length: T, tokensPerSec: s, ms: (1000 * T) / s.median });
  }

  // Greedy: the rng is never drawn from.
  const greedy: SamplingParams = { temperature: 0, rng: rngFromSeed(0) };
  const decode: DecodeRow[] = [];
  for (const B of batches) {
    const steps = Array.from({ length: decodeTokens }, () => randomIds(B));
    const s = await measure(`decode B=${B}`, B * decodeTokens, async () => {
      const res = await model.prefill(
        Array.from({ length: B }, () => ({ tokens: randomIds(decodePrompt) })),
        { logits: 'none' },
      );
      const seqs = res.map((r) => r.sequence);
      const t = performance.now();
      for (const ids of steps) await model.step(seqs.map((sequence, i) => ({ sequence, tokens: [ids[i]], sample: [greedy] })));
      const sec = (performance.now() - t) / 1000;
      for (const q of seqs) q.dispose();
      return sec;
    });
    decode.push({ batch: B, steps: decodeTokens, tokensPerSec: s, msPerStep: (1000 * B) / s.median });
  }

  const simba: SimbaRow[] = [];
  for (const p of simbaPlans) {
    const ids = prompts.get(p.T)!;
    const s = await measure(`simba T=${p.T} flops=${p.budget}`, p.T, () => prefillOnce(ids, p.options));
    const dense = prefill.find((r) => r.length === p.T)!.tokensPerSec.median;
    simba.push({
      length: p.T,
      budget: p.budget,
      schedule: p.schedule,
      relFlops: p.plan.relFlops,
      processed: p.plan.processed,
      tokensPerSec: s,
      ms: (1000 * p.T) / s.median,
      speedup: s.median / dense,
      theoreticalSpeedup: 1 / p.plan.relFlops,
    });
  }
  onProgress?.({ done: total, total, label: 'done' });

  const info = model.info();
  return {
    machine: machineInfo(model),
    model: {
      source: info.source,
      weights: info.weights,
      paramCount: info.paramCount,
      nLayer: L,
      dModel: cfg.dModel,
      vocabSize: V,
      flopsPerToken: info.flopsPerToken,
      layerFlops: info.layerFlops,
      weightBytes: info.weightBytes,
      stateBytes: info.stateBytes,
    },
    settings: { runs, lengths, batches, decodeTokens, decodePrompt, flops, seed, simba: mods },
    prefill,
    decode,
    simba,
    seconds: (performance.now() - t0) / 1000,
  };
}

function fmt(x: number): string {
  if (x >= 1000) return Math.round(x).toLocaleString('en-US');
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

/** The human-readable report of a benchmark. */
export function formatBench(r: BenchResult): string {
  const m = r.machine;
  const out: string[] = [
    `model    ${r.model.source} (${r.model.weights}, ${r.model.paramCount.toLocaleString('en-US')} params, ${r.model.nLayer} layers)`,
    `machine  ${m.cpu}, ${m.cores} cores; engine ${m.isa}, ${m.threads} threads; node ${m.node}; ${m.os}`,
    `runs     ${r.settings.runs} timed (+1 warm-up) per row; tokens/s median [min - max]`,
    '',
    table(
      ['prefill', 'tokens/s', 'min', 'max', 'ms'],
      r.prefill.map((p) => [
        `T=${p.length}`,
        fmt(p.tokensPerSec.median),
        fmt(p.tokensPerSec.min),
        fmt(p.tokensPerSec.max),
        fmt(p.ms),
      ]),
    ),
    '',
    table(
      ['decode', 'tokens/s', 'min', 'max', 'ms/step'],
      r.decode.map((d) => [
        `B=${d.batch} x ${d.steps}`,
        fmt(d.tokensPerSec.median),
        fmt(d.tokensPerSec.min),
        fmt(d.tokensPerSec.max),
        fmt(d.msPerStep),
      ]),
    ),
  ];
  if (r.simba.length) {
    out.push(
      '',
      table(
        ['simba prefill', 'budget', 'relFlops', 'tokens/s', 'min', 'max', 'speedup', 'theory'],
        r.simba.map((s) => [
          `T=${s.length}${s.schedule === 'steep' ? ' (steep)' : ''}`,
          String(s.budget),
          s.relFlops.toFixed(3),
          fmt(s.tokensPerSec.median),
          fmt(s.tokensPerSec.min),
          fmt(s.tokensPerSec.max),
          `${s.speedup.toFixed(2)}x`,
          `${s.theoreticalSpeedup.toFixed(2)}x`,
        ]),
      ),
    );
  }
  out.push('', `total ${r.seconds.toFixed(1)} s`);
  return out.join('\n');
}
