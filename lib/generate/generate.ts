/**
 * Text generation: sampling (greedy, temperature, top-k, top-p, seeded), stop conditions and
 * streaming. The prompt is prefilled once (optionally with Simba pruning), then one decode step
 * per token; text streams through the tokenizer's incremental decoder, so a piece never ends in
 * half a UTF-8 character.
 */
import type { LanguageModel, SimbaOptions } from '../engine/lm';
import { SimbaError } from '../errors';
import { GENERATE_DEFAULTS, LIMITS } from '../limits';
import * as v from '../validate';
import { mulberry32, sample } from './sampler';
import { StopMatcher } from './stop';

export interface GenerateOptions {
  /** Tokens to generate at most (default 64, at most 1,000,000). */
  maxTokens?: number;
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off, default 40). */
  topK?: number;
  /** Nucleus sampling: smallest set of tokens whose probability sums to p (1 = off, default 0.95). */
  topP?: number;
  /** Seed of the sampler; the same seed and options give the same text. Default: random. */
  seed?: number;
  /** Stop when the generated text contains one of these strings (the stop string is not emitted). */
  stop?: string[];
  /** Stop at the end-of-sequence token (default true). */
  stopAtEos?: boolean;
  /** Prune the prompt's tokens during prefill (decode stays dense). */
  simba?: SimbaOptions;
  signal?: AbortSignal;
}

export interface GeneratedPiece {
  token: number;
  /** Text completed by this token (may be '' while a multi-byte character is incomplete). */
  text: string;
}

const GENERATE_KEYS = ['maxTokens', 'temperature', 'topK', 'topP', 'seed', 'stop', 'stopAtEos', 'simba', 'signal'] as const;

/** Validated generation options with defaults filled in (see GENERATE_DEFAULTS). */
export function resolveGenerateOptions(opts: GenerateOptions | undefined) {
  const w = 'generate', o = v.options(w, opts, GENERATE_KEYS), d = GENERATE_DEFAULTS;
  return {
    maxTokens: v.int(w, 'maxTokens', o.maxTokens, 0, LIMITS.generateTokens) ?? d.maxTokens,
    temperature: v.number(w, 'temperature', o.temperature, 0, LIMITS.temperature) ?? d.temperature,
    topK: v.int(w, 'topK', o.topK, 0) ?? d.topK,
    topP: v.number(w, 'topP', o.topP, 0, 1, true) ?? d.topP,
    seed: v.int(w, 'seed', o.seed, 0, LIMITS.seed) ?? Math.floor(Math.random() * 2 ** 31),
    stop: v.stringArray(w, 'stop', o.stop, true) ?? [],
    stopAtEos: v.bool(w, 'stopAtEos', o.stopAtEos) ?? d.stopAtEos,
    simba: o.simba as SimbaOptions | undefined,
    signal: v.signal(w, 'signal', o.signal),
  };
}

/**
 * Streams generated tokens for a prompt (text, or token ids).
 * @example
 *   for await (const p of generate(model, 'Once', { maxTokens: 16, temperature: 0.8, seed: 1 })) out += p.text;
 */
export async function* generate(model: LanguageModel, prompt: string | ArrayLike<number>, opts?: GenerateOptions):
    AsyncGenerator<GeneratedPiece, void, undefined> {
  if (model.disposed) throw new SimbaError('E_DISPOSED', 'generate: the model has been disposed');
  const o = resolveGenerateOptions(opts);
  const tok = model.tokenizer;
  let ids: ArrayLike<number>;
  if (typeof prompt === 'string') {
    if (!tok) throw new SimbaError('E_ARG', 'generate: this model has no tokenizer; pass token ids instead of text');
    if (prompt.length === 0) throw new SimbaError('E_ARG', 'generate: empty prompt');
    ids = tok.encode(prompt);
  } else {
    ids = prompt;
  }
  if (o.maxTokens === 0) return;
  const rand = mulberry32(o.seed);
  const seq = model.newSequence();
  const decoder = tok?.createStreamDecoder();
  const eos = tok?.eosTokenId ?? model.config.eosTokenId;
  // Checkpoints pad the vocabulary (e.g. 50280 rows for GPT-NeoX's 50277 ids): never sample an id
  // the tokenizer cannot decode.
  const limit = tok ? Math.min(tok.vocabSize, model.config.vocabSize) : model.config.vocabSize;
  const [first] = await model.prefill([{ sequence: seq, tokens: ids }], { logits: 'last', simba: o.simba, signal: o.signal });
  let logits = first.logits[0];
  const stop = new StopMatcher(o.stop);
  try {
    for (let i = 0; i < o.maxTokens; i++) {
      if (o.signal?.aborted) throw new SimbaError('E_ABORTED', 'generate: aborted', { cause: o.signal.reason });
      const next = sample(limit < logits.length ? logits.subarray(0, limit) : logits, o, rand);
      if (o.stopAtEos && eos !== null && next === eos) break;
      const { emit, stopped } = stop.push(decoder ? decoder.push(next) : '');
      if (stopped) {
        if (emit) yield { token: next, text: emit };
        return;
      }
      yield { token: next, text: emit };
      if (i + 1 < o.maxTokens) [logits] = await model.decode([seq], [next], { signal: o.signal });
    }
    const rest = stop.flush(decoder ? decoder.flush() : '');
    if (rest) yield { token: -1, text: rest };
  } finally {
    seq.dispose();
  }
}
