/**
 * Packs per-sequence SamplingParams into the flat arrays of the native sampler (bindings.ts
 * NativeSampling) and unpacks its result; the RNG states are written back into the params.
 *
 * @example
 *   const packed = packSampling([{ row: 0, params: { temperature: 0.8, topK: 40, rng: rngFromSeed(1) } }], 50280);
 *   const r = addon.sampleLogits(logits, 50280, packed);
 *   const [tok] = unpackSampling(r, [params]);
 */
import type { NativeSampleResult, NativeSampling } from '../../bindings';
import { SimbaError } from '../errors';
import { LIMITS } from '../limits';
import * as v from '../validate';
import type { SampledToken, SamplingParams } from './lm';

const PARAMS = 9;

/** Most history ids a params object may carry: a whole request and a whole generation. */
const MAX_HISTORY = LIMITS.requestTokens + LIMITS.generateTokens;
const BIG = Number.MAX_VALUE;

/**
 * Checks one job's params (E_ARG naming `params[j].<field>`): every number finite and in its range,
 * the RNG two uint32 halves, the history an array of at most MAX_HISTORY ids, the bias a Map of finite
 * values. SamplingParams come from code (the server, generate, callers of step), so nothing is assumed.
 */
function checkParams(where: string, j: number, p: SamplingParams, vocabSize: number): void {
  const n = `params[${j}]`;
  if (!v.is.object(p)) throw v.argError(where, `${n} must be a sampling params object, got ${v.describeType(p)}`);
  if (v.number(where, `${n}.temperature`, p.temperature, 0, LIMITS.temperature) === undefined)
    throw v.argError(where, `${n}.temperature is required`);
  v.int(where, `${n}.topK`, p.topK, 0);
  v.number(where, `${n}.topP`, p.topP, 0, 1);
  v.number(where, `${n}.minP`, p.minP, 0, 1);
  v.number(where, `${n}.presencePenalty`, p.presencePenalty, -BIG, BIG);
  v.number(where, `${n}.frequencyPenalty`, p.frequencyPenalty, -BIG, BIG);
  v.number(where, `${n}.repetitionPenalty`, p.repetitionPenalty, 0, BIG, true);
  v.int(where, `${n}.logprobs`, p.logprobs, -1, 1000);
  v.int(where, `${n}.limit`, p.limit, 0, vocabSize);
  if (!v.is.object(p.rng))
    throw v.argError(where, `${n}.rng must be {lo, hi} (from rngFromSeed()), got ${v.describeType(p.rng)}`);
  if (
    v.int(where, `${n}.rng.lo`, p.rng.lo, 0, 2 ** 32 - 1) === undefined ||
    v.int(where, `${n}.rng.hi`, p.rng.hi, 0, 2 ** 32 - 1) === undefined
  )
    throw v.argError(where, `${n}.rng must hold two integers lo and hi in [0, 2^32 - 1]`);
  if (p.matcher !== undefined && !v.is.object(p.matcher))
    throw v.argError(where, `${n}.matcher must be a grammar matcher (Grammar.matcher()), got ${v.describeType(p.matcher)}`);
  const h: unknown = p.history;
  if (h !== undefined) {
    if (!v.is.arrayLike(h)) throw v.argError(where, `${n}.history must be an array of token ids, got ${v.describeType(h)}`);
    if (h.length > MAX_HISTORY)
      throw v.argError(where, `${n}.history has ${h.length} ids, more than the ${MAX_HISTORY} a request can generate`);
  }
  const bias: unknown = p.logitBias;
  if (bias !== undefined) {
    if (!(bias instanceof Map))
      throw v.argError(where, `${n}.logitBias must be a Map of token id -> bias, got ${v.describeType(bias)}`);
    for (const [id, x] of bias as Map<unknown, unknown>) v.number(where, `${n}.logitBias.get(${String(id)})`, x, -BIG, BIG);
  }
}

/** jobs[j] samples logits row jobs[j].row with jobs[j].params (checked: E_ARG / E_TOKEN starting with `where`). */
export function packSampling(
  jobs: { row: number; params: SamplingParams }[],
  vocabSize: number,
  where = 'sampling',
): NativeSampling {
  jobs.forEach(({ params }, j) => checkParams(where, j, params, vocabSize));
  const J = jobs.length;
  const params = new Float64Array(J * PARAMS);
  const rng = new Uint32Array(J * 2);
  const historyOffsets = new Int32Array(J + 1),
    biasOffsets = new Int32Array(J + 1);
  let nh = 0,
    nb = 0;
  for (const { params: p } of jobs) {
    if (penalised(p)) nh += p.history?.length ?? 0;
    nb += p.logitBias?.size ?? 0;
  }
  const history = new Int32Array(nh),
    biasIds = new Int32Array(nb),
    biasValues = new Float32Array(nb);
  nh = 0;
  nb = 0;
  jobs.forEach(({ params: p }, j) => {
    const q = j * PARAMS;
    params[q] = p.temperature;
    params[q + 1] = p.topK ?? 0;
    params[q + 2] = p.topP ?? 1;
    params[q + 3] = p.minP ?? 0;
    params[q + 4] = p.presencePenalty ?? 0;
    params[q + 5] = p.frequencyPenalty ?? 0;
    params[q + 6] = p.repetitionPenalty ?? 1;
    params[q + 7] = p.logprobs ?? -1;
    params[q + 8] = p.limit ?? 0;
    rng[2 * j] = p.rng.lo;
    rng[2 * j + 1] = p.rng.hi;
    if (penalised(p) && p.history)
      for (let i = 0; i < p.history.length; i++) {
        const id = p.history[i];
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
          throw new SimbaError(
            'E_TOKEN',
            `${where}: params[${j}].history[${i}] = ${String(id)} is not a token id in [0, ${vocabSize})`,
          );
        history[nh++] = id;
      }
    historyOffsets[j + 1] = nh;
    if (p.logitBias)
      for (const [id, v] of p.logitBias) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
          throw new SimbaError('E_TOKEN', `${where}: logit bias: token id ${id} is outside the vocabulary [0, ${vocabSize})`);
        biasIds[nb] = id;
        biasValues[nb++] = v;
      }
    biasOffsets[j + 1] = nb;
  });
  const packed: NativeSampling = {
    rows: Int32Array.from(jobs, (j) => j.row),
    params,
    rng,
    history,
    historyOffsets,
    biasIds,
    biasValues,
    biasOffsets,
  };
  if (jobs.some((j) => j.params.matcher)) packed.matchers = jobs.map((j) => j.params.matcher ?? null);
  return packed;
}

function penalised(p: SamplingParams): boolean {
  return (p.presencePenalty ?? 0) !== 0 || (p.frequencyPenalty ?? 0) !== 0 || (p.repetitionPenalty ?? 1) !== 1;
}

/**
 * The sampled tokens of a native result, one per job; advances each params.rng, and each matcher on
 * its token (token -1: the grammar allowed none; the caller ends that sequence).
 */
export function unpackSampling(r: NativeSampleResult, params: SamplingParams[]): SampledToken[] {
  return params.map((p, j) => {
    p.rng.lo = r.rng[2 * j];
    p.rng.hi = r.rng[2 * j + 1];
    if (p.matcher && r.tokens[j] >= 0 && !p.matcher.accept(r.tokens[j]))
      throw new SimbaError('E_NATIVE', `sampling: job ${j} sampled token ${r.tokens[j]}, which its grammar refuses (a bug)`);
    const top: { token: number; logprob: number }[] = [];
    for (let i = 0; i < r.topN; i++) {
      const id = r.topIds[j * r.topN + i];
      if (id >= 0) top.push({ token: id, logprob: r.topLogprobs[j * r.topN + i] });
    }
    if (r.tokens[j] < 0 && p.matcher)
      return {
        token: -1,
        logprob: 0,
        top,
        grammarError: r.errors?.[j] ?? 'no token of the vocabulary continues the grammar here',
      };
    return { token: r.tokens[j], logprob: r.logprobs[j], top };
  });
}
