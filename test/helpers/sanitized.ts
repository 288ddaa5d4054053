/**
 * Repetition counts under `npm run test:sanitize` (SIMBA_SANITIZED=1: the whole suite against the
 * ASan + UBSan build, with libasan preloaded into node, where everything runs 3-5x slower). A test
 * that repeats one check many times (fuzz iterations, random grammars or schemas, seeds, requests,
 * cycles) runs fewer repetitions there, so that the run fits CI's budget; every test and every
 * assertion still runs, on the same code paths. `npm test` keeps the full counts.
 *
 * @example
 *   fc.assert(prop, { seed: 7, numRuns: repeats(400, 100) });
 */

/** Whether this run is test:sanitize's (timings mean nothing there). */
export const SANITIZED = !!process.env.SIMBA_SANITIZED;

/** `full` repetitions, or `sanitized` (at most `full`) under test:sanitize. */
export function repeats(full: number, sanitized: number): number {
  return SANITIZED ? Math.min(full, sanitized) : full;
}
