/**
 * The order in which waiting prompts get slots and prefill tokens: shortest remaining work first
 * (a prefix-cache hit counts only the tokens left after the cached prefix), with aging so that the
 * unfairness is bounded.
 *
 * A prompt that arrived at tick `a` with `r` prompt tokens left to prefill has the key
 *
 *   key = a + min(K, ceil(r / AGING_TOKENS))          (K = agingTicks; ties: the older first)
 *
 * and the lowest key goes first. A short prompt's key is about its arrival tick, a long one's at
 * most K ticks later, and a key only falls as its prompt is prefilled. So a prompt is never
 * overtaken by a prompt that arrives more than K ticks after it: a 60k-token prompt waits at most
 * for the prompts that arrived before it or within its K ticks, then takes every tick's prefill
 * share until its first token, however many short prompts keep arriving. Decoding requests are not
 * ordered here: every tick steps all of them.
 *
 * @example
 *   prefillKey(100, 20, 32)     // 101: a 20-token prompt that arrived at tick 100
 *   prefillKey(90, 60000, 32)   // 122: a 60k-token prompt that arrived at tick 90 goes before prompts arriving after tick 122
 */

/** Prompt tokens that count as one tick of waiting. */
export const AGING_TOKENS = 64;

/** The default K: a prompt is overtaken only by prompts that arrive within 32 ticks after it. */
export const DEFAULT_AGING_TICKS = 32;

export function prefillKey(arrivalTick: number, remainingTokens: number, agingTicks: number): number {
  return arrivalTick + Math.min(agingTicks, Math.ceil(remainingTokens / AGING_TOKENS));
}

/** Items sorted by key, ties by `order` (arrival), without changing the input. */
export function byKey<T>(items: readonly T[], key: (x: T) => number, order: (x: T) => number): T[] {
  return items
    .map((x) => ({ x, k: key(x), o: order(x) }))
    .sort((a, b) => a.k - b.k || a.o - b.o)
    .map((e) => e.x);
}
