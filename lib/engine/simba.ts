/**
 * Simba keep schedules, FLOPs accounting and the FLOPs-budget solver.
 *
 * Vocabulary used throughout:
 *   n_l   tokens *processed* by layer l (n_0 = T: the first layer sees the whole prompt)
 *   keep  tokens kept *after* layer l, i.e. entering layer l+1 (what the native engine takes);
 *         keep[l] = n_{l+1}, and pruning after the last layer changes nothing, so keep[L-1] = n_{L-1}.
 *
 * Trapezoid: r_l = 1 - (1 - rLast) * max(0, l - start) / (L - 1 - start), n_l = max(1, ceil(T r_l)).
 * Relative FLOPs of a prefill = sum_l n_l / (L T) (the per-layer cost is linear in its tokens).
 *
 * checkSimba is the one check of a request's Simba options: it validates them against the config and
 * the prompt length and returns the plan the engine runs (prefill and step take that plan as their
 * `simba` option, so a caller that checked first, like the server, does not have it checked again).
 *
 * @example
 *   const plan = checkSimba(cfg, 2048, { flops: 0.5 });
 *   plan.processed   // tokens per layer, falling linearly
 *   plan.relFlops    // ~0.5, what the plan achieves
 *   await model.step([{ sequence, tokens: prompt2048 }], { simba: plan });
 */
import { NATIVE_CRITERION } from '../../bindings';
import { SimbaError } from '../errors';
import { LIMITS } from '../limits';
import type { MambaConfig } from '../types';
import * as v from '../validate';

/** How tokens are scored for pruning. */
export type SimbaCriterion = keyof typeof NATIVE_CRITERION;
export const SIMBA_CRITERIA = Object.keys(NATIVE_CRITERION) as readonly SimbaCriterion[];

/** Options for Simba pruning during prefill. Give exactly one of flops, rLast, keepCounts, keepRatios. */
export interface SimbaOptions {
  /** Target prefill cost relative to dense (0 < flops <= 1); solved for rLast of the trapezoid. */
  flops?: number;
  /** Keep ratio at the last layer of the trapezoid (0 <= rLast <= 1). */
  rLast?: number;
  /** Explicit tokens kept after each layer (length nLayer - 1 or nLayer; clipped to the prompt). */
  keepCounts?: number[];
  /** Explicit keep ratio after each layer (same length rules as keepCounts). */
  keepRatios?: number[];
  /** Trapezoid start layer: layers 0..start keep everything (default 0). */
  start?: number;
  /** Scoring criterion (default 'simba'). */
  criterion?: SimbaCriterion;
  /** Channel reduction of |c(t,d)| for simba/local (default 'max'). */
  reduce?: 'max' | 'sum';
  /** Always keep the first / last m tokens of each prompt, besides the last token (default 0). */
  protect?: { first?: number; last?: number };
  /** Seed of the 'random' criterion (default 0). */
  seed?: number;
}

/** What a plan does to one prompt of T tokens. */
export interface SimbaPlan {
  T: number;
  /** Tokens processed by each layer (n_l). */
  processed: number[];
  /** Tokens kept after each layer (native keep counts). */
  keep: number[];
  /** sum n_l / (L T). */
  relFlops: number;
  /** rLast of the trapezoid, when the plan is one. */
  rLast: number | null;
  /** The options it was made from (a copy, frozen with the plan in checkSimba's plans). */
  options: Readonly<SimbaOptions>;
}

/** FLOPs of one token through one Mamba block (multiply-add = 2). */
export function layerFlops(c: MambaConfig): number {
  const { dModel: d, dInner: E, dtRank: R, dState: N, dConv: K } = c;
  if (c.mamba2) {
    const GN = c.mamba2.nGroups * N,
      H = c.mamba2.nHeads;
    return (
      2 * d * (2 * E + 2 * GN + H) + // in_proj: z, x, B, C, dt
      2 * K * (E + 2 * GN) + // causal conv1d over x, B, C
      6 * E * N + // SSD: the state's decay and input (4), y = C . s (2)
      2 * E * d // out_proj
    );
  }
  const falconNorms = c.mixerRmsEps ? 3 * (R + 2 * N) : 0; // Falcon-Mamba: square, sum, scale per value
  return (
    falconNorms +
    2 * d * 2 * E + // in_proj
    2 * K * E + // causal conv1d
    2 * E * (R + 2 * N) + // x_proj
    2 * R * E + // dt_proj
    7 * E * N + // selective scan: dt*A, exp, 2 mul + add for the state, mul + add for y
    2 * E * d
  ); // out_proj
}

/** FLOPs of the LM head for one position. */
export function headFlops(c: MambaConfig): number {
  return 2 * c.dModel * c.vocabSize;
}

/** FLOPs for one token through the whole model, dense, head included. */
export function flopsPerToken(c: MambaConfig): number {
  return c.nLayer * layerFlops(c) + headFlops(c);
}

function trapezoid(L: number, T: number, rLast: number, start: number): number[] {
  const n: number[] = [];
  for (let l = 0; l < L; l++) {
    const frac = L - 1 - start > 0 ? Math.max(0, l - start) / (L - 1 - start) : 0;
    const r = 1 - (1 - rLast) * frac;
    n.push(Math.min(T, Math.max(1, Math.ceil(T * r - 1e-9))));
  }
  return n;
}

function relFlopsOf(processed: number[], T: number): number {
  return processed.reduce((a, b) => a + b, 0) / (processed.length * T);
}

/** The lowest relative FLOPs a trapezoid with this start can reach (rLast = 0). */
export function trapezoidFloor(L: number, T: number, start = 0): number {
  return relFlopsOf(trapezoid(L, T, 0, start), T);
}

/** The keys of SimbaOptions and of SimbaOptions.protect. */
const SIMBA_OPTION_KEYS = [
  'flops',
  'rLast',
  'keepCounts',
  'keepRatios',
  'start',
  'criterion',
  'reduce',
  'protect',
  'seed',
] as const;
const PROTECT_KEYS = ['first', 'last'] as const;

/**
 * Validates options (independent of the prompt length); throws SimbaError E_ARG naming the option
 * as `simba.<key>` (`where` prefixes unknown-key and null messages, e.g. 'prefill').
 */
export function validateSimbaOptions(c: MambaConfig, opts: SimbaOptions, where = 'prefill'): void {
  if (!v.is.object(opts)) throw v.argError(where, `simba must be an object, got ${v.describeType(opts)}`, 'simba');
  const o = v.options(where, opts, SIMBA_OPTION_KEYS, 'simba');
  const given = (['flops', 'rLast', 'keepCounts', 'keepRatios'] as const).filter((k) => o[k] !== undefined);
  if (given.length !== 1)
    throw new SimbaError(
      'E_ARG',
      `simba: give exactly one of flops, rLast, keepCounts, keepRatios (got ${given.length ? given.join(', ') : 'none'})`,
      { param: 'simba' },
    );
  const L = c.nLayer;
  // Messages start with the option's own name (simba.start ...), which the CLI maps to its flags.
  v.int('', 'simba.start', o.start, 0, L - 1);
  v.oneOf('', 'simba.criterion', o.criterion, SIMBA_CRITERIA);
  v.oneOf('', 'simba.reduce', o.reduce, ['max', 'sum'] as const);
  v.number('', 'simba.flops', o.flops, 0, 1, true);
  v.number('', 'simba.rLast', o.rLast, 0, 1);
  for (const key of ['keepCounts', 'keepRatios'] as const) {
    const arr = o[key];
    if (arr === undefined) continue;
    if (!Array.isArray(arr) || (arr.length !== L && arr.length !== L - 1))
      throw new SimbaError('E_ARG', `simba.${key} needs ${L - 1} or ${L} entries (one per layer), got ${v.describeType(arr)}`, {
        param: `simba.${key}`,
      });
    arr.forEach((x: unknown, i) =>
      key === 'keepCounts' ? v.int('', `simba.keepCounts[${i}]`, x, 1) : v.number('', `simba.keepRatios[${i}]`, x, 0, 1, true),
    );
    for (let i = 1; i < arr.length; i++)
      if (arr[i] > arr[i - 1])
        throw new SimbaError('E_ARG', `simba.${key} must not increase with depth (entry ${i} > entry ${i - 1})`, {
          param: `simba.${key}`,
        });
  }
  if (o.protect !== undefined) {
    const p = v.options(where, o.protect, PROTECT_KEYS, 'simba.protect');
    v.int('', 'simba.protect.first', p.first, 0);
    v.int('', 'simba.protect.last', p.last, 0);
  }
  v.int('', 'simba.seed', o.seed, 0, LIMITS.pruneSeed);
}

/** Solves rLast so that the trapezoid's relative FLOPs is as close to the target as possible. */
export function solveRLast(L: number, T: number, target: number, start = 0): { rLast: number; relFlops: number } {
  const w = 'solveRLast';
  if (L === undefined || T === undefined || target === undefined) throw v.argError(w, 'L, T and the target are required');
  v.int(w, 'L (the layer count)', L, 1);
  v.int(w, 'T (the prompt length)', T, 1);
  v.int(w, 'start', start, 0, L - 1);
  v.number(w, 'the target (relative FLOPs)', target, 0, 1, true);
  const floor = trapezoidFloor(L, T, start);
  if (target < floor - 1e-9)
    throw new SimbaError(
      'E_ARG',
      `simba.flops ${target} is below what the trapezoid can reach: with ${L} layers, start ${start} and T=${T} ` +
        `it costs at least ${floor.toFixed(4)} of dense (rLast = 0). Use explicit keepCounts for lower budgets.`,
      { param: 'simba.flops' },
    );
  let lo = 0,
    hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (relFlopsOf(trapezoid(L, T, mid, start), T) < target) lo = mid;
    else hi = mid;
  }
  // Both ends are candidates; ceil() makes the curve a staircase, take the closer one.
  const a = relFlopsOf(trapezoid(L, T, lo, start), T),
    b = relFlopsOf(trapezoid(L, T, hi, start), T);
  return Math.abs(a - target) <= Math.abs(b - target) ? { rLast: lo, relFlops: a } : { rLast: hi, relFlops: b };
}

/** The plan for one prompt of T tokens (the options are validated: SimbaError E_ARG). */
export function planSimba(c: MambaConfig, T: number, o: SimbaOptions): SimbaPlan {
  checkConfig('planSimba', c);
  v.int('planSimba', 'T (the prompt length)', T, 1);
  if (T === undefined) throw v.argError('planSimba', 'T (the prompt length) is required');
  validateSimbaOptions(c, o, 'planSimba');
  return plan(c, T, o);
}

/** Plans made by checkSimba: the engine runs them as they are. */
const checked = new WeakSet<SimbaPlan>();

/**
 * The one check of a Simba request: `options` for a prompt of `length` tokens on a model of config
 * `c` (E_ARG starting with `where`, its `param` naming the option: a bad option, a budget the prompt
 * cannot reach, more than LIMITS.simbaTokens tokens). Returns the frozen plan the engine runs; a plan
 * from checkSimba given again (the engine's `simba` option) is only matched to the length and the
 * layer count.
 *
 * @example
 *   const plan = checkSimba(model.config, ids.length, { flops: 0.6 }, 'server');
 */
export function checkSimba(c: MambaConfig, length: number, options: SimbaOptions | SimbaPlan, where = 'simba'): SimbaPlan {
  checkConfig(where, c);
  if (checked.has(options as SimbaPlan)) {
    const p = options as SimbaPlan;
    if (p.keep.length !== c.nLayer)
      throw v.argError(where, `the Simba plan is for ${p.keep.length} layers, this model has ${c.nLayer}`, 'simba');
    if (p.T !== length)
      throw v.argError(where, `the Simba plan is for a prompt of ${p.T} tokens, this one has ${length}`, 'simba');
    return p;
  }
  const o = options as SimbaOptions;
  validateSimbaOptions(c, o, where);
  v.int(where, 'the prompt length', length, 1);
  if (length > LIMITS.simbaTokens)
    throw v.argError(where, `a Simba prefill takes at most ${LIMITS.simbaTokens} tokens per prompt (got ${length})`, 'simba');
  const p = plan(c, length, o);
  const frozen = Object.freeze({
    ...p,
    processed: Object.freeze(p.processed) as number[],
    keep: Object.freeze(p.keep) as number[],
    options: Object.freeze({
      ...o,
      ...(o.keepCounts ? { keepCounts: Object.freeze([...o.keepCounts]) as number[] } : {}),
      ...(o.keepRatios ? { keepRatios: Object.freeze([...o.keepRatios]) as number[] } : {}),
      ...(o.protect ? { protect: Object.freeze({ ...o.protect }) } : {}),
    }),
  });
  checked.add(frozen);
  return frozen;
}

function checkConfig(where: string, c: MambaConfig): void {
  if (!v.is.object(c) || !v.is.integer(c.nLayer))
    throw v.argError(where, `config must be a MambaConfig, got ${v.describeType(c)}`);
}

/** The plan of validated options. */
function plan(c: MambaConfig, T: number, o: SimbaOptions): SimbaPlan {
  const L = c.nLayer,
    start = o.start ?? 0;
  let processed: number[];
  let rLast: number | null = null;
  if (o.flops !== undefined) {
    rLast = solveRLast(L, T, o.flops, start).rLast;
    processed = trapezoid(L, T, rLast, start);
  } else if (o.rLast !== undefined) {
    rLast = o.rLast;
    processed = trapezoid(L, T, rLast, start);
  } else {
    const after = o.keepCounts
      ? o.keepCounts.map((k) => Math.min(T, k))
      : o.keepRatios!.map((r) => Math.min(T, Math.max(1, Math.ceil(T * r - 1e-9))));
    processed = [T, ...after.slice(0, L - 1)];
  }
  const keep = processed.slice(1).concat([processed[L - 1]]);
  return { T, processed, keep, relFlops: relFlopsOf(processed, T), rLast, options: o };
}
