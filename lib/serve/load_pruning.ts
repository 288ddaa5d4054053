/**
 * Simba as admission under load (`--simba-under-load MIN_FLOPS`): when the prefill work waiting
 * (in seconds, from the cost model) exceeds what the latency target lets the scheduler prefill
 * within the next LOAD_HORIZON_SECONDS, a new long prompt is pruned with Simba to the budget
 *
 *   flops = max(MIN_FLOPS, allowed / backlog)        (dense when that is above DENSE_ABOVE)
 *
 * where backlog counts the waiting prompts' remaining tokens (pruned ones at their budget) and the
 * new prompt, and allowed = LOAD_HORIZON_SECONDS x the fraction of a tick the target leaves for
 * prefill (all of it when nothing decodes). Only prompts of at least LOAD_PRUNE_MIN_TOKENS tokens
 * (and at most LIMITS.simbaTokens) are pruned; a budget below what the trapezoid reaches for the
 * prompt is raised to that floor. The pruned prompt is prefilled in one native call of its own
 * (Simba ranks tokens over the whole prompt, so it cannot be chunked): that tick may exceed the
 * target, and the backlog falls by the pruned fraction of its work.
 *
 * @example
 *   loadBudget(3.2, 0.8, 0.6)   // 0.6: four times more work than allowed, clamped to MIN_FLOPS
 *   loadBudget(1.0, 0.8, 0.6)   // 0.8
 *   loadBudget(0.5, 0.8, 0.6)   // 1: no pruning
 */
import { checkSimba, trapezoidFloor, type SimbaPlan } from '../engine/simba';
import { LIMITS } from '../limits';
import type { MambaConfig } from '../types';

/** The horizon of "what the target allows": prefill seconds the scheduler can do within this many seconds. */
export const LOAD_HORIZON_SECONDS = 1;
/** Prompts shorter than this are never pruned under load. */
export const LOAD_PRUNE_MIN_TOKENS = 128;
/** A budget above this is not worth pruning for (the prompt runs dense, chunked). */
export const DENSE_ABOVE = 0.95;

/** The Simba budget for a new prompt given the backlog and the allowance (both in seconds of prefill). */
export function loadBudget(backlogSeconds: number, allowedSeconds: number, minFlops: number): number {
  if (!(backlogSeconds > allowedSeconds)) return 1;
  return Math.max(minFlops, Math.min(1, allowedSeconds / backlogSeconds));
}

/** What load pruning did to one prompt. */
export interface LoadPruning {
  plan: SimbaPlan;
  /** Relative prefill FLOPs of the plan (sum of tokens per layer / (layers x prompt)). */
  flops: number;
  /** Prompt tokens the last layer no longer processes. */
  prunedTokens: number;
}

/** The plan for a prompt of T tokens at `budget`, or null when it stays dense (short, too long, budget near 1). */
export function planUnderLoad(config: MambaConfig, T: number, budget: number): LoadPruning | null {
  if (budget > DENSE_ABOVE || T < LOAD_PRUNE_MIN_TOKENS || T > LIMITS.simbaTokens) return null;
  const flops = Math.max(budget, trapezoidFloor(config.nLayer, T) + 1e-6);
  if (flops > DENSE_ABOVE) return null;
  const plan = checkSimba(config, T, { flops: Math.min(1, flops) }, 'simba under load');
  return { plan, flops: plan.relFlops, prunedTokens: T - plan.processed[plan.processed.length - 1] };
}
