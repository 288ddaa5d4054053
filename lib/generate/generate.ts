/**
 * Text generation: native sampling (greedy, temperature, top-k, top-p, min-p, penalties, logit
 * bias, logprobs, seeded), stop conditions and streaming. The prompt is prefilled once (optionally with Simba pruning), then one decode step
 * per token; text streams through the tokenizer's incremental decoder, so a piece never ends in
 * half a UTF-8 character.
 */
import { constraintGbnf, CONSTRAINT_KEYS, type ConstraintOptions } from '../constrain/constraint';
import { compileGrammar, Grammar } from '../constrain/grammar';
import { checkModel, checkSimba, tokenIds, type LanguageModel, type SampledToken, type SimbaOptions } from '../engine/lm';
import { isSimbaError, SimbaError } from '../errors';
import { GENERATE_DEFAULTS, LIMITS } from '../limits';
import * as v from '../validate';
import { samplingParams, SAMPLER_KEYS, type SamplerOptions } from './sampler';
import { StopMatcher } from './stop';

export interface GenerateOptions extends SamplerOptions, ConstraintOptions {
  /** Tokens to generate at most (default 64, at most 1,000,000). */
  maxTokens?: number;
  /** Stop when the generated text contains one of these strings (the stop string is not emitted). */
  stop?: string[];
  /** Stop at the end-of-sequence token (default true). */
  stopAtEos?: boolean;
  /** Prune the prompt's tokens during prefill (decode stays dense). */
  simba?: SimbaOptions;
  /**
   * Constrain the text to a grammar: GBNF text (llama.cpp's syntax, start rule `root`) or a
   * compileGrammar() result. Generation ends when the grammar is complete and allows nothing more,
   * or on the EOS (allowed only where it is complete); maxTokens may end it first. At most one of
   * grammar, responseFormat, jsonSchema, regex and choice (lib/constrain/constraint.ts), each
   * turned into such a grammar.
   */
  grammar?: string | Grammar;
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

/** Dense prompts up to this many tokens go to one native call; longer ones are prefilled in chunks first. */
const MAX_STEP_TOKENS = LIMITS.chunkTokens;

const GENERATE_KEYS = ['maxTokens', ...SAMPLER_KEYS, 'stop', 'stopAtEos', 'simba', ...CONSTRAINT_KEYS, 'signal'] as const;

/**
 * Validated generation options with defaults filled in (see GENERATE_DEFAULTS); `sampling` holds
 * the native sampling params (vocabSize checks logitBias ids; limit: ids the tokenizer can decode).
 */
export function resolveGenerateOptions(opts: GenerateOptions | undefined, vocabSize = 2 ** 31 - 1, limit = 0) {
  const w = 'generate',
    o = v.options(w, opts, GENERATE_KEYS),
    d = GENERATE_DEFAULTS;
  return {
    maxTokens: v.int(w, 'maxTokens', o.maxTokens, 0, LIMITS.generateTokens) ?? d.maxTokens,
    sampling: samplingParams(o, w, vocabSize, limit),
    stop: v.stringArray(w, 'stop', o.stop, true) ?? [],
    stopAtEos: v.bool(w, 'stopAtEos', o.stopAtEos) ?? d.stopAtEos,
    simba: o.simba as SimbaOptions | undefined,
    grammar: constraintOption(w, o),
    signal: v.signal(w, 'signal', o.signal),
  };
}

/** The one constraint option given, as a compiled grammar or GBNF text (two or more: E_ARG naming them). */
function constraintOption(
  w: string,
  o: Partial<Record<(typeof CONSTRAINT_KEYS)[number], unknown>>,
): string | Grammar | undefined {
  const g = o.grammar;
  if (g !== undefined && typeof g !== 'string' && !(g instanceof Grammar))
    throw v.argError(w, `grammar must be GBNF text or a compileGrammar() result, got ${v.describeType(g)}`, 'grammar');
  const gbnf = constraintGbnf(o, w);
  return g instanceof Grammar ? g : gbnf;
}

/**
 * Streams generated tokens for a prompt (text, or token ids).
 * @example
 *   for await (const p of generate(model, 'Once', { maxTokens: 16, temperature: 0.8, seed: 1 })) out += p.text;
 */
export async function* generate(
  model: LanguageModel,
  prompt: string | ArrayLike<number>,
  opts?: GenerateOptions,
): AsyncGenerator<GeneratedPiece, void, undefined> {
  checkModel('generate', model);
  const tok = model.tokenizer;
  // Checkpoints pad the vocabulary (e.g. 50280 rows for GPT-NeoX's 50277 ids): never sample an id
  // the tokenizer cannot decode.
  const limit = tok ? Math.min(tok.vocabSize, model.config.vocabSize) : model.config.vocabSize;
  const o = resolveGenerateOptions(opts, model.config.vocabSize, limit);
  let ids: ArrayLike<number>;
  if (typeof prompt === 'string') {
    if (!tok) throw new SimbaError('E_ARG', 'generate: this model has no tokenizer; pass token ids instead of text');
    if (prompt.length === 0) throw new SimbaError('E_ARG', 'generate: empty prompt');
    // In slices with event-loop turns between them (a long text is hundreds of ms of tokenizing),
    // and no further than the request limit.
    ids = await tok.encodeAsync(prompt, { maxTokens: LIMITS.requestTokens, signal: o.signal }).catch((e: unknown) => {
      throw isSimbaError(e, 'E_ABORTED') ? new SimbaError('E_ABORTED', 'generate: aborted', { cause: e.cause }) : e;
    });
    if (ids.length > LIMITS.requestTokens)
      throw new SimbaError('E_ARG', `generate: the prompt has more than ${LIMITS.requestTokens} tokens, the limit per request`);
  } else {
    if (!v.is.arrayLike(prompt))
      throw v.argError('generate', `prompt must be a string or an array of token ids, got ${v.describeType(prompt)}`);
    ids = tokenIds('generate', prompt, model.config.vocabSize);
  }
  const simba = o.simba !== undefined ? checkSimba(model.config, ids.length, o.simba, 'generate') : undefined;
  const grammar = typeof o.grammar === 'string' ? compileGrammar(model, o.grammar) : o.grammar;
  if (grammar && grammar.tokenizer !== tok)
    throw v.argError('generate', 'grammar was compiled for another tokenizer than this model', 'grammar');
  if (o.maxTokens === 0) return;
  const seq = model.newSequence();
  const decoder = tok?.createStreamDecoder();
  const eos = tok?.eosTokenId ?? model.config.eosTokenId;
  const params = o.sampling;
  const matcher = grammar?.matcher();
  if (matcher) params.matcher = matcher;
  const history: number[] = [];
  params.history = history;
  try {
    // Dense prompts longer than one native call: prefill all but the last token in chunks, then
    // the sampling step feeds the last one.
    const n = ids.length;
    let next: SampledToken;
    if (simba === undefined && n > MAX_STEP_TOKENS) {
      await model.prefill([{ sequence: seq, tokens: Array.prototype.slice.call(ids, 0, n - 1) as number[] }], {
        logits: 'none',
        signal: o.signal,
      });
      [[next]] = (await model.step([{ sequence: seq, tokens: [ids[n - 1]], sample: [params] }], { signal: o.signal })).samples;
    } else {
      [[next]] = (await model.step([{ sequence: seq, tokens: ids, sample: [params] }], { simba, signal: o.signal })).samples;
    }
    const stop = new StopMatcher(o.stop);
    for (let i = 0; i < o.maxTokens; i++) {
      if (o.signal?.aborted) throw new SimbaError('E_ABORTED', 'generate: aborted', { cause: o.signal.reason });
      if (next.token < 0)
        throw new SimbaError('E_ARG', `generate: grammar: ${next.grammarError ?? 'no token allowed'}`, { param: 'grammar' });
      if ((o.stopAtEos || matcher) && eos !== null && next.token === eos) break;
      history.push(next.token);
      const { emit, stopped } = stop.push(decoder ? decoder.push(next.token) : '');
      const piece: GeneratedPiece =
        (params.logprobs ?? -1) >= 0
          ? { token: next.token, text: emit, logprob: next.logprob, top: next.top }
          : { token: next.token, text: emit };
      if (stopped) {
        if (emit) yield piece;
        return;
      }
      yield piece;
      if (matcher?.finished()) break;
      if (i + 1 < o.maxTokens) [next] = await model.decodeSample([seq], [next.token], [params], { signal: o.signal });
    }
    const rest = stop.flush(decoder ? decoder.flush() : '');
    if (rest) yield { token: -1, text: rest };
  } finally {
    seq.dispose();
  }
}
