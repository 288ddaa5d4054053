/**
 * The request body of POST /v1/responses, checked: every bad field is a 400 naming it, unknown
 * fields too (this route is new: strict from the start).
 *
 * Supported: model, input (a string, or messages: {role, content} with content a string or
 * input_text / output_text parts, optionally {type: "message"}), instructions,
 * previous_response_id, store (default true), max_output_tokens, temperature, top_p, stream,
 * metadata (up to 16 string values), user; text ({format: {type: "text"}}), truncation
 * ("disabled"), tools ([]), tool_choice ("none" / "auto"), parallel_tool_calls, which only accept
 * what this server does anyway.
 *
 * @example
 *   const spec = parseResponseRequest(req.body, { modelName: 'm', maxTokensLimit: 4096 });
 */
import type { ChatMessage } from '../../checkpoint/chat_template';
import * as v from '../../validate';
import { ApiError, badParam } from '../errors';
import { checkModelField } from '../openai';

export interface ResponseRequest {
  input: ChatMessage[];
  instructions: string | null;
  previousId: string | null;
  store: boolean;
  maxOutputTokens: number;
  temperature: number;
  topP: number;
  stream: boolean;
  metadata: Record<string, string>;
}

const KNOWN = [
  'model',
  'input',
  'instructions',
  'previous_response_id',
  'store',
  'max_output_tokens',
  'temperature',
  'top_p',
  'stream',
  'metadata',
  'user',
  'text',
  'truncation',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
];
const ROLES = ['user', 'system', 'developer', 'assistant'];
const PART_TYPES = ['input_text', 'output_text', 'text'];

type Body = Record<string, unknown>;
const field = (b: Body, k: string): unknown => (b[k] === null ? undefined : b[k]);

function wrap<T>(param: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const m = e instanceof Error ? e.message : String(e);
    throw new ApiError(400, m, 'invalid_request_error', param, 'invalid_value');
  }
}

function content(c: unknown, param: string): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c) && c.every((p) => v.is.object(p) && PART_TYPES.includes(p.type as string) && typeof p.text === 'string'))
    return (c as { text: string }[]).map((p) => p.text).join('');
  throw badParam(param, 'must be a string or an array of {type: "input_text", text} parts');
}

function messages(input: unknown): ChatMessage[] {
  if (typeof input === 'string') {
    if (input.length === 0) throw badParam('input', 'must not be empty');
    return [{ role: 'user', content: input }];
  }
  if (!Array.isArray(input) || input.length === 0)
    throw badParam('input', 'is required: a string or a non-empty array of messages {role, content}');
  return input.map((m, i) => {
    if (!v.is.object(m) || (m.type !== undefined && m.type !== 'message'))
      throw badParam(`input[${i}]`, 'must be a message {role, content} (other item types are not supported)', 'unsupported');
    if (typeof m.role !== 'string' || !ROLES.includes(m.role))
      throw badParam(`input[${i}].role`, `must be one of ${ROLES.map((r) => `'${r}'`).join(', ')}`);
    return { role: m.role, content: content(m.content, `input[${i}].content`) };
  });
}

/** Fields accepted only with the value this server implements anyway. */
function onlyDefaults(b: Body): void {
  const text = field(b, 'text');
  if (text !== undefined) {
    const f = v.is.object(text) ? (text.format as unknown) : undefined;
    const ok = v.is.object(text) && (f === undefined || (v.is.object(f) && f.type === 'text'));
    if (!ok) throw badParam('text', 'supports only {format: {type: "text"}}', 'unsupported');
  }
  const trunc = field(b, 'truncation');
  if (trunc !== undefined && trunc !== 'disabled') throw badParam('truncation', "supports only 'disabled'", 'unsupported');
  const tools = field(b, 'tools');
  if (tools !== undefined && !(Array.isArray(tools) && tools.length === 0))
    throw badParam('tools', 'are not supported (send [] or leave it out)', 'unsupported');
  const choice = field(b, 'tool_choice');
  if (choice !== undefined && choice !== 'none' && choice !== 'auto')
    throw badParam('tool_choice', "supports only 'none' or 'auto' (no tools)", 'unsupported');
  wrap('parallel_tool_calls', () => v.bool('', 'parallel_tool_calls', field(b, 'parallel_tool_calls')));
  wrap('user', () => v.string('', 'user', field(b, 'user')));
}

function metadata(m: unknown): Record<string, string> {
  if (m === undefined) return {};
  if (
    !v.is.object(m) ||
    Object.keys(m).length > 16 ||
    Object.entries(m).some(([k, x]) => k.length > 64 || typeof x !== 'string' || x.length > 512)
  )
    throw badParam('metadata', 'must be an object of at most 16 string values (keys up to 64, values up to 512 characters)');
  return { ...(m as Record<string, string>) };
}

export function parseResponseRequest(body: unknown, ctx: { modelName: string; maxTokensLimit: number }): ResponseRequest {
  if (!v.is.object(body))
    throw new ApiError(400, 'the request body must be a JSON object', 'invalid_request_error', null, 'invalid_body');
  for (const k of Object.keys(body))
    if (!KNOWN.includes(k))
      throw badParam(k, `is not a parameter of /v1/responses (known: ${KNOWN.join(', ')})`, 'unknown_parameter');
  checkModelField(body, ctx.modelName);
  onlyDefaults(body);
  const instructions = wrap('instructions', () => v.string('', 'instructions', field(body, 'instructions'))) ?? null;
  const previousId =
    wrap('previous_response_id', () => v.string('', 'previous_response_id', field(body, 'previous_response_id'), true)) ?? null;
  return {
    input: messages(body.input),
    instructions,
    previousId,
    store: wrap('store', () => v.bool('', 'store', field(body, 'store'))) ?? true,
    maxOutputTokens:
      wrap('max_output_tokens', () => v.int('', 'max_output_tokens', field(body, 'max_output_tokens'), 1, ctx.maxTokensLimit)) ??
      Math.min(256, ctx.maxTokensLimit),
    temperature: wrap('temperature', () => v.number('', 'temperature', field(body, 'temperature'), 0, 2)) ?? 1,
    topP: wrap('top_p', () => v.number('', 'top_p', field(body, 'top_p'), 0, 1, true)) ?? 1,
    stream: wrap('stream', () => v.bool('', 'stream', field(body, 'stream'))) ?? false,
    metadata: metadata(field(body, 'metadata')),
  };
}
