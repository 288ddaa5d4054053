/**
 * Text generation: sampling (greedy, temperature, top-k, top-p, seeded), stop conditions and
 * streaming. The prompt is prefilled once (optionally with Simba pruning), then one decode step
 * per token; text streams through the tokenizer's incremental decoder, so a piece never ends in
 * half a UTF-8 character.
 */
import type { LanguageModel, SimbaOptions } from '../engine/lm';
import { SimbaError } from '../errors';
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

export const MAX_GENERATE_TOKENS = 1_000_000;

function num(v: unknown, def: number, what: string, lo: number, hi: number, int = false): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
    throw new SimbaError('E_ARG', `generate: ${what} must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${String(v)}`);
  return v;
}

/** Validated generation options with defaults filled in. */
export function resolveGenerateOptions(opts: GenerateOptions) {
  const stop = opts.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s.length === 0))
    throw new SimbaError('E_ARG', 'generate: stop must be an array of non-empty strings');
  return {
    maxTokens: num(opts.maxTokens, 64, 'maxTokens', 0, MAX_GENERATE_TOKENS, true),
    temperature: num(opts.temperature, 0.8, 'temperature', 0, 100),
    topK: num(opts.topK, 40, 'topK', 0, 1e9, true),
    topP: num(opts.topP, 0.95, 'topP', 1e-6, 1),
    seed: num(opts.seed, Math.floor(Math.random() * 2 ** 31), 'seed', 0, 2 ** 32 - 1, true),
    stop, stopAtEos: opts.stopAtEos ?? true,
  };
}

/**
 * Streams generated tokens for a prompt (text, or token ids).
 * @example
 *   for await (const p of generate(model, 'Once', { maxTokens: 16, temperature: 0.8, seed: 1 })) out += p.text;
 */
export async function* generate(model: LanguageModel, prompt: string | ArrayLike<number>, opts: GenerateOptions = {}):
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
  let [first] = await model.prefill([{ sequence: seq, tokens: ids }], { logits: 'last', simba: opts.simba, signal: opts.signal });
  let logits = first.logits[0];
  const stop = new StopMatcher(o.stop);
  try {
    for (let i = 0; i < o.maxTokens; i++) {
      if (opts.signal?.aborted) throw new SimbaError('E_ABORTED', 'generate: aborted', { cause: opts.signal.reason });
      const next = sample(limit < logits.length ? logits.subarray(0, limit) : logits, o, rand);
      if (o.stopAtEos && eos !== null && next === eos) break;
      const { emit, stopped } = stop.push(decoder ? decoder.push(next) : '');
      if (stopped) {
        if (emit) yield { token: next, text: emit };
        return;
      }
      yield { token: next, text: emit };
      if (i + 1 < o.maxTokens) [logits] = await model.decode([seq], [next], { signal: opts.signal });
    }
    const rest = stop.flush(decoder ? decoder.flush() : '');
    if (rest) yield { token: -1, text: rest };
  } finally {
    seq.dispose();
    first = undefined as never;
  }
}
