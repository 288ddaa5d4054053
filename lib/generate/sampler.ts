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
import { GENERATE_DEFAULTS, LIMITS } from '../limits';
import * as v from '../validate';

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

/** The option names of SamplerOptions (generate() accepts them). */
export const SAMPLER_KEYS = [
  'temperature',
  'topK',
  'topP',
  'minP',
  'presencePenalty',
  'frequencyPenalty',
  'repetitionPenalty',
  'logitBias',
  'logprobs',
  'seed',
] as const;

export type SamplerKey = (typeof SAMPLER_KEYS)[number];

/** The logit bias as a Map of token id -> bias (ids checked against the vocabulary); `name` names it in messages. */
export function logitBiasMap(
  bias: unknown,
  vocabSize: number,
  where: string,
  name = 'logitBias',
): Map<number, number> | undefined {
  if (bias === undefined) return undefined;
  if (bias === null || typeof bias !== 'object' || Array.isArray(bias))
    throw v.argError(where, `${name} must be a Map or an object of token id -> bias, got ${v.describeType(bias)}`, name);
  const entries: [unknown, unknown][] =
    bias instanceof Map ? [...(bias as Map<unknown, unknown>).entries()] : Object.entries(bias);
  const out = new Map<number, number>();
  for (const [k, val] of entries) {
    const id = typeof k === 'number' ? k : /^\d+$/.test(String(k)) ? Number(k) : NaN;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new SimbaError(
        'E_TOKEN',
        `${where ? `${where}: ` : ''}${name} key ${String(k).slice(0, 40)} is not a token id in [0, ${vocabSize})`,
        { param: name },
      );
    out.set(id, v.number(where, `${name}[${id}]`, val, -100, 100) ?? 0);
  }
  return out;
}

/**
 * Validated native sampling params (with a fresh RNG from the seed) for already-keyed options
 * (see GENERATE_DEFAULTS for the defaults). The one check of the sampling options: generate() and
 * the server (lib/serve/openai.ts, which gives its snake_case `names` for the messages and the
 * errors' `param`) both call it.
 */
export function samplingParams(
  o: Partial<Record<SamplerKey, unknown>>,
  where: string,
  vocabSize: number,
  limit = 0,
  names: Partial<Record<SamplerKey, string>> = {},
): SamplingParams & { seed: number } {
  const d = GENERATE_DEFAULTS;
  const n = (k: SamplerKey) => names[k] ?? k;
  const seed = v.int(where, n('seed'), o.seed, 0, LIMITS.samplerSeed) ?? Math.floor(Math.random() * 2 ** 31);
  return {
    temperature: v.number(where, n('temperature'), o.temperature, 0, LIMITS.temperature) ?? d.temperature,
    topK: v.int(where, n('topK'), o.topK, 0) ?? d.topK,
    topP: v.number(where, n('topP'), o.topP, 0, 1, true) ?? d.topP,
    minP: v.number(where, n('minP'), o.minP, 0, 1) ?? 0,
    presencePenalty: v.number(where, n('presencePenalty'), o.presencePenalty, -2, 2) ?? 0,
    frequencyPenalty: v.number(where, n('frequencyPenalty'), o.frequencyPenalty, -2, 2) ?? 0,
    repetitionPenalty: v.number(where, n('repetitionPenalty'), o.repetitionPenalty, 0.01, 10) ?? 1,
    logitBias: logitBiasMap(o.logitBias, vocabSize, where, n('logitBias')),
    logprobs: v.int(where, n('logprobs'), o.logprobs, 0, 20) ?? -1,
    limit,
    seed,
    rng: rngFromSeed(seed),
  };
}
