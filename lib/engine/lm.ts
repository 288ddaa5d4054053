/**
 * The engine's narrow face: what generation, the server and the measuring tools need from a model.
 * MambaModel (model.ts) implements it; code above the engine (lib/generate, lib/serve, lib/measure)
 * imports this file, never model.ts, so the engine can change without them and no import cycle forms.
 *
 * @example
 *   async function greedyNext(lm: LanguageModel, ids: number[]): Promise<number> {
 *     const [r] = await lm.prefill([{ tokens: ids }]);
 *     const row = r.logits[0];
 *     return row.indexOf(Math.max(...row));
 *   }
 */
import type { NativeGrammarMatcher } from '../../bindings';
import type { Tokenizer } from '../checkpoint/tokenizer';
import { SimbaError } from '../errors';
import { LIMITS } from '../limits';
import type { MambaConfig, ModelFamily, WeightFormat } from '../types';
import * as v from '../validate';
import type { Sequence } from './sequence';
import type { SimbaOptions, SimbaPlan } from './simba';

/** The Simba check, for generate() and the server (which see the engine only through this module). */
export { checkSimba } from './simba';

export type { Sequence } from './sequence';
export type { SimbaOptions, SimbaCriterion, SimbaPlan } from './simba';
export type { Tokenizer } from '../checkpoint/tokenizer';
export type { MambaConfig } from '../types';

/** Which positions of each prompt get logits. Indices are relative to the tokens given. */
export type LogitsPositions = 'last' | 'all' | 'none' | number[];

export interface PrefillInput {
  /** The sequence to continue (default: a new one). */
  sequence?: Sequence;
  tokens: ArrayLike<number>;
  /** Positions of this input that get logits (overrides PrefillOptions.logits). */
  logits?: LogitsPositions;
}

export interface PrefillOptions {
  logits?: LogitsPositions;
  /**
   * Simba token pruning during this prefill (see SimbaOptions), or a plan from checkSimba() for
   * prompts of its length (run as it is, not checked again).
   */
  simba?: SimbaOptions | SimbaPlan;
  /**
   * Aborting rejects the call at once with E_ABORTED (the signal's reason as `cause`), also while a
   * native call runs: that call cannot stop mid-way, so with a signal it works on copies of the
   * sequences' states, and its result is discarded. The sequences' states and positions are left
   * exactly as before the call (for a chunked prefill too, whichever chunk was running).
   */
  signal?: AbortSignal;
}

export interface PrefillResult {
  sequence: Sequence;
  /** Positions (relative to the input tokens) that have logits, in order. */
  positions: number[];
  /** One [vocabSize] row per position. */
  logits: Float32Array[];
  /** Tokens each layer processed (all equal to the prompt length when dense). */
  processed: number[];
  /** For each input token, how many layers it went through before Simba dropped it (nLayer = kept). */
  exitLayer: Int32Array;
  /** FLOPs of this prefill through the layers (head excluded), and relative to dense. */
  flops: number;
  relFlops: number;
}

export interface DecodeOptions {
  /**
   * Aborting rejects the call at once with E_ABORTED (the signal's reason as `cause`); the step runs
   * on copies of the states, so the sequences' states and positions are left exactly as before it.
   */
  signal?: AbortSignal;
}

/**
 * Per-sequence sampling parameters of a native sampling step (already validated: see
 * lib/generate/sampler.ts for the user-facing options). The rule is in native/cpu/sampling.h.
 */
export interface SamplingParams {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  /** 0 = off: keep tokens with p >= minP * p_max. */
  minP?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** 1 = off (HF style: positive logits divided, negative multiplied). */
  repetitionPenalty?: number;
  /** Added to the logits of these ids. */
  logitBias?: ReadonlyMap<number, number>;
  /** -1 / undefined: none; n >= 0: the chosen token's logprob and the n most likely. */
  logprobs?: number;
  /** Sample only ids below this (the tokenizer's vocabulary when the checkpoint pads it). */
  limit?: number;
  /** The sequence's generated tokens so far (the penalties count them). */
  history?: ArrayLike<number>;
  /** The sequence's random state; advanced in place by each sampled token. */
  rng: SamplerRng;
  /**
   * A grammar's matcher (lib/constrain/grammar.ts): only the tokens it allows are sampled, and it
   * advances on the sampled token (token -1 when it allows none).
   */
  matcher?: NativeGrammarMatcher;
}

/** A splitmix64 state as two uint32 halves (mutable: sampling advances it). */
export interface SamplerRng {
  lo: number;
  hi: number;
}

/** A splitmix64 state from a seed (an integer in [0, 2^53)). */
export function rngFromSeed(seed: number): SamplerRng {
  return { lo: seed >>> 0, hi: Math.floor(seed / 2 ** 32) >>> 0 };
}

export interface SampledToken {
  token: number;
  /** log p(token) under log_softmax of the adjusted logits (0 unless logprobs >= 0). */
  logprob: number;
  /** The most likely tokens and their logprobs, most likely first (logprobs > 0). */
  top: { token: number; logprob: number }[];
  /** Token -1: why the grammar (SamplingParams.matcher) allowed no token. */
  grammarError?: string;
}

export interface StepInput {
  sequence: Sequence;
  /** Tokens to feed (a prompt chunk, or the one last sampled token). */
  tokens: ArrayLike<number>;
  /** Sample from the logits after the last token: one params object per sample wanted (n > 1: several). */
  sample?: SamplingParams[];
}

export interface StepOptions {
  /** Simba pruning of each input (as PrefillOptions.simba). */
  simba?: SimbaOptions | SimbaPlan;
  /** Aborting rejects with E_ABORTED and leaves the sequences (and the sampling RNGs) as they were. */
  signal?: AbortSignal;
}

export interface StepResult {
  /** Per input, one SampledToken per params object of its `sample`. */
  samples: SampledToken[][];
  /** Native time spent sampling (ms). */
  sampleMs: number;
}

/** What `info()` reports. */
export interface ModelInfo {
  config: MambaConfig;
  /** 'mamba' (Mamba-1), 'falcon-mamba' or 'mamba2'. */
  family: ModelFamily;
  paramCount: number;
  /** Dense FLOPs for one token through all layers and the head. */
  flopsPerToken: number;
  layerFlops: number;
  headFlops: number;
  weights: WeightFormat;
  weightBytes: number;
  stateBytes: number;
  device: 'cpu' | 'cuda';
  /** Device 'cuda': recurrent-state bytes copied host -> device and device -> host so far (snapshotAsync,
   *  restoreAsync, the saved states of calls with an abort signal); decode steps on the device slots copy none. */
  stateBytesToDevice?: number;
  stateBytesToHost?: number;
  isa: string;
  threads: number;
  source: string;
}

/** A loaded language model: sequences with recurrent state, batched prefill and decode. */
export interface LanguageModel {
  readonly config: MambaConfig;
  /** The model's tokenizer, or null for random-weight models. */
  readonly tokenizer: Tokenizer | null;
  /** True once dispose() was called. */
  readonly disposed: boolean;
  /** A new, empty sequence (zero state). */
  newSequence(): Sequence;
  /** Processes prompts (a batch of any lengths) and returns logits at the asked positions. */
  prefill(inputs: PrefillInput[], opts?: PrefillOptions): Promise<PrefillResult[]>;
  /** One decode step for many sequences: feeds tokens[i] to sequences[i]; next-token logits of each. */
  decode(sequences: Sequence[], tokens: ArrayLike<number>, opts?: DecodeOptions): Promise<Float32Array[]>;
  /**
   * One native call over a mixed batch (prompt chunks and decode tokens), sampling natively right
   * after the head: only tokens (+ logprobs) come back, never [B, V] logits. At most
   * MAX_CHUNK_TOKENS tokens in all.
   */
  step(inputs: StepInput[], opts?: StepOptions): Promise<StepResult>;
  /** A batched decode step with native sampling: feeds tokens[i] to sequences[i], samples with params[i]. */
  decodeSample(
    sequences: Sequence[],
    tokens: ArrayLike<number>,
    params: SamplingParams[],
    opts?: DecodeOptions,
  ): Promise<SampledToken[]>;
  info(): ModelInfo;
  /**
   * Frees the model; later calls throw E_DISPOSED. A call that is one native call finishes normally;
   * a chunked prefill rejects with E_DISPOSED at its next chunk, its sequence left as before the call.
   */
  dispose(): void;
}

/**
 * `m` as a LanguageModel, or E_ARG naming what was given (null, {}, a string: a TypeError deep in
 * the call otherwise); E_DISPOSED for a disposed one.
 */
export function checkModel(where: string, m: unknown): LanguageModel {
  const lm = m as Partial<LanguageModel> | null;
  const ok =
    v.is.object(m) &&
    v.is.fn(lm!.newSequence) &&
    v.is.fn(lm!.step) &&
    v.is.fn(lm!.prefill) &&
    v.is.object(lm!.config) &&
    v.is.integer(lm!.config.vocabSize);
  if (!ok) throw v.argError(where, `model must be a loaded model (from loadModel() or randomModel()), got ${v.describeType(m)}`);
  if (lm!.disposed) throw new SimbaError('E_DISPOSED', `${where}: the model has been disposed`);
  return m as unknown as LanguageModel;
}

/**
 * Token ids checked against a vocabulary of `vocabSize` ids, as an Int32Array: E_ARG for anything but
 * an array (or typed array) of integers, an empty one or one over the request limit; E_TOKEN for an
 * id outside the vocabulary. `what` starts the messages ('generate', 'prefill input 0', ...).
 */
export function tokenIds(what: string, tokens: unknown, vocabSize: number): Int32Array {
  if (!v.is.arrayLike(tokens)) throw v.argError(what, `tokens must be an array of token ids, got ${v.describeType(tokens)}`);
  if (tokens.length === 0) throw new SimbaError('E_ARG', `${what}: empty prompt (at least one token is needed)`);
  if (tokens.length > LIMITS.requestTokens)
    throw new SimbaError('E_ARG', `${what}: ${tokens.length} tokens exceed the limit of ${LIMITS.requestTokens} per request`);
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t: unknown = tokens[i];
    if (typeof t !== 'number') throw v.argError(what, `tokens[${i}] must be an integer, got ${v.describeType(t)}`);
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
      throw new SimbaError('E_TOKEN', `${what}: token id ${String(t)} at index ${i} is outside the vocabulary [0, ${vocabSize})`);
    out[i] = t;
  }
  return out;
}
