/**
 * The OpenAI Responses API: POST /v1/responses (JSON, or SSE with stream: true: response.created,
 * response.in_progress, response.output_item.added, response.content_part.added,
 * response.output_text.delta..., response.output_text.done, response.content_part.done,
 * response.output_item.done, then response.completed, or response.incomplete when
 * max_output_tokens cut it), GET /v1/responses/{id}, DELETE /v1/responses/{id}. A stream whose
 * client stops reading is paused, and dropped after streamStallMs (../backpressure.ts).
 *
 * With store (the default) the response keeps its final state (store.ts); a follow-up naming it in
 * previous_response_id restores that state on any replica and prefills only its new input
 * (conversation.ts): usage.input_tokens counts the whole conversation, input_tokens_details
 * .cached_tokens the part the state covered. An unknown or expired id is a 404.
 *
 * @example
 *   registerResponses(app, { live: () => server.live(), store: () => responses, retryAfter: 1, streamStallMs: 60000 });
 */
import { randomBytes } from 'crypto';
import type { ServerResponse } from 'http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { ChatMessage } from '../../checkpoint/chat_template';
import { samplingParams } from '../../generate/sampler';
import { backpressure } from '../backpressure';
import { ApiError, badParam, notFound, refused, toApiError, unavailable } from '../errors';
import { startEventStream, type ParseContext } from '../openai';
import { SchedulerRejection, type RequestEvent, type RequestHandle, type Scheduler } from '../scheduler';
import { continuationText, withInstructions } from './conversation';
import { parseResponseRequest, type ResponseRequest } from './parse';
import { StoreUnavailable, type ResponseStore, type StoredResponse } from './store';

export interface ResponsesDeps {
  /** The scheduler and parse context, or the 503 of a server not ready. */
  live(): { sched: Scheduler; ctx: ParseContext };
  store(): ResponseStore;
  retryAfter: number;
  /** A stream whose client reads nothing for this many ms is dropped (backpressure.ts). */
  streamStallMs: number;
}

const newId = (prefix: string) => `${prefix}_${randomBytes(16).toString('hex')}`;

/** The store's answer; 503 when it cannot answer. */
async function guarded<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof StoreUnavailable) throw unavailable(e.message, 'state_store_unreachable');
    throw e;
  }
}

export function registerResponses(app: FastifyInstance, deps: ResponsesDeps): void {
  app.post('/v1/responses', (req, reply) => create(deps, req, reply));
  app.get('/v1/responses/:id', async (req) => {
    deps.live();
    const { id } = req.params as { id: string };
    const r = await guarded(() => deps.store().get(id));
    if (!r) throw missing(id, null);
    return r.object;
  });
  app.delete('/v1/responses/:id', async (req) => {
    deps.live();
    const { id } = req.params as { id: string };
    if (!(await guarded(() => deps.store().delete(id)))) throw missing(id, null);
    return { id, object: 'response', deleted: true };
  });
}

const missing = (id: string, param: string | null) =>
  notFound(`no response with id '${id.slice(0, 100)}' (unknown, deleted, expired, or not stored)`, 'response_not_found', param);

/** The prompt of this turn: the conversation's tokens so far, then the new input's. */
async function promptOf(spec: ResponseRequest, prev: StoredResponse | null, ctx: ParseContext) {
  if (!ctx.tokenizer) throw badParam('input', 'needs a tokenizer: this model has none');
  const turn = withInstructions(spec.instructions, spec.input);
  const text = prev ? continuationText(ctx.chatTemplate, prev.messages, turn) : ctx.chatTemplate.render(turn);
  const history = prev?.tokens ?? [];
  const room = ctx.maxPromptTokens - history.length;
  const ids = room > 0 ? await ctx.tokenizer.encodeAsync(text, { maxTokens: room + 1 }) : [];
  const total = history.length + ids.length;
  if (total > ctx.maxPromptTokens || room <= 0)
    throw new ApiError(
      422,
      `the conversation has more than ${ctx.maxPromptTokens} tokens, the most this server takes`,
      'invalid_request_error',
      'input',
      'context_length_exceeded',
    );
  if (ids.length === 0) throw badParam('input', 'renders to no tokens');
  return { turn, prompt: [...history, ...ids] };
}

async function create(deps: ResponsesDeps, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const { sched, ctx } = deps.live();
  const spec = parseResponseRequest(req.body, ctx);
  const prev = spec.previousId ? await guarded(() => deps.store().get(spec.previousId!)) : null;
  if (spec.previousId && !prev) throw missing(spec.previousId, 'previous_response_id');
  const { turn, prompt } = await promptOf(spec, prev, ctx);
  const limit = Math.min(ctx.tokenizer!.vocabSize, ctx.config.vocabSize);
  const params = samplingParams({ temperature: spec.temperature, topP: spec.topP, topK: 0 }, '', ctx.config.vocabSize, limit);
  const run = new ResponseRun(spec, ctx.modelName, prev, turn, prompt, deps.store());
  let handle: RequestHandle;
  try {
    handle = sched.submit({
      prompt,
      maxTokens: spec.maxOutputTokens,
      sampling: [params],
      keepState: spec.store,
      initialState: prev?.state ?? undefined,
      onEvent: (ev) => run.event(ev),
    });
  } catch (e) {
    if (e instanceof SchedulerRejection) throw refused(e.kind, e.message, deps.retryAfter);
    throw e;
  }
  reply.raw.on('close', () => {
    if (!run.ended) {
      handle.cancel();
      run.abort('the client closed the connection');
    }
  });
  void handle.done.then((o) => {
    if (o === 'cancelled') run.abort('the request was cancelled (the server is shutting down)');
  });
  if (spec.stream) {
    reply.hijack();
    const release = backpressure(reply.raw, run, [handle], () => handle.cancel(), deps.streamStallMs);
    run.startStream(reply.raw);
    await run.finished;
    release();
    return undefined;
  }
  if (!(await run.finished)) throw run.error ?? new ApiError(500, 'the request failed', 'server_error');
  return reply.send(run.object('final'));
}

/** One response: collects the scheduler's events, streams them as Responses events, stores the result. */
class ResponseRun {
  readonly id = newId('resp');
  private readonly msgId = newId('msg');
  private readonly created = Math.floor(Date.now() / 1000);
  private text = '';
  private readonly output: number[] = [];
  private reason: 'stop' | 'length' | null = null;
  private usage = { input: 0, cached: 0, output: 0 };
  private raw: ServerResponse | null = null;
  private seq = 0;
  /** Called when a write leaves the client's socket buffer full (backpressure.ts). */
  onFull: (() => void) | null = null;
  ended = false;
  error: ApiError | null = null;
  readonly finished: Promise<boolean>;
  private resolve!: (ok: boolean) => void;

  constructor(
    private readonly spec: ResponseRequest,
    private readonly model: string,
    private readonly prev: StoredResponse | null,
    private readonly turn: ChatMessage[],
    private readonly prompt: number[],
    private readonly store: ResponseStore,
  ) {
    this.finished = new Promise((res) => (this.resolve = res));
  }

  private get status(): 'completed' | 'incomplete' {
    return this.reason === 'length' ? 'incomplete' : 'completed';
  }

  private message(done: boolean): Record<string, unknown> {
    return {
      type: 'message',
      id: this.msgId,
      status: done ? this.status : 'in_progress',
      role: 'assistant',
      content: done ? [this.part()] : [],
    };
  }

  private part(): Record<string, unknown> {
    return { type: 'output_text', text: this.text, annotations: [], logprobs: [] };
  }

  /** The response object: in progress (no output yet) or final. */
  object(stage: 'in_progress' | 'final'): Record<string, unknown> {
    const done = stage === 'final';
    const s = this.spec;
    return {
      id: this.id,
      object: 'response',
      created_at: this.created,
      status: done ? this.status : 'in_progress',
      error: null,
      incomplete_details: done && this.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
      instructions: s.instructions,
      max_output_tokens: s.maxOutputTokens,
      model: this.model,
      output: done ? [this.message(true)] : [],
      parallel_tool_calls: false,
      previous_response_id: s.previousId,
      reasoning: { effort: null, summary: null },
      store: s.store,
      temperature: s.temperature,
      text: { format: { type: 'text' } },
      tool_choice: 'none',
      tools: [],
      top_p: s.topP,
      truncation: 'disabled',
      usage: done
        ? {
            input_tokens: this.usage.input,
            input_tokens_details: { cached_tokens: this.usage.cached },
            output_tokens: this.usage.output,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: this.usage.input + this.usage.output,
          }
        : null,
      user: null,
      metadata: s.metadata,
    };
  }

  private send(type: string, data: Record<string, unknown>): void {
    if (!this.raw || this.raw.writableEnded || this.raw.destroyed) return;
    if (!this.raw.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.seq++, ...data })}\n\n`))
      this.onFull?.();
  }

  private readonly at = () => ({ item_id: this.msgId, output_index: 0, content_index: 0 });

  startStream(raw: ServerResponse): void {
    this.raw = raw;
    startEventStream(raw);
    this.send('response.created', { response: this.object('in_progress') });
    this.send('response.in_progress', { response: this.object('in_progress') });
    this.send('response.output_item.added', { output_index: 0, item: this.message(false) });
    this.send('response.content_part.added', { ...this.at(), part: { type: 'output_text', text: '', annotations: [] } });
  }

  event(ev: RequestEvent): void {
    if (this.ended) return;
    if (ev.type === 'token') {
      this.output.push(ev.token);
      this.text += ev.text;
      if (ev.text) this.send('response.output_text.delta', { ...this.at(), delta: ev.text, logprobs: [] });
    } else if (ev.type === 'finish') {
      this.text += ev.text;
      this.reason = ev.reason;
      if (ev.text) this.send('response.output_text.delta', { ...this.at(), delta: ev.text, logprobs: [] });
    } else if (ev.type === 'done') {
      this.usage = { input: ev.usage.promptTokens, cached: ev.usage.cachedTokens, output: ev.usage.completionTokens };
      void this.complete(ev.final?.state ?? null);
    } else {
      this.error = toApiError(ev.error);
      this.end(false);
    }
  }

  /** Stores the response (store: true), then ends it: the id is found as soon as the client has it. */
  private async complete(state: Buffer | null): Promise<void> {
    if (this.spec.store)
      try {
        await this.store.put({
          id: this.id,
          object: this.object('final'),
          messages: [...(this.prev?.messages ?? []), ...this.turn, { role: 'assistant', content: this.text }],
          tokens: [...this.prompt, ...this.output],
          state,
        });
      } catch (e) {
        this.error = toApiError(e);
        return this.end(false);
      }
    this.end(true);
  }

  abort(why: string): void {
    if (this.ended) return;
    this.error = unavailable(why, 'cancelled');
    this.end(false);
  }

  private end(ok: boolean): void {
    if (this.ended) return;
    this.ended = true;
    if (this.raw && !this.raw.writableEnded && !this.raw.destroyed) {
      if (ok) {
        this.send('response.output_text.done', { ...this.at(), text: this.text, logprobs: [] });
        this.send('response.content_part.done', { ...this.at(), part: this.part() });
        this.send('response.output_item.done', { output_index: 0, item: this.message(true) });
        this.send(this.status === 'completed' ? 'response.completed' : 'response.incomplete', { response: this.object('final') });
      } else {
        const e = this.error ?? new ApiError(500, 'the request failed', 'server_error');
        this.send('error', { code: e.code, message: e.message, param: e.param });
      }
      this.raw.end();
    }
    this.resolve(ok);
  }
}
