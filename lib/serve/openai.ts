/**
 * The OpenAI request and response shapes of /v1/completions and /v1/chat/completions: request
 * validation (every bad field is a 400 naming it), prompt tokenisation (422 over the limit), and
 * the JSON of responses and SSE chunks exactly as the official `openai` client reads them.
 *
 * Supported fields: model, prompt (string, strings, token ids, lists of token ids) / messages,
 * max_tokens (max_completion_tokens), temperature, top_p, n, stop, seed, stream,
 * stream_options.include_usage, logprobs (+ top_logprobs for chat), presence_penalty,
 * frequency_penalty, logit_bias, user; extensions top_k, min_p, repetition_penalty and
 * `simba` (e.g. {"flops": 0.6}: prune this request's prompt). Unknown fields are ignored.
 *
 * @example
 *   const spec = parseCompletion(body, ctx);     // throws ApiError
 *   const json = completionResponse(spec, id, created, choices, usage);
 */
import { rngFromSeed, type SamplingParams, type SimbaOptions, type Tokenizer } from '../engine/lm';
import type { StreamDecoder } from '../checkpoint/tokenizer';
import { planSimba, validateSimbaOptions } from '../engine/simba';
import type { ChatMessage, ChatTemplate } from '../checkpoint/chat_template';
import type { MambaConfig } from '../types';
import { ApiError, badParam, notFound } from './errors';

export interface ParseContext {
  modelName: string;
  config: MambaConfig;
  tokenizer: Tokenizer | null;
  chatTemplate: ChatTemplate;
  /** Prompts longer than this are a 422. */
  maxPromptTokens: number;
  /** The largest max_tokens accepted. */
  maxTokensLimit: number;
  /** Largest n (the scheduler's max running sequences, at most 16). */
  maxN: number;
  /** Applied when the request has no `simba` field. */
  defaultSimba?: SimbaOptions;
}

export interface GenerationSpec {
  kind: 'completion' | 'chat';
  prompts: number[][];
  n: number;
  maxTokens: number;
  stream: boolean;
  includeUsage: boolean;
  stop: string[];
  /** Completions: top logprobs per token (0..5), null = no logprobs. Chat: top_logprobs (0..20) or null. */
  logprobs: number | null;
  simba?: SimbaOptions;
  /** The Simba options each prompt runs with (the server-wide default leaves out prompts it cannot prune). */
  promptSimba: (SimbaOptions | undefined)[];
  /** With a server-wide Simba default: what each prompt got ("pruned", "dense (prompt too short)"), for the x-simba header. */
  simbaNote: string | null;
  /** Fresh sampling params of choice j (seed + j when a seed was given). */
  sampling(j: number): SamplingParams;
}

type Body = Record<string, unknown>;

const isObj = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);

function optNumber(
  b: Body,
  key: string,
  lo: number,
  hi: number,
  def: number,
  opts: { int?: boolean; openLo?: boolean } = {},
): number {
  const v = b[key];
  if (v === undefined || v === null) return def;
  const ok =
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (opts.openLo ? v > lo : v >= lo) &&
    v <= hi &&
    (!opts.int || Number.isInteger(v));
  if (!ok)
    throw badParam(
      key,
      `must be ${opts.int ? 'an integer' : 'a number'} in ${opts.openLo ? '(' : '['}${lo}, ${hi}], got ${short(v)}`,
    );
  return v as number;
}

function optBool(b: Body, key: string, def: boolean): boolean {
  const v = b[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'boolean') throw badParam(key, `must be a boolean, got ${short(v)}`);
  return v;
}

/** The received value as the error message shows it: at most 60 characters, never recursing deeper than 3 levels. */
function short(v: unknown): string {
  const s = describe(v, 3);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

// Not JSON.stringify: a number that JSON cannot carry (1e999 parses to Infinity) would read "null",
// and a value nested thousands deep would overflow the stack.
function describe(v: unknown, depth: number): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) : v);
  if (v === null || typeof v !== 'object') return String(v);
  if (depth === 0) return Array.isArray(v) ? '[...]' : '{...}';
  const items = Array.isArray(v)
    ? v.slice(0, 4).map((x) => describe(x, depth - 1))
    : Object.keys(v)
        .slice(0, 4)
        .map((k) => `${JSON.stringify(k.slice(0, 60))}:${describe((v as Body)[k], depth - 1)}`);
  if ((Array.isArray(v) ? v.length : Object.keys(v).length) > 4) items.push('...');
  return Array.isArray(v) ? `[${items.join(',')}]` : `{${items.join(',')}}`;
}

function tokenIds(v: unknown[], param: string, V: number): number[] {
  for (const t of v)
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= V)
      throw badParam(param, `holds ${short(t)}, not a token id in [0, ${V})`, 'invalid_token');
  return v as number[];
}

/** Tokenizes in slices between event-loop turns, and only up to the first token past the limit. */
async function encode(text: string, ctx: ParseContext, param: string, limit: number): Promise<number[]> {
  if (!ctx.tokenizer) throw badParam(param, 'must be token ids: this model has no tokenizer');
  return ctx.tokenizer.encodeAsync(text, { maxTokens: limit });
}

const MAX_SIMBA_TOKENS = 65536;

/** The most prompt tokens a request takes (fewer with the client's own Simba pruning). */
function promptLimit(ctx: ParseContext, simba: SimbaOptions | undefined, fromServer: boolean): number {
  return simba && !fromServer ? Math.min(ctx.maxPromptTokens, MAX_SIMBA_TOKENS) : ctx.maxPromptTokens;
}

interface PromptSimba {
  simba: SimbaOptions | undefined;
  note: string | null;
}

/**
 * 422 when the prompt is too long; the Simba options it runs with. A client's own `simba` that
 * cannot prune the prompt is a 400; the server-wide default applies only where it can (a prompt
 * too short or too long for it runs dense, and the note says so).
 */
function checkLength(
  ids: number[],
  ctx: ParseContext,
  param: string,
  simba: SimbaOptions | undefined,
  fromServer: boolean,
): PromptSimba {
  if (ids.length === 0) throw badParam(param, 'must not be empty');
  const clientSimba = simba && !fromServer;
  const limit = promptLimit(ctx, simba, fromServer);
  // A text prompt is tokenized only up to limit + 1 tokens: its length is then a lower bound.
  const count = ids.length > limit + 1 ? String(ids.length) : `more than ${limit}`;
  if (ids.length > limit)
    throw new ApiError(
      422,
      `the prompt has ${count} tokens; this server takes at most ${limit}${clientSimba ? ' with Simba pruning' : ''}`,
      'invalid_request_error',
      param,
      'context_length_exceeded',
    );
  if (!simba) return { simba, note: null };
  if (fromServer && ids.length > MAX_SIMBA_TOKENS) return { simba: undefined, note: 'dense (prompt too long)' };
  try {
    planSimba(ctx.config, ids.length, simba);
  } catch (e) {
    if (fromServer) return { simba: undefined, note: 'dense (prompt too short)' };
    throw badParam('simba', `cannot prune this prompt: ${(e as Error).message}`);
  }
  return { simba, note: fromServer ? 'pruned' : null };
}

/** The spec's per-prompt Simba fields. */
function simbaFields(runs: PromptSimba[]): Pick<GenerationSpec, 'promptSimba' | 'simbaNote'> {
  const notes = runs.map((r) => r.note);
  return { promptSimba: runs.map((r) => r.simba), simbaNote: notes.every((x) => x !== null) ? notes.join(', ') : null };
}

/** The fields both routes share. */
function common(
  b: Body,
  ctx: ParseContext,
  kind: 'completion' | 'chat',
): Omit<GenerationSpec, 'prompts' | 'logprobs' | 'kind' | 'promptSimba' | 'simbaNote'> & { simbaFromServer: boolean } {
  if (typeof b.model !== 'string') throw badParam('model', 'is required (a string: see GET /v1/models)', 'missing_model');
  if (b.model !== ctx.modelName)
    throw notFound(
      `the model '${b.model.slice(0, 100)}' does not exist (this server serves '${ctx.modelName}')`,
      'model_not_found',
      'model',
    );
  const maxKey =
    kind === 'chat' && b.max_completion_tokens !== undefined && b.max_completion_tokens !== null
      ? 'max_completion_tokens'
      : 'max_tokens';
  const maxTokens = optNumber(b, maxKey, 1, ctx.maxTokensLimit, Math.min(kind === 'chat' ? 256 : 16, ctx.maxTokensLimit), {
    int: true,
  });
  const temperature = optNumber(b, 'temperature', 0, 2, 1);
  const topP = optNumber(b, 'top_p', 0, 1, 1, { openLo: true });
  const topK = optNumber(b, 'top_k', -1, 1e9, 0, { int: true });
  const minP = optNumber(b, 'min_p', 0, 1, 0);
  const presence = optNumber(b, 'presence_penalty', -2, 2, 0);
  const frequency = optNumber(b, 'frequency_penalty', -2, 2, 0);
  const repetition = optNumber(b, 'repetition_penalty', 0.01, 10, 1);
  const n = optNumber(b, 'n', 1, ctx.maxN, 1, { int: true });
  const seedV = b.seed;
  if (seedV !== undefined && seedV !== null && !(typeof seedV === 'number' && Number.isSafeInteger(seedV) && seedV >= 0))
    throw badParam('seed', `must be an integer in [0, ${Number.MAX_SAFE_INTEGER}], got ${short(seedV)}`);
  const seed = typeof seedV === 'number' ? seedV : null;
  if (b.best_of !== undefined && b.best_of !== null && b.best_of !== n)
    throw badParam('best_of', 'is not supported (other than equal to n)', 'unsupported');
  if (b.echo === true) throw badParam('echo', 'is not supported', 'unsupported');
  if (b.suffix !== undefined && b.suffix !== null) throw badParam('suffix', 'is not supported', 'unsupported');
  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) stop = b.stop as string[];
  else if (b.stop !== undefined && b.stop !== null) throw badParam('stop', 'must be a string or an array of up to 4 strings');
  if (stop.length > 4 || stop.some((s) => typeof s !== 'string' || s.length === 0 || s.length > 1000))
    throw badParam('stop', 'must be a string or an array of up to 4 non-empty strings');
  const stream = optBool(b, 'stream', false);
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    if (!isObj(b.stream_options)) throw badParam('stream_options', 'must be an object');
    includeUsage = optBool(b.stream_options, 'include_usage', false);
  }
  let bias: Map<number, number> | undefined;
  if (b.logit_bias !== undefined && b.logit_bias !== null) {
    if (!isObj(b.logit_bias)) throw badParam('logit_bias', 'must be an object of token id -> bias');
    bias = new Map();
    for (const [k, v] of Object.entries(b.logit_bias)) {
      const id = /^\d{1,10}$/.test(k) ? Number(k) : NaN;
      if (!Number.isInteger(id) || id >= ctx.config.vocabSize)
        throw badParam('logit_bias', `key ${short(k)} is not a token id in [0, ${ctx.config.vocabSize})`, 'invalid_token');
      if (typeof v !== 'number' || !Number.isFinite(v) || v < -100 || v > 100)
        throw badParam('logit_bias', `value for ${k} must be a number in [-100, 100]`);
      bias.set(id, v);
    }
  }
  let simba = ctx.defaultSimba;
  if (b.simba !== undefined) {
    if (b.simba === null) simba = undefined;
    else if (!isObj(b.simba)) throw badParam('simba', 'must be an object of Simba options, e.g. {"flops": 0.6}');
    else {
      simba = b.simba as SimbaOptions;
      try {
        validateSimbaOptions(ctx.config, simba);
      } catch (e) {
        throw badParam('simba', `is invalid: ${(e as Error).message}`);
      }
    }
  }
  const limit = ctx.tokenizer ? Math.min(ctx.tokenizer.vocabSize, ctx.config.vocabSize) : 0;
  const base = Math.floor(Math.random() * 2 ** 48);
  return {
    n,
    maxTokens,
    stream,
    includeUsage,
    stop,
    simba,
    simbaFromServer: simba !== undefined && b.simba === undefined,
    sampling: (j) => ({
      temperature,
      topK: topK < 0 ? 0 : topK,
      topP,
      minP,
      presencePenalty: presence,
      frequencyPenalty: frequency,
      repetitionPenalty: repetition,
      logitBias: bias,
      limit,
      logprobs: -1,
      rng: rngFromSeed((seed ?? base) + j),
    }),
  };
}

/** Validates a /v1/completions body. */
export async function parseCompletion(body: unknown, ctx: ParseContext): Promise<GenerationSpec> {
  if (!isObj(body))
    throw new ApiError(400, 'the request body must be a JSON object', 'invalid_request_error', null, 'invalid_body');
  const c = common(body, ctx, 'completion');
  const p = body.prompt;
  let prompts: number[][];
  const limit = promptLimit(ctx, c.simba, c.simbaFromServer);
  if (typeof p === 'string') prompts = [await encode(p, ctx, 'prompt', limit)];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')) {
    prompts = [];
    for (const s of p as string[]) prompts.push(await encode(s, ctx, 'prompt', limit));
  } else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number'))
    prompts = [tokenIds(p, 'prompt', ctx.config.vocabSize)];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => Array.isArray(x)))
    prompts = (p as unknown[][]).map((x) => tokenIds(x, 'prompt', ctx.config.vocabSize));
  else throw badParam('prompt', 'is required: a string, an array of strings, an array of token ids or an array of such arrays');
  if (prompts.length * c.n > ctx.maxN)
    throw badParam('prompt', `gives ${prompts.length * c.n} choices (prompts x n); at most ${ctx.maxN}`);
  const simba = simbaFields(prompts.map((ids) => checkLength(ids, ctx, 'prompt', c.simba, c.simbaFromServer)));
  const lp = optNumber(body, 'logprobs', 0, 20, -1, { int: true });
  return { ...c, ...simba, kind: 'completion', prompts, logprobs: lp < 0 ? null : lp, sampling: withLogprobs(c.sampling, lp) };
}

/** Validates a /v1/chat/completions body and renders its messages with the chat template. */
export async function parseChat(body: unknown, ctx: ParseContext): Promise<GenerationSpec> {
  if (!isObj(body))
    throw new ApiError(400, 'the request body must be a JSON object', 'invalid_request_error', null, 'invalid_body');
  const c = common(body, ctx, 'chat');
  const m = body.messages;
  if (!Array.isArray(m) || m.length === 0) throw badParam('messages', 'is required: a non-empty array of {role, content}');
  const messages: ChatMessage[] = m.map((x, i) => {
    if (!isObj(x) || typeof x.role !== 'string' || !['system', 'developer', 'user', 'assistant', 'tool'].includes(x.role))
      throw badParam(`messages[${i}].role`, "must be one of 'system', 'developer', 'user', 'assistant', 'tool'");
    let content: string;
    if (typeof x.content === 'string') content = x.content;
    else if (x.content === null && x.role === 'assistant') content = '';
    else if (Array.isArray(x.content) && x.content.every((p) => isObj(p) && p.type === 'text' && typeof p.text === 'string'))
      content = (x.content as { text: string }[]).map((p) => p.text).join('');
    else throw badParam(`messages[${i}].content`, 'must be a string or an array of {type: "text", text} parts');
    return { role: x.role, content };
  });
  const lp = optBool(body, 'logprobs', false);
  const top = optNumber(body, 'top_logprobs', 0, 20, 0, { int: true });
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && !lp)
    throw badParam('top_logprobs', 'needs logprobs: true');
  const ids = await encode(ctx.chatTemplate.render(messages), ctx, 'messages', promptLimit(ctx, c.simba, c.simbaFromServer));
  const simba = simbaFields([checkLength(ids, ctx, 'messages', c.simba, c.simbaFromServer)]);
  return {
    ...c,
    ...simba,
    kind: 'chat',
    prompts: [ids],
    logprobs: lp ? top : null,
    sampling: withLogprobs(c.sampling, lp ? top : -1),
  };
}

function withLogprobs(f: (j: number) => SamplingParams, n: number): (j: number) => SamplingParams {
  return (j) => ({ ...f(j), logprobs: n });
}

// ---- responses

export interface ChoiceOutput {
  text: string;
  finishReason: 'stop' | 'length' | null;
  /** offset: the token's text_offset (see TextOffsets). */
  tokens: { token: number; logprob: number; top: { token: number; logprob: number }[]; offset: number }[];
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
}

export function usageOf(prompt: number, completion: number, cached: number): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

const tokenStr = (tok: Tokenizer | null, id: number) => (tok ? tok.decode([id]) : `<${id}>`);

/**
 * The text_offset of each generated token, computed as tokens arrive so that a streamed response
 * and a whole one carry the same numbers: the index in the choice's text (UTF-16 code units, as in
 * a JS string) of the first character the token holds bytes of. A token that ends in part of a
 * character split across tokens does not advance the offset past it, so the next token, which
 * completes that character, gets the character's start too. The returned text is what counts,
 * not the token's own decoding (lone pieces of a character decode to U+FFFD each).
 */
export class TextOffsets {
  private readonly choices = new Map<number, { decoder: StreamDecoder; length: number }>();

  constructor(private readonly tok: Tokenizer | null) {}

  /** The offset of the next token of choice `choice` (0 without a tokenizer: the text is empty). */
  next(choice: number, token: number): number {
    if (!this.tok) return 0;
    let c = this.choices.get(choice);
    if (!c) this.choices.set(choice, (c = { decoder: this.tok.createStreamDecoder(), length: 0 }));
    const offset = c.length;
    c.length += c.decoder.push(token).length;
    return offset;
  }
}

/** Completions logprobs: {tokens, token_logprobs, top_logprobs, text_offset}. */
export function completionLogprobs(tok: Tokenizer | null, tokens: ChoiceOutput['tokens']) {
  return {
    tokens: tokens.map((t) => tokenStr(tok, t.token)),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((x) => [tokenStr(tok, x.token), x.logprob]))),
    text_offset: tokens.map((t) => t.offset),
  };
}

/**
 * Chat logprobs: {content: [{token, logprob, bytes, top_logprobs}]}. `bytes` are the token's own
 * bytes (tokenBytes), so the bytes of all tokens join to the content's UTF-8 even where a
 * character is split across tokens (whose `token` strings then hold U+FFFD).
 */
export function chatLogprobs(tok: Tokenizer | null, tokens: ChoiceOutput['tokens']) {
  const entry = (id: number, logprob: number) => {
    const token = tokenStr(tok, id);
    return { token, logprob, bytes: tok ? tok.tokenBytes(id) : [...Buffer.from(token, 'utf8')] };
  };
  return {
    content: tokens.map((t) => ({ ...entry(t.token, t.logprob), top_logprobs: t.top.map((x) => entry(x.token, x.logprob)) })),
  };
}
