/**
 * The scheduler's per-tick cost model: what a decode step of B sequences and a prompt token cost,
 * learned from the measured time of every native step, per weight format (f32, bf16, int8 run at
 * different speeds) and, for decode steps, per batch size. The scheduler asks it how many prompt
 * tokens a tick holding B running decodes can take so that the tick ends within the inter-token
 * latency target (prefillShare).
 *
 * Estimates (exponentially weighted means of the measurements, weight `alpha`):
 *   decode(B)  seconds of a step of B decode tokens and no prompt tokens, measured per B. An
 *              unmeasured B is interpolated linearly between the nearest measured sizes; below the
 *              smallest it takes the smallest one's time, above the largest it grows in proportion
 *              to B (both overestimate a cost a + b*B, never underestimate it).
 *   perToken   seconds per prompt token: (step seconds - decode(B)) / prompt tokens of every step that
 *              carried prompt tokens (a step without decodes counts its fixed overhead in it, which
 *              errs on the slow side). Steps with few prompt tokens move it less (weight alpha * n / 64).
 * Until a format has both a decode time and a per-token cost, prefillShare gives the minimum share.
 *
 * No starvation, bounded overshoot: when the decodes alone fill (or overfill) the target, waiting
 * prompts still get a floor of min(minTokens, MIN_PREFILL_FRACTION x target / perToken) tokens (at
 * least 1), so a tick holding decodes takes at most max(target, decode(B) + 0.2 x target): within
 * 1.2x the target whenever the decodes fit in it. A fixed floor (64 tokens until 2026-12-07) cost
 * decode(B) + 64 x perToken, over 2x the target where prompt tokens are slow or decodes many.
 *
 * @example
 *   const m = new CostModel();
 *   m.observe('f32', { decodes: 8, prefillTokens: 0, seconds: 0.021 });
 *   m.observe('f32', { decodes: 8, prefillTokens: 256, seconds: 0.085 });
 *   m.prefillShare('f32', 8, { targetSeconds: 0.05, minTokens: 64, maxTokens: 512 });  // ~ (0.05 - 0.021) / 0.00025 = 116
 */
import * as v from '../validate';

/** One native step as measured. */
export interface StepSample {
  /** Decode tokens in the step (one per running sequence stepped). */
  decodes: number;
  /** Prompt tokens in the step. */
  prefillTokens: number;
  seconds: number;
}

export interface ShareLimits {
  /** The tick's time budget (the inter-token latency target) in seconds. */
  targetSeconds: number;
  /** Prompt tokens a tick gives waiting prompts at least (no starvation). */
  minTokens: number;
  /** Prompt tokens a tick takes at most (the prefill budget). */
  maxTokens: number;
}

/** The floor of a tick's prefill share, as a fraction of the target's time (see the header). */
export const MIN_PREFILL_FRACTION = 0.2;

/** Prompt tokens at which one step moves the per-token estimate by the full alpha. */
const FULL_WEIGHT_TOKENS = 64;

class FormatCosts {
  /** Batch size -> seconds of a decode-only step. */
  readonly decode = new Map<number, number>();
  perToken: number | null = null;
}

export class CostModel {
  private readonly formats = new Map<string, FormatCosts>();

  /** alpha: weight of a new measurement in the running means (default 0.3). */
  constructor(readonly alpha = 0.3) {
    v.number('CostModel', 'alpha', alpha, 0, 1, true);
  }

  private costs(format: string): FormatCosts {
    let c = this.formats.get(format);
    if (!c) this.formats.set(format, (c = new FormatCosts()));
    return c;
  }

  /** Learns from one measured step (steps with neither decodes nor prompt tokens are ignored). */
  observe(format: string, s: StepSample): void {
    if (!(s.seconds >= 0) || s.decodes + s.prefillTokens === 0) return;
    const c = this.costs(format);
    const mix = (old: number | null | undefined, x: number, w: number) => (old == null ? x : old + w * (x - old));
    if (s.prefillTokens === 0) {
      c.decode.set(s.decodes, mix(c.decode.get(s.decodes), s.seconds, this.alpha));
      return;
    }
    const d = s.decodes === 0 ? 0 : this.decodeSeconds(format, s.decodes);
    if (d === null) return; // the decode part cannot be told apart yet
    const perToken = Math.max(0, s.seconds - d) / s.prefillTokens;
    c.perToken = mix(c.perToken, perToken, this.alpha * Math.min(1, s.prefillTokens / FULL_WEIGHT_TOKENS));
  }

  /** Estimated seconds of a decode-only step of B sequences, or null before any decode step of this format. */
  decodeSeconds(format: string, B: number): number | null {
    const m = this.formats.get(format)?.decode;
    if (!m || m.size === 0) return null;
    const exact = m.get(B);
    if (exact !== undefined) return exact;
    let lo = -1,
      hi = Infinity;
    for (const b of m.keys()) {
      if (b < B && b > lo) lo = b;
      if (b > B && b < hi) hi = b;
    }
    if (lo < 0) return m.get(hi)!;
    if (hi === Infinity) return (m.get(lo)! * B) / lo;
    const a = m.get(lo)!,
      z = m.get(hi)!;
    return a + ((z - a) * (B - lo)) / (hi - lo);
  }

  /** Estimated seconds per prompt token, or null before any step with prompt tokens. */
  prefillSecondsPerToken(format: string): number | null {
    return this.formats.get(format)?.perToken ?? null;
  }

  /**
   * Prompt tokens a tick with `decodes` running decode tokens may take: all of maxTokens without
   * decodes; else as many as fit in what the target leaves after the decodes, within
   * [floor, maxTokens], floor = min(minTokens, MIN_PREFILL_FRACTION x target / perToken) and at
   * least 1 (minTokens while the costs are not known yet).
   */
  prefillShare(format: string, decodes: number, lim: ShareLimits): number {
    const min = Math.min(lim.minTokens, lim.maxTokens);
    if (decodes === 0) return lim.maxTokens;
    const d = this.decodeSeconds(format, decodes);
    const p = this.prefillSecondsPerToken(format);
    if (d === null || p === null) return min;
    if (p === 0) return lim.maxTokens;
    const floor = Math.max(1, Math.min(min, Math.floor((MIN_PREFILL_FRACTION * lim.targetSeconds) / p)));
    return Math.max(floor, Math.min(lim.maxTokens, Math.floor((lim.targetSeconds - d) / p)));
  }
}
