/**
 * Chat `tools` and `tool_choice`: the request fields checked, and a constrained tool call's text
 * (lib/constrain/tool_call.ts: `{"name": ..., "arguments": {...}}`) turned back into OpenAI's
 * `tool_calls`, whole or as the stream deltas the official client reads: first
 * `{index, id, type: "function", function: {name, arguments: ""}}` once the name is generated, then
 * `{index, function: {arguments: "<more>"}}` pieces as the arguments grow (the wrapper's closing
 * brace held back until the end).
 *
 * @example
 *   const tc = new ToolCallText('call_1');
 *   tc.push('{"name": "f", "arguments": {"a"');   // [{index: 0, id: 'call_1', type: 'function', function: {name: 'f', arguments: ''}}, ...]
 *   tc.finish('stop');                             // { delta, call: {id, type, function: {name: 'f', arguments: '{"a": 1}'}} }
 */
import { randomBytes } from 'crypto';

import type { ToolFunction } from '../constrain/tool_call';
import * as v from '../validate';
import { badParam } from './errors';

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments: string };
}

/** What the request's tools ask for. */
export interface ToolPlan {
  /** The functions the output must call (tool_choice "required": all; a named function: that one); null: no forced call. */
  forced: ToolFunction[] | null;
  /** The tools as the chat template receives them (tool_choice "auto"), else null. */
  templateTools: unknown[] | null;
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Checks `tools` and `tool_choice` of a chat request. */
export function parseTools(tools: unknown, choice: unknown): ToolPlan {
  const fns: ToolFunction[] = [];
  if (tools !== undefined) {
    if (!Array.isArray(tools) || tools.length === 0 || tools.length > 128)
      throw badParam('tools', 'must be an array of 1 to 128 {type: "function", function: {name, description, parameters}}');
    tools.forEach((t, i) => {
      const f = v.is.object(t) ? t.function : undefined;
      if (!v.is.object(t) || t.type !== 'function' || !v.is.object(f))
        throw badParam(`tools[${i}]`, 'must be {type: "function", function: {name, description, parameters}}');
      if (typeof f.name !== 'string' || !NAME.test(f.name))
        throw badParam(`tools[${i}].function.name`, 'must be 1 to 64 letters, digits, _ or -');
      if (fns.some((x) => x.name === f.name)) throw badParam(`tools[${i}].function.name`, `declares '${f.name}' twice`);
      if (f.parameters !== undefined && f.parameters !== null && !v.is.object(f.parameters))
        throw badParam(`tools[${i}].function.parameters`, 'must be a JSON schema object');
      fns.push({ name: f.name, parameters: f.parameters ?? undefined });
    });
  }
  const c = choice ?? (tools !== undefined ? 'auto' : 'none');
  if (c === 'none') return { forced: null, templateTools: null };
  if (c === 'auto') return { forced: null, templateTools: tools === undefined ? null : (tools as unknown[]) };
  if (c === 'required') {
    if (fns.length === 0) throw badParam('tool_choice', "is 'required' but the request declares no tools");
    return { forced: fns, templateTools: tools as unknown[] };
  }
  const named = v.is.object(c) && c.type === 'function' && v.is.object(c.function) ? c.function.name : undefined;
  if (typeof named !== 'string')
    throw badParam('tool_choice', `must be 'none', 'auto', 'required' or {type: "function", function: {name}}`);
  const fn = fns.find((f) => f.name === named);
  if (!fn) throw badParam('tool_choice', `names the function '${named.slice(0, 64)}', which 'tools' does not declare`);
  return { forced: [fn], templateTools: tools as unknown[] };
}

export const newToolCallId = (): string => `call_${randomBytes(12).toString('hex')}`;

// (the arguments' first character must be there: whitespace before it may still be growing)
const HEAD = /^\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)/;

/** One choice's constrained tool-call text, read as it grows. */
export class ToolCallText {
  private text = '';
  private name: string | null = null;
  private argsStart = 0;
  /** Characters of the arguments already sent as deltas. */
  private sent = 0;

  constructor(readonly id: string) {}

  /** The deltas that the new text completes. */
  push(piece: string): ToolCallDelta[] {
    this.text += piece;
    const out: ToolCallDelta[] = [];
    if (this.name === null) {
      const m = HEAD.exec(this.text);
      if (!m) return out;
      this.name = JSON.parse(`"${m[1]}"`) as string;
      this.argsStart = m[0].length;
      out.push({ index: 0, id: this.id, type: 'function', function: { name: this.name, arguments: '' } });
    }
    // the wrapper's closing brace (and whitespace before it) may be what the text ends with: hold it back
    const body = this.text.slice(this.argsStart).replace(/[\s}]*$/, '');
    if (body.length > this.sent) {
      out.push({ index: 0, function: { arguments: body.slice(this.sent) } });
      this.sent = body.length;
    }
    return out;
  }

  /**
   * At the end of the choice: the last delta and the whole call (null when the text ended before
   * the function's name: then `text` is what was generated). `complete`: the grammar finished (the
   * wrapper's brace is there to drop); else the arguments are cut where the text ended.
   */
  finish(complete: boolean): { delta: ToolCallDelta | null; call: ToolCall | null; text: string } {
    if (this.name === null) return { delta: null, call: null, text: this.text };
    let args = this.text.slice(this.argsStart);
    if (complete) args = args.replace(/\s*\}$/, '');
    const rest = args.slice(this.sent);
    this.sent = args.length;
    return {
      delta: rest ? { index: 0, function: { arguments: rest } } : null,
      call: { id: this.id, type: 'function', function: { name: this.name, arguments: args } },
      text: this.text,
    };
  }
}

type StreamChoice = Record<string, unknown>;

/**
 * A chat request's choices whose output is a forced tool call: the stream's choice objects and the
 * whole response's message and finish_reason ("tool_calls" when the call is complete).
 */
export class ToolCallChoices {
  private readonly texts: ToolCallText[];
  private readonly calls: (ToolCall | null)[];
  private readonly rest: string[];

  constructor(n: number) {
    this.texts = Array.from({ length: n }, () => new ToolCallText(newToolCallId()));
    this.calls = new Array<ToolCall | null>(n).fill(null);
    this.rest = new Array<string>(n).fill('');
  }

  private static chunk(index: number, delta: ToolCallDelta): StreamChoice {
    return { index, delta: { tool_calls: [delta] }, logprobs: null, finish_reason: null };
  }

  /** The stream chunks of choice `index`'s new text. */
  token(index: number, text: string): StreamChoice[] {
    return this.texts[index].push(text).map((d) => ToolCallChoices.chunk(index, d));
  }

  /** The stream chunks that end choice `index` (`reason` is the scheduler's: 'stop' when the grammar finished). */
  finish(index: number, text: string, reason: 'stop' | 'length'): StreamChoice[] {
    const out = this.token(index, text);
    const f = this.texts[index].finish(reason === 'stop');
    this.calls[index] = f.call;
    if (f.delta) out.push(ToolCallChoices.chunk(index, f.delta));
    // cut before the function's name: what was generated goes out as content
    if (!f.call) this.rest[index] = f.text;
    const delta = f.call ? {} : { content: f.text };
    out.push({ index, delta, logprobs: null, finish_reason: this.finishReason(index, reason) });
    return out;
  }

  finishReason(index: number, reason: string | null): string | null {
    return reason === 'stop' && this.calls[index] ? 'tool_calls' : reason;
  }

  /** The whole response's message of choice `index`. */
  message(index: number): { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] } {
    const call = this.calls[index];
    return call ? { role: 'assistant', content: null, tool_calls: [call] } : { role: 'assistant', content: this.rest[index] };
  }
}
