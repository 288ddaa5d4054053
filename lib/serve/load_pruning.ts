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
 * (and at most LIMITS.simbaTokens) are pruned. The prompt is prefilled in chunks like a dense one,
 * so the latency target holds: each tick's chunk is pruned on its own (Simba ranks the chunk's
 * tokens; the state carries over from the previous chunk), n tokens costing about budget x n dense
 * tokens of the tick's share (a chunk's budget below what the trapezoid reaches for its n tokens is
 * raised to that floor). Pruned chunks are not cached. The backlog falls by the pruned fraction of
 * the prompt's work.
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

/** What load pruning does to one prompt: its budget, and what its chunks did so far. */
export interface LoadPruning {
  /** The budget the prompt's chunks are pruned to (relative prefill FLOPs). */
  budget: number;
  /** Prompt tokens prefilled so far, the sum of their chunks' relative FLOPs times their tokens, and the tokens pruned. */
  tokens: number;
  flopTokens: number;
  prunedTokens: number;
}

/** The budget for a new prompt of T tokens, or null when it stays dense (short, too long, budget near 1). */
export function loadPruningFor(config: MambaConfig, T: number, budget: number): LoadPruning | null {
  if (budget > DENSE_ABOVE || T < LOAD_PRUNE_MIN_TOKENS || T > LIMITS.simbaTokens) return null;
  if (Math.max(budget, trapezoidFloor(config.nLayer, T)) > DENSE_ABOVE) return null;
  return { budget, tokens: 0, flopTokens: 0, prunedTokens: 0 };
}

/**
 * The plan of one chunk of n prompt tokens at the budget (raised to what the trapezoid reaches for
 * n tokens), and what it does: the chunk is pruned on its own, continuing the sequence's state.
 */
export function chunkPlan(config: MambaConfig, n: number, budget: number): SimbaPlan {
  const flops = Math.min(1, Math.max(budget, trapezoidFloor(config.nLayer, n) + 1e-9));
  return checkSimba(config, n, { flops }, 'simba under load');
}

/** Adds a chunk that ran with `plan` to what load pruning did. */
export function recordChunk(l: LoadPruning, plan: SimbaPlan): void {
  l.tokens += plan.T;
  l.flopTokens += plan.relFlops * plan.T;
  l.prunedTokens += plan.T - plan.processed[plan.processed.length - 1];
}
