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
import type { SampledToken, SamplingParams } from './lm';

const PARAMS = 9;

/** jobs[j] samples logits row jobs[j].row with jobs[j].params. */
export function packSampling(jobs: { row: number; params: SamplingParams }[], vocabSize: number): NativeSampling {
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
    if (penalised(p) && p.history) for (let i = 0; i < p.history.length; i++) history[nh++] = p.history[i];
    historyOffsets[j + 1] = nh;
    if (p.logitBias)
      for (const [id, v] of p.logitBias) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
          throw new SimbaError('E_TOKEN', `logit bias: token id ${id} is outside the vocabulary [0, ${vocabSize})`);
        biasIds[nb] = id;
        biasValues[nb++] = v;
      }
    biasOffsets[j + 1] = nb;
  });
  return { rows: Int32Array.from(jobs, (j) => j.row), params, rng, history, historyOffsets, biasIds, biasValues, biasOffsets };
}

function penalised(p: SamplingParams): boolean {
  return (p.presencePenalty ?? 0) !== 0 || (p.frequencyPenalty ?? 0) !== 0 || (p.repetitionPenalty ?? 1) !== 1;
}

/** The sampled tokens of a native result, one per job; advances each params.rng. */
export function unpackSampling(r: NativeSampleResult, params: SamplingParams[]): SampledToken[] {
  return params.map((p, j) => {
    p.rng.lo = r.rng[2 * j];
    p.rng.hi = r.rng[2 * j + 1];
    const top: { token: number; logprob: number }[] = [];
    for (let i = 0; i < r.topN; i++) {
      const id = r.topIds[j * r.topN + i];
      if (id >= 0) top.push({ token: id, logprob: r.topLogprobs[j * r.topN + i] });
    }
    return { token: r.tokens[j], logprob: r.logprobs[j], top };
  });
}
