/**
 * Sampling options of generate(): validation and defaults, turned into the engine's native
 * SamplingParams (the sampling itself runs natively after the LM head: native/cpu/sampling.h).
 * mulberry32 stays here for code that needs a small seeded JS PRNG (bench prompts).
 *
 * @example
 *   const p = samplingParams({ temperature: 0.8, topK: 40, topP: 0.95, seed: 1 }, 'generate', model.config.vocabSize);
 *   const [t] = await model.decodeSample([seq], [last], [p]);
 */
import { rngFromSeed, type SamplingParams } from '../engine/lm';
import { SimbaError } from '../errors';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SamplerOptions {
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off, default 40). */
  topK?: number;
  /** Nucleus sampling: smallest set of tokens whose probability sums to p (1 = off, default 0.95). */
  topP?: number;
  /** Keep tokens with probability >= minP times the most likely one's (0 = off, default). */
  minP?: number;
  /** Subtracted from the logit of every token generated at least once (OpenAI presence_penalty, [-2, 2]). */
  presencePenalty?: number;
  /** Subtracted once per occurrence of a generated token (OpenAI frequency_penalty, [-2, 2]). */
  frequencyPenalty?: number;
  /** HF repetition penalty over the generated tokens (1 = off, (0, 10]). */
  repetitionPenalty?: number;
  /** Added to the logits of token ids ([-100, 100] each). */
  logitBias?: Record<string, number> | ReadonlyMap<number, number>;
  /** Report the chosen token's logprob and the n most likely (0..20; default: none). */
  logprobs?: number;
  /** Seed of the sampler; the same seed and options give the same text. Default: random. */
  seed?: number;
}

export function checkNumber(v: unknown, def: number, what: string, lo: number, hi: number, int = false): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
    throw new SimbaError('E_ARG', `${what} must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${String(v)}`);
  return v;
}

/** The logit bias as a Map of token id -> bias (ids checked against the vocabulary). */
export function logitBiasMap(bias: SamplerOptions['logitBias'], vocabSize: number, what: string): Map<number, number> | undefined {
  if (bias === undefined) return undefined;
  if (bias === null || typeof bias !== 'object' || Array.isArray(bias)) throw new SimbaError('E_ARG', `${what}: logitBias must be an object of token id -> bias`);
  const entries: [unknown, unknown][] = bias instanceof Map ? [...bias.entries()] : Object.entries(bias);
  const out = new Map<number, number>();
  for (const [k, v] of entries) {
    const id = typeof k === 'number' ? k : /^\d+$/.test(String(k)) ? Number(k) : NaN;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new SimbaError('E_TOKEN', `${what}: logitBias key ${String(k)} is not a token id in [0, ${vocabSize})`);
    out.set(id, checkNumber(v, 0, `${what}: logitBias[${id}]`, -100, 100));
  }
  return out;
}

/** Validated native sampling params (with a fresh RNG from the seed) for the options. */
export function samplingParams(o: SamplerOptions, what: string, vocabSize: number, limit = 0): SamplingParams & { seed: number } {
  const seed = checkNumber(o.seed, Math.floor(Math.random() * 2 ** 31), `${what}: seed`, 0, Number.MAX_SAFE_INTEGER, true);
  return {
    temperature: checkNumber(o.temperature, 0.8, `${what}: temperature`, 0, 100),
    topK: checkNumber(o.topK, 40, `${what}: topK`, 0, 1e9, true),
    topP: checkNumber(o.topP, 0.95, `${what}: topP`, 1e-6, 1),
    minP: checkNumber(o.minP, 0, `${what}: minP`, 0, 1),
    presencePenalty: checkNumber(o.presencePenalty, 0, `${what}: presencePenalty`, -2, 2),
    frequencyPenalty: checkNumber(o.frequencyPenalty, 0, `${what}: frequencyPenalty`, -2, 2),
    repetitionPenalty: checkNumber(o.repetitionPenalty, 1, `${what}: repetitionPenalty`, 1e-3, 10),
    logitBias: logitBiasMap(o.logitBias, vocabSize, what),
    logprobs: checkNumber(o.logprobs, -1, `${what}: logprobs`, -1, 20, true),
    limit, seed, rng: rngFromSeed(seed),
  };
}
