/**
 * Seeds and run counts of the property-based tests (test/fuzz/*.test.ts).
 *
 *   SIMBA_TEST_SEED   overrides the fixed default seed (fast-check prints the seed and the shrunk
 *                     counterexample of a failure: rerun with that seed to reproduce it)
 *   SIMBA_FUZZ_RUNS   numRuns of every property (heavy ones, which load real files or run a model,
 *                     take a tenth of it, at least their default)
 *
 * @example SIMBA_FUZZ_RUNS=5000 SIMBA_TEST_SEED=7 npx jest test/fuzz
 */
import type { Parameters } from 'fast-check';

/** The fixed seed CI runs with. */
export const DEFAULT_FUZZ_SEED = 20261202;

/** The seed of this run: SIMBA_TEST_SEED when set, else DEFAULT_FUZZ_SEED. */
export function fuzzSeed(): number {
  const s = process.env.SIMBA_TEST_SEED;
  if (s === undefined || s.trim() === '') return DEFAULT_FUZZ_SEED;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`SIMBA_TEST_SEED must be an integer, got '${s}'`);
  return n | 0;
}

/** numRuns of a property whose default is `dflt` (see SIMBA_FUZZ_RUNS above). */
export function fuzzRuns(dflt: number, heavy = false): number {
  const s = process.env.SIMBA_FUZZ_RUNS;
  if (s === undefined || s.trim() === '') return dflt;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`SIMBA_FUZZ_RUNS must be a positive integer, got '${s}'`);
  return heavy ? Math.max(dflt, Math.ceil(n / 10)) : n;
}

/** fast-check parameters: the run's seed (offset per property, so properties draw different streams). */
export function fuzzParams<T>(dflt: number, opts: { heavy?: boolean; offset?: number } = {}): Parameters<T> {
  return { seed: (fuzzSeed() + (opts.offset ?? 0)) | 0, numRuns: fuzzRuns(dflt, opts.heavy) };
}
