/**
 * The OpenAI request and response shapes of /v1/completions and /v1/chat/completions: request
 * validation (every bad field is a 400 naming it), prompt tokenisation (422 over the limit), and
 * the JSON of responses and SSE chunks exactly as the official `openai` client reads them.
 *
 * Supported fields: model, prompt (string, strings, token ids, lists of token ids) / messages,
 * max_tokens (max_completion_tokens), temperature, top_p, n, stop, seed, stream,
 * stream_options.include_usage, logprobs (+ top_logprobs for chat), presence_penalty,
 * frequency_penalty, logit_bias, user; extensions top_k, min_p, repetition_penalty and
 * `simba` (e.g. {"flops": 0.6}: prune this request's prompt); structured output (structured.ts):
 * response_format, chat tools / tool_choice, extensions regex, choice and `grammar` (GBNF text, as
 * llama-server names it): every choice's text follows the one grammar they make. Unknown fields are ignored.
 *
 * This layer checks only the HTTP shape (JSON null is a field left out, snake_case names, OpenAI's
 * defaults); the values go to the library's own checks (samplingParams, checkSimba, lib/validate.ts)
 * and one of their SimbaErrors becomes a 400 whose `param` is the field. The Simba plan checkSimba
 * makes is the one the engine runs.
 *
 * @example
 *   const spec = parseCompletion(body, ctx);     // throws ApiError
 *   const json = completionResponse(spec, id, created, choices, usage);
 */
import type { ServerResponse } from 'http';

import { checkSimba, rngFromSeed, type SamplingParams, type SimbaOptions, type SimbaPlan, type Tokenizer } from '../engine/lm';
import type { StreamDecoder } from '../checkpoint/tokenizer';
import type { ChatMessage, ChatTemplate } from '../checkpoint/chat_template';
import { compileCached } from '../constrain/grammar';
import { isSimbaError } from '../errors';
import { samplingParams, type SamplerKey } from '../generate/sampler';
import { LIMITS } from '../limits';
import type { MambaConfig } from '../types';
import * as v from '../validate';
import { ApiError, asParam, badParam, notFound } from './errors';
import { parseStructured, type StructuredSpec } from './structured';
import type { ToolPlan } from './tool_calls';

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
  /** The Simba plan each prompt runs with (the server-wide default leaves out prompts it cannot prune). */
  promptSimba: (SimbaPlan | undefined)[];
  /** With a server-wide Simba default: what each prompt got ("pruned", "dense (prompt too short)"), for the x-simba header. */
  simbaNote: string | null;
  /** Fresh sampling params of choice j (seed + j when a seed was given). */
  sampling(j: number): SamplingParams;
  /** The GBNF grammar of response_format / regex / choice / grammar / a forced tool call (structured.ts), or undefined. */
  grammar: string | undefined;
  /** Chat tools and tool_choice (null without tools). */
  tools: ToolPlan | null;
}

type Body = Record<string, unknown>;

/** The request field names of the sampler's options. */
const SAMPLER_FIELDS: Record<Exclude<SamplerKey, 'logprobs'>, string> = {
  temperature: 'temperature',
  topK: 'top_k',
  topP: 'top_p',
  minP: 'min_p',
  presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty',
  repetitionPenalty: 'repetition_penalty',
  logitBias: 'logit_bias',
  seed: 'seed',
};

/** A body field; JSON null is the field left out (the official clients send null for unset fields). */
const field = (b: Body, key: string): unknown => (b[key] === null ? undefined : b[key]);

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

/** The most prompt tokens a request takes (fewer with the client's own Simba pruning). */
function promptLimit(ctx: ParseContext, simba: SimbaOptions | undefined, fromServer: boolean): number {
  return simba && !fromServer ? Math.min(ctx.maxPromptTokens, LIMITS.simbaTokens) : ctx.maxPromptTokens;
}

interface PromptSimba {
  simba: SimbaPlan | undefined;
  note: string | null;
}

/**
 * 422 when the prompt is too long; the Simba plan it runs with. A client's own `simba` that cannot
 * prune the prompt is a 400; the server-wide default applies only where it can (a prompt too short
 * or too long for it runs dense, and the note says so).
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
  if (!simba) return { simba: undefined, note: null };
  if (!fromServer) return { simba: asParam('simba', () => checkSimba(ctx.config, ids.length, simba, '')), note: null };
  try {
    return { simba: checkSimba(ctx.config, ids.length, simba, ''), note: 'pruned' };
  } catch (e) {
    if (!isSimbaError(e, 'E_ARG')) throw e;
    return { simba: undefined, note: ids.length > LIMITS.simbaTokens ? 'dense (prompt too long)' : 'dense (prompt too short)' };
  }
}

/** The spec's per-prompt Simba fields. */
function simbaFields(runs: PromptSimba[]): Pick<GenerationSpec, 'promptSimba' | 'simbaNote'> {
  const notes = runs.map((r) => r.note);
  return { promptSimba: runs.map((r) => r.simba), simbaNote: notes.every((x) => x !== null) ? notes.join(', ') : null };
}

/** Completions: `logprobs` (0..20); chat: `logprobs` (a boolean) and `top_logprobs` (0..20). null: none. */
function logprobsField(b: Body, kind: 'completion' | 'chat'): { name: string; value: unknown; on: boolean } {
  if (kind === 'completion') return { name: 'logprobs', value: field(b, 'logprobs'), on: field(b, 'logprobs') !== undefined };
  const on = asParam('logprobs', () => v.bool('', 'logprobs', field(b, 'logprobs'))) ?? false;
  const top = field(b, 'top_logprobs');
  if (top !== undefined && !on) throw badParam('top_logprobs', 'needs logprobs: true');
  return { name: 'top_logprobs', value: on ? (top ?? 0) : undefined, on };
}

/** The sampling fields as the library's sampler options (OpenAI's defaults), checked by samplingParams. */
function sampling(b: Body, ctx: ParseContext, kind: 'completion' | 'chat', structured: StructuredSpec) {
  const lp = logprobsField(b, kind);
  const o: Partial<Record<SamplerKey, unknown>> = {};
  for (const [key, name] of Object.entries(SAMPLER_FIELDS)) o[key as SamplerKey] = field(b, name);
  o.temperature ??= 1;
  o.topP ??= 1;
  // top_k -1 is "off" in the servers clients also talk to; the sampler's off is 0
  o.topK = o.topK === -1 || o.topK === undefined ? 0 : o.topK;
  o.logprobs = lp.value;
  const limit = ctx.tokenizer ? Math.min(ctx.tokenizer.vocabSize, ctx.config.vocabSize) : 0;
  const { seed, ...params } = asParam(null, () =>
    samplingParams(o, '', ctx.config.vocabSize, limit, { ...SAMPLER_FIELDS, logprobs: lp.name }),
  );
  const grammar = compiledGrammar(structured, ctx);
  return {
    logprobs: lp.on ? params.logprobs! : null,
    // each choice its own matcher
    sampling: (j: number): SamplingParams => ({
      ...params,
      rng: rngFromSeed(seed + j),
      ...(grammar ? { matcher: grammar.matcher() } : {}),
    }),
  };
}

/** The request's grammar (structured.ts: from grammar, response_format, regex, choice or a forced tool call) compiled for the served tokenizer (cached by text), or undefined. */
function compiledGrammar(structured: StructuredSpec, ctx: ParseContext) {
  const gbnf = structured.grammar;
  if (gbnf === undefined) return undefined;
  const param = structured.grammarField ?? 'grammar';
  if (!ctx.tokenizer) throw badParam(param, 'needs a tokenizer: this model has none');
  const tok = ctx.tokenizer;
  return asParam(param, () => compileCached('', gbnf, tok, tok.eosTokenId ?? ctx.config.eosTokenId));
}

/** The `model` field: required, and the model this server serves (404 otherwise). */
export function checkModelField(b: Body, modelName: string): void {
  if (typeof b.model !== 'string') throw badParam('model', 'is required (a string: see GET /v1/models)', 'missing_model');
  if (b.model !== modelName)
    throw notFound(
      `the model '${b.model.slice(0, 100)}' does not exist (this server serves '${modelName}')`,
      'model_not_found',
      'model',
    );
}

/** Sends the head of an SSE response now (not with the first event: a queued request's client knows it was accepted). */
export function startEventStream(raw: ServerResponse): void {
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  raw.flushHeaders();
}

/** The fields both routes share. */
function common(
  b: Body,
  ctx: ParseContext,
  kind: 'completion' | 'chat',
): Omit<GenerationSpec, 'prompts' | 'kind' | 'promptSimba' | 'simbaNote'> & {
  simba: SimbaOptions | undefined;
  simbaFromServer: boolean;
} {
  checkModelField(b, ctx.modelName);
  const maxKey = kind === 'chat' && field(b, 'max_completion_tokens') !== undefined ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens =
    asParam(maxKey, () => v.int('', maxKey, field(b, maxKey), 1, ctx.maxTokensLimit)) ??
    Math.min(kind === 'chat' ? 256 : 16, ctx.maxTokensLimit);
  const n = asParam('n', () => v.int('', 'n', field(b, 'n'), 1, ctx.maxN)) ?? 1;
  if (field(b, 'best_of') !== undefined && b.best_of !== n)
    throw badParam('best_of', 'is not supported (other than equal to n)', 'unsupported');
  if (b.echo === true) throw badParam('echo', 'is not supported', 'unsupported');
  if (field(b, 'suffix') !== undefined) throw badParam('suffix', 'is not supported', 'unsupported');
  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) stop = b.stop as string[];
  else if (field(b, 'stop') !== undefined) throw badParam('stop', 'must be a string or an array of up to 4 strings');
  if (stop.length > 4 || stop.some((s) => typeof s !== 'string' || s.length === 0 || s.length > 1000))
    throw badParam('stop', 'must be a string or an array of up to 4 non-empty strings');
  const stream = asParam('stream', () => v.bool('', 'stream', field(b, 'stream'))) ?? false;
  let includeUsage = false;
  const so = field(b, 'stream_options');
  if (so !== undefined) {
    if (!v.is.object(so)) throw badParam('stream_options', 'must be an object');
    includeUsage =
      asParam('include_usage', () => v.bool('', 'stream_options.include_usage', field(so, 'include_usage'))) ?? false;
  }
  const structured = parseStructured(b, kind);
  let simba = ctx.defaultSimba;
  if (b.simba === null) simba = undefined;
  else if (b.simba !== undefined) {
    if (!v.is.object(b.simba)) throw badParam('simba', 'must be an object of Simba options, e.g. {"flops": 0.6}');
    simba = b.simba as SimbaOptions;
  }
  return {
    n,
    maxTokens,
    stream,
    includeUsage,
    stop,
    simba,
    simbaFromServer: simba !== undefined && b.simba === undefined,
    ...structured,
    ...sampling(b, ctx, kind, structured),
  };
}

/** Validates a /v1/completions body. */
export async function parseCompletion(body: unknown, ctx: ParseContext): Promise<GenerationSpec> {
  if (!v.is.object(body))
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
  return { ...c, ...simba, kind: 'completion', prompts };
}

/** Validates a /v1/chat/completions body and renders its messages with the chat template. */
export async function parseChat(body: unknown, ctx: ParseContext): Promise<GenerationSpec> {
  if (!v.is.object(body))
    throw new ApiError(400, 'the request body must be a JSON object', 'invalid_request_error', null, 'invalid_body');
  const c = common(body, ctx, 'chat');
  const m = body.messages;
  if (!Array.isArray(m) || m.length === 0) throw badParam('messages', 'is required: a non-empty array of {role, content}');
  const messages: ChatMessage[] = m.map((x, i) => {
    if (!v.is.object(x) || typeof x.role !== 'string' || !['system', 'developer', 'user', 'assistant', 'tool'].includes(x.role))
      throw badParam(`messages[${i}].role`, "must be one of 'system', 'developer', 'user', 'assistant', 'tool'");
    let content: string;
    if (typeof x.content === 'string') content = x.content;
    else if (x.content === null && x.role === 'assistant') content = '';
    else if (
      Array.isArray(x.content) &&
      x.content.every((p) => v.is.object(p) && p.type === 'text' && typeof p.text === 'string')
    )
      content = (x.content as { text: string }[]).map((p) => p.text).join('');
    else throw badParam(`messages[${i}].content`, 'must be a string or an array of {type: "text", text} parts');
    const msg: ChatMessage = { role: x.role, content };
    if (Array.isArray(x.tool_calls)) msg.tool_calls = x.tool_calls;
    if (typeof x.tool_call_id === 'string') msg.tool_call_id = x.tool_call_id;
    return msg;
  });
  const ids = await encode(
    ctx.chatTemplate.render(messages, c.tools?.templateTools ?? undefined),
    ctx,
    'messages',
    promptLimit(ctx, c.simba, c.simbaFromServer),
  );
  const simba = simbaFields([checkLength(ids, ctx, 'messages', c.simba, c.simbaFromServer)]);
  return { ...c, ...simba, kind: 'chat', prompts: [ids] };
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
