/**
 * Text generation: native sampling (greedy, temperature, top-k, top-p, min-p, penalties, logit
 * bias, logprobs, seeded), stop conditions and streaming. The prompt is prefilled once (optionally with Simba pruning), then one decode step
 * per token; text streams through the tokenizer's incremental decoder, so a piece never ends in
 * half a UTF-8 character.
 */
import type { LanguageModel, SampledToken, SimbaOptions } from '../engine/lm';
import { SimbaError } from '../errors';
import { checkNumber, samplingParams, type SamplerOptions } from './sampler';
import { StopMatcher } from './stop';

export interface GenerateOptions extends SamplerOptions {
  /** Tokens to generate at most (default 64, at most 1,000,000). */
  maxTokens?: number;
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
  /** With `logprobs`: the token's logprob and the most likely alternatives. */
  logprob?: number;
  top?: { token: number; logprob: number }[];
}

export const MAX_GENERATE_TOKENS = 1_000_000;
/** Dense prompts up to this many tokens go to one native call (the engine's MAX_CHUNK_TOKENS). */
const MAX_STEP_TOKENS = 8192;

/** Validated generation options with defaults filled in (sampling: native SamplingParams). */
export function resolveGenerateOptions(opts: GenerateOptions, vocabSize = 2 ** 31 - 1, limit = 0) {
  const stop = opts.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s.length === 0))
    throw new SimbaError('E_ARG', 'generate: stop must be an array of non-empty strings');
  return {
    maxTokens: checkNumber(opts.maxTokens, 64, 'generate: maxTokens', 0, MAX_GENERATE_TOKENS, true),
    sampling: samplingParams(opts, 'generate', vocabSize, limit),
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
  const tok = model.tokenizer;
  // Checkpoints pad the vocabulary (e.g. 50280 rows for GPT-NeoX's 50277 ids): never sample an id
  // the tokenizer cannot decode.
  const limit = tok ? Math.min(tok.vocabSize, model.config.vocabSize) : model.config.vocabSize;
  const o = resolveGenerateOptions(opts, model.config.vocabSize, limit);
  let ids: ArrayLike<number>;
  if (typeof prompt === 'string') {
    if (!tok) throw new SimbaError('E_ARG', 'generate: this model has no tokenizer; pass token ids instead of text');
    if (prompt.length === 0) throw new SimbaError('E_ARG', 'generate: empty prompt');
    ids = tok.encode(prompt);
  } else {
    ids = prompt;
  }
  if (o.maxTokens === 0) return;
  const seq = model.newSequence();
  const decoder = tok?.createStreamDecoder();
  const eos = tok?.eosTokenId ?? model.config.eosTokenId;
  const params = o.sampling;
  const history: number[] = [];
  params.history = history;
  try {
    // The prompt: dense prompts longer than one native call are prefilled in chunks but the last
    // token, which the sampling step feeds.
    const n = ids.length;
    let next: SampledToken;
    if (opts.simba === undefined && n > MAX_STEP_TOKENS) {
      await model.prefill([{ sequence: seq, tokens: Array.prototype.slice.call(ids, 0, n - 1) as number[] }], { logits: 'none', signal: opts.signal });
      [[next]] = (await model.step([{ sequence: seq, tokens: [ids[n - 1]], sample: [params] }], { signal: opts.signal })).samples;
    } else {
      [[next]] = (await model.step([{ sequence: seq, tokens: ids, sample: [params] }], { simba: opts.simba, signal: opts.signal })).samples;
    }
    const stop = new StopMatcher(o.stop);
    for (let i = 0; i < o.maxTokens; i++) {
      if (opts.signal?.aborted) throw new SimbaError('E_ABORTED', 'generate: aborted', { cause: opts.signal.reason });
      if (o.stopAtEos && eos !== null && next.token === eos) break;
      history.push(next.token);
      const { emit, stopped } = stop.push(decoder ? decoder.push(next.token) : '');
      const piece: GeneratedPiece = params.logprobs! >= 0 ? { token: next.token, text: emit, logprob: next.logprob, top: next.top } : { token: next.token, text: emit };
      if (stopped) {
        if (emit) yield piece;
        return;
      }
      yield piece;
      if (i + 1 < o.maxTokens) [next] = await model.decodeSample([seq], [next.token], [params], { signal: opts.signal });
    }
    const rest = stop.flush(decoder ? decoder.flush() : '');
    if (rest) yield { token: -1, text: rest };
  } finally {
    seq.dispose();
  }
}
