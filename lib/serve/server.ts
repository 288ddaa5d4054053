/**
 * The OpenAI-compatible HTTP server (fastify 5): POST /v1/completions and /v1/chat/completions
 * (JSON or SSE streaming), GET /v1/models, /health, /metrics. Requests go to the Scheduler
 * (continuous batching); a client that disconnects cancels its request (within one tick).
 *
 * Errors are OpenAI-shaped (errors.ts): 400 bad JSON or parameter, 401 bearer key, 404 route or
 * model, 413 body too large, 422 prompt too long, 429 queue full (Retry-After), 503 loading or
 * shutting down. An error after a stream started is an SSE `event: error` and the stream ends.
 *
 * @example
 *   const server = await createServer({ model: loadModel(), modelName: 'brown-mamba-s' });
 *   await server.listen(8080, '127.0.0.1');
 *   process.on('SIGTERM', () => server.shutdown(30000).then(() => process.exit(0)));
 */
import { createHash, randomBytes, timingSafeEqual } from 'crypto';
import { hostname } from 'os';
import type { ServerResponse } from 'http';
import type { Duplex } from 'stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

import { backpressure } from './backpressure';
import { registerBatchRoutes } from './batch/routes';
import { openBatchService, type BatchOptions, type BatchService } from './batch/service';
import type { ChatTemplate } from '../checkpoint/chat_template';
import { chatTemplate, PLAIN_CHAT_TEMPLATE } from '../checkpoint/chat_template';
import type { LanguageModel, SimbaOptions, Tokenizer } from '../engine/lm';
import * as v from '../validate';
import { ApiError, clientError, notFound, rawErrorResponse, refused, toApiError, unavailable } from './errors';
import { Metrics } from './metrics';
import {
  chatLogprobs,
  completionLogprobs,
  parseChat,
  parseCompletion,
  startEventStream,
  TextOffsets,
  usageOf,
  type ChoiceOutput,
  type GenerationSpec,
  type ParseContext,
} from './openai';
import { PrefixCache } from './prefix_cache';
import { ToolCallChoices } from './tool_calls';
import { checkPolicyOptions, Scheduler, SchedulerRejection, type RequestEvent, type RequestHandle } from './scheduler';
import { registerResponses } from './responses/route';
import { MemoryResponseStore, RedisResponseStore, type ResponseStore } from './responses/store';
import { modelFingerprint } from './state_tier/fingerprint';
import { registerTierMetrics } from './state_tier/metrics';
import { checkStateStoreOptions, RedisStateTier, type StateStoreOptions } from './state_tier/redis_tier';

export interface ServerOptions {
  /** The model, or a promise of it (the server answers 503 until it resolves). */
  model: LanguageModel | Promise<LanguageModel>;
  /** The id clients pass as `model` (default 'simba'). */
  modelName?: string;
  /** Tokenizer for text prompts and outputs (default: the model's). */
  tokenizer?: Tokenizer | null;
  /** Chat prompt template (default: the plain template, see chat_template.ts). */
  chatTemplate?: ChatTemplate;
  maxRunning?: number;
  maxQueue?: number;
  prefillBudget?: number;
  /** Inter-token latency target in ms that sizes each tick's prefill share (default 50; 0: off). */
  itlTargetMs?: number;
  /** Prune new long prompts with Simba down to this fraction of the FLOPs while the prefill backlog exceeds the target (default: off). */
  simbaUnderLoad?: number;
  /** Prefix-state cache budget in MiB (0 = off, default 512). */
  cacheMb?: number;
  /** Prompt tokens between cache snapshots of long prompts (default 256). */
  cacheBlockTokens?: number;
  /** Require `Authorization: Bearer <key>` on /v1/*. */
  apiKey?: string;
  /** Simba pruning for every request without its own `simba` field. */
  simba?: SimbaOptions;
  /** Longest prompt in tokens (422 beyond; default 65536). */
  maxPromptTokens?: number;
  /** Largest max_tokens (default 65536). */
  maxTokens?: number;
  /** Largest request body in bytes (413 beyond; default 4 MiB). */
  bodyLimit?: number;
  /**
   * After an error answered before the body was read (413), the server still reads and discards up
   * to this many body bytes so that the client, still sending, reads the answer instead of a reset
   * connection (default 64 MiB; beyond it the connection is closed).
   */
  drainLimit?: number;
  /**
   * A stream whose client reads nothing is paused (no tokens are generated for it while its socket
   * buffer is full); after this many ms without the client reading, it is dropped (default 60000).
   */
  streamStallMs?: number;
  /** Seconds a 429 asks the client to wait (default 1). */
  retryAfter?: number;
  /** The shared state tier on Redis (state_tier/redis_tier.ts); without it, the in-process cache only. */
  stateStore?: StateStoreOptions;
  /** This replica's id in /metrics and the x-simba-replica header (default: host name and process id). */
  replicaId?: string;
  /** Where operational lines go (state store outages; default: stderr). */
  log?: (line: string) => void;
  /** The Batch API (/v1/files, /v1/batches) on this Redis; without it those routes are 404. */
  batch?: BatchOptions;
}

type State = 'loading' | 'ready' | 'failed' | 'shutting_down';

export class SimbaServer {
  readonly app: FastifyInstance;
  readonly metrics: Metrics;
  scheduler: Scheduler | null = null;
  cache: PrefixCache | null = null;
  /** The shared tier (with stateStore), once the model is loaded. */
  tier: RedisStateTier | null = null;
  /** Stored responses (Responses API): in Redis with a state store, else in process. */
  responses: ResponseStore | null = null;
  /** The model fingerprint (state_tier/fingerprint.ts), once the model is loaded. */
  fingerprint = '';
  readonly replicaId: string;
  private readonly storeOptions: ReturnType<typeof checkStateStoreOptions> | null;
  model: LanguageModel | null = null;
  /** The Batch API's stores (null: off). */
  readonly batch: BatchService | null;
  private state: State = 'loading';
  private loadError = '';
  private ctx: ParseContext | null = null;
  private readonly modelName: string;
  private readonly keyDigest: Buffer | null;
  private readonly created = Math.floor(Date.now() / 1000);
  /** Resolves when the model is loaded (rejects if loading failed). */
  readonly ready: Promise<void>;

  constructor(private readonly opts: ServerOptions) {
    checkServerOptions(opts);
    this.modelName = opts.modelName ?? 'simba';
    this.replicaId = opts.replicaId ?? `${hostname()}-${process.pid}`;
    this.storeOptions = opts.stateStore !== undefined ? checkStateStoreOptions('createServer', opts.stateStore) : null;
    this.keyDigest = opts.apiKey ? digest(opts.apiKey) : null;
    this.batch = opts.batch ? openBatchService(opts.batch, 'createServer.batch') : null;
    this.metrics = new Metrics(() => ({
      running: this.scheduler?.runningCount ?? 0,
      waiting: this.scheduler?.waitingCount ?? 0,
      slots: this.scheduler?.slotsUsed ?? 0,
      cache: this.cache?.stats() ?? null,
    }));
    registerTierMetrics(this.metrics.registry, () => ({
      replica: this.replicaId,
      model: this.modelName,
      fingerprint: this.fingerprint,
      local: this.cache?.stats() ?? null,
      redis: this.tier?.stats() ?? null,
      restored: this.scheduler?.restored ?? null,
    }));
    this.app = Fastify({
      logger: false,
      bodyLimit: opts.bodyLimit ?? 4 << 20,
      forceCloseConnections: 'idle',
      // errors raised before routing (a malformed URL, a malformed HTTP request) are OpenAI-shaped too
      frameworkErrors: (err, _req, reply) => {
        const a = toApiError(err);
        void (reply as FastifyReply).code(a.status).headers(a.headers).send(a.body());
      },
      clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
        if (err.code === 'ECONNRESET' || socket.destroyed) return;
        endThenCut(socket, rawErrorResponse(clientError(err)));
      },
    });
    this.routes();
    this.ready = Promise.resolve(opts.model).then(
      (m) => this.start(m),
      (e: unknown) => {
        this.state = 'failed';
        this.loadError = e instanceof Error ? e.message : String(e);
        throw e;
      },
    );
    this.ready.catch(() => undefined);
  }

  private async start(model: LanguageModel): Promise<void> {
    if (this.state === 'shutting_down') return;
    const o = this.opts;
    this.fingerprint = await modelFingerprint(model);
    if (this.state !== 'loading') return;
    // the lookup bound's default follows the model's state size (checked already in the constructor)
    if (o.stateStore !== undefined)
      this.tier = new RedisStateTier(
        checkStateStoreOptions('createServer', o.stateStore, model.info().stateBytes),
        this.fingerprint,
        o.log,
      );
    this.responses = this.tier
      ? new RedisResponseStore(this.tier, this.storeOptions!.responseTtlSeconds)
      : new MemoryResponseStore();
    const tokenizer = o.tokenizer !== undefined ? o.tokenizer : model.tokenizer;
    const maxRunning = o.maxRunning ?? 32;
    this.cache = new PrefixCache({ maxBytes: (o.cacheMb ?? 512) * 2 ** 20, blockTokens: o.cacheBlockTokens ?? 256 });
    this.scheduler = new Scheduler(model, {
      tokenizer,
      maxRunning,
      maxQueue: o.maxQueue ?? 256,
      prefillBudget: o.prefillBudget ?? 512,
      itlTargetMs: o.itlTargetMs,
      simbaUnderLoad: o.simbaUnderLoad,
      cache: this.cache,
      shared: this.tier,
      observer: this.metrics.observer,
    });
    this.ctx = {
      modelName: this.modelName,
      config: model.config,
      tokenizer,
      chatTemplate: o.chatTemplate ?? chatTemplate('plain', PLAIN_CHAT_TEMPLATE),
      maxPromptTokens: o.maxPromptTokens ?? 65536,
      maxTokensLimit: o.maxTokens ?? 65536,
      maxN: Math.min(16, maxRunning),
      defaultSimba: o.simba,
    };
    this.model = model;
    this.state = 'ready';
  }

  /** Listens on host:port (port 0: any free port); resolves to the base URL. */
  async listen(port = 8080, host = '127.0.0.1'): Promise<string> {
    await this.app.listen({ port, host });
    const a = this.app.server.address();
    if (a && typeof a === 'object') return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    return String(a);
  }

  /** Stops accepting (503), lets running requests finish for up to graceMs, then closes. */
  async shutdown(graceMs = 30000): Promise<void> {
    this.state = 'shutting_down';
    if (this.scheduler) await this.scheduler.close(graceMs);
    await this.tier?.close();
    await this.app.close();
    await this.batch?.close();
  }

  private live(): { sched: Scheduler; ctx: ParseContext } {
    if (this.state === 'ready' && this.scheduler && this.ctx) return { sched: this.scheduler, ctx: this.ctx };
    if (this.state === 'loading') throw unavailable('the model is still loading; retry shortly', 'model_loading');
    if (this.state === 'failed') throw unavailable(`the model failed to load: ${this.loadError}`, 'model_load_failed');
    throw unavailable('the server is shutting down', 'shutting_down');
  }

  private routes(): void {
    const app = this.app;
    app.setErrorHandler((err, req, reply) => {
      const a = toApiError(err);
      if (!req.raw.complete && reply.getHeader('connection') === 'close') return this.answerThenClose(req.raw, reply, a);
      void reply.code(a.status).headers(a.headers).send(a.body());
    });
    // JSON bodies nested beyond MAX_JSON_DEPTH are a 400 before JSON.parse builds them
    const parseJson = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
      // routes that take no body (POST /v1/batches/{id}/cancel) accept an empty one, as curl sends it
      if (body === '' && (req.routeOptions.config as { emptyBody?: boolean } | undefined)?.emptyBody === true)
        return done(null, undefined);
      if (jsonDepthExceeds(body as string, MAX_JSON_DEPTH))
        return done(
          new ApiError(
            400,
            `malformed JSON body: nested deeper than ${MAX_JSON_DEPTH} levels`,
            'invalid_request_error',
            null,
            'invalid_json',
          ),
          undefined,
        );
      parseJson(req, body as string, done);
    });
    app.setNotFoundHandler((req, reply) => {
      void reply.code(404).send(notFound(`no route ${req.method} ${req.url.split('?')[0].slice(0, 200)}`, 'unknown_url').body());
    });
    // The key is required on every route but those marked public, decided on the route the router
    // matched (not on the raw URL, which may spell the same path percent-encoded); unknown routes too.
    app.addHook('onRequest', async (req, reply: FastifyReply) => {
      reply.raw.setHeader('x-simba-replica', this.replicaId);
      if (!this.keyDigest || (req.routeOptions.config as { public?: boolean } | undefined)?.public === true) return;
      const h = req.headers.authorization;
      const m = typeof h === 'string' ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null;
      if (!m)
        throw new ApiError(
          401,
          'missing bearer token: send Authorization: Bearer <key>',
          'authentication_error',
          null,
          'missing_api_key',
        );
      if (!timingSafeEqual(digest(m[1]), this.keyDigest))
        throw new ApiError(401, 'incorrect API key provided', 'authentication_error', null, 'invalid_api_key');
    });
    app.get('/health', { config: { public: true } }, async (_req, reply) => {
      this.live();
      return reply.send({ status: 'ok', model: this.modelName });
    });
    // liveness: the process answers (also while loading); readiness: it can serve (the model is
    // loaded and the state store, when configured, has answered at least once)
    app.get('/health/live', { config: { public: true } }, async () => ({ status: 'ok', replica: this.replicaId }));
    app.get('/health/ready', { config: { public: true } }, async (_req, reply) => {
      this.live();
      if (this.tier && !this.tier.everReached)
        throw unavailable('the state store has not answered yet', 'state_store_unreachable');
      return reply.send({ status: 'ok', model: this.modelName, replica: this.replicaId });
    });
    app.get('/metrics', { config: { public: true } }, async (_req, reply) =>
      reply.type(this.metrics.contentType).send(await this.metrics.render()),
    );
    const modelObj = () => ({ id: this.modelName, object: 'model', created: this.created, owned_by: 'simba-ssm' });
    app.get('/v1/models', async () => ({ object: 'list', data: [modelObj()] }));
    app.get('/v1/models/:id', async (req) => {
      const { id } = req.params as { id: string };
      if (id !== this.modelName) throw notFound(`the model '${id.slice(0, 100)}' does not exist`, 'model_not_found', 'model');
      return modelObj();
    });
    app.post('/v1/completions', (req, reply) => this.generate('completion', req, reply));
    app.post('/v1/chat/completions', (req, reply) => this.generate('chat', req, reply));
    registerBatchRoutes(app, this.batch);
    registerResponses(app, {
      live: () => this.live(),
      store: () => this.responses!,
      retryAfter: this.opts.retryAfter ?? 1,
      streamStallMs: this.opts.streamStallMs ?? 60000,
    });
  }

  /**
   * An error answered while the client may still be sending its body (413: fastify closes such
   * connections): closing the socket with unread data resets the connection, and the reset
   * discards the answer before the client reads it. So the answer goes out with Connection: close,
   * the rest of the body is read and discarded (up to drainLimit bytes, for at most 30 s), and only
   * then is the connection closed.
   */
  private answerThenClose(raw: FastifyRequest['raw'], reply: FastifyReply, a: ApiError): void {
    reply.hijack();
    const socket = raw.socket;
    const limit = this.opts.drainLimit ?? 64 << 20;
    const cut = () => socket.destroy();
    const timer = setTimeout(cut, 30000).unref();
    socket.once('close', () => clearTimeout(timer));
    socket.write(rawErrorResponse(a));
    if (Number(raw.headers['content-length']) > limit) {
      // more than we are willing to read: the client may see a reset instead of the answer
      socket.end();
      return;
    }
    let seen = 0;
    raw.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limit) cut();
    });
    raw.once('end', () => endThenCut(socket));
    raw.resume();
  }

  private async generate(kind: 'completion' | 'chat', req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const { sched, ctx } = this.live();
    const spec = await (kind === 'chat' ? parseChat(req.body, ctx) : parseCompletion(req.body, ctx));
    const run = new Run(kind, spec, this.modelName, ctx.tokenizer);
    const handles: RequestHandle[] = [];
    try {
      spec.prompts.forEach((prompt, pi) => {
        handles.push(
          sched.submit({
            prompt,
            maxTokens: spec.maxTokens,
            stop: spec.stop,
            simba: spec.promptSimba[pi],
            sampling: Array.from({ length: spec.n }, (_, j) => spec.sampling(j)),
            onEvent: (ev) => run.event(pi * spec.n, ev),
          }),
        );
      });
    } catch (e) {
      for (const h of handles) h.cancel();
      if (e instanceof SchedulerRejection) throw refused(e.kind, e.message, this.opts.retryAfter ?? 1);
      throw e;
    }
    const cancelAll = () => {
      for (const h of handles) h.cancel();
    };
    // a client that goes away cancels its request; a request cancelled by shutdown ends the response
    reply.raw.on('close', () => {
      if (!run.ended) {
        cancelAll();
        run.abort('the client closed the connection');
      }
    });
    for (const h of handles)
      void h.done.then((o) => {
        if (o === 'cancelled') run.abort('the request was cancelled (the server is shutting down)');
      });
    // with a server-wide Simba default, says per prompt whether it was pruned or ran dense
    if (spec.simbaNote !== null) reply.raw.setHeader('x-simba', spec.simbaNote);
    if (spec.stream) {
      reply.hijack();
      const release = backpressure(reply.raw, run, handles, cancelAll, this.opts.streamStallMs ?? 60000);
      run.startStream(reply.raw);
      await run.finished;
      release();
      return undefined;
    }
    const ok = await run.finished;
    if (!ok) {
      cancelAll();
      throw run.error ?? new ApiError(500, 'the request failed', 'server_error');
    }
    return reply.send(run.response());
  }
}

/**
 * Ends a connection still writable (after `last`, when given): the FIN goes out first, and a client that never
 * closes its side is cut off 2 s later.
 */
function endThenCut(socket: Duplex, last?: string): void {
  if (socket.writable) socket.end(last);
  setTimeout(() => socket.destroy(), 2000).unref();
}

/** Request bodies nested deeper than this are a 400 (OpenAI bodies nest 4 levels). */
const MAX_JSON_DEPTH = 64;

/** Whether JSON text nests arrays / objects deeper than max (a scan that needs no stack). */
function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** One HTTP request's choices: collects scheduler events, writes SSE chunks or the final JSON. */
class Run {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  readonly outs: ChoiceOutput[];
  private remaining: number;
  private usage = { prompt: 0, completion: 0, cached: 0 };
  /** Prompts pruned under load: their FLOPs and prompt tokens summed (usage.simba). */
  private loadSimba: { flopTokens: number; promptTokens: number; pruned: number } | null = null;
  private raw: ServerResponse | null = null;
  /** Called when a write leaves the client's socket buffer full. */
  onFull: (() => void) | null = null;
  ended = false;
  error: ApiError | null = null;
  readonly finished: Promise<boolean>;
  private resolve!: (ok: boolean) => void;
  private readonly offsets: TextOffsets;
  /** Chat with tool_choice 'required' or a named function: the output is a tool call. */
  private readonly toolCalls: ToolCallChoices | null;

  constructor(
    private readonly kind: 'completion' | 'chat',
    private readonly spec: GenerationSpec,
    private readonly model: string,
    private readonly tok: Tokenizer | null,
  ) {
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    this.outs = Array.from({ length: spec.prompts.length * spec.n }, () => ({ text: '', finishReason: null, tokens: [] }));
    this.remaining = spec.prompts.length;
    this.offsets = new TextOffsets(tok);
    this.toolCalls = kind === 'chat' && spec.tools?.forced ? new ToolCallChoices(this.outs.length) : null;
    this.finished = new Promise((res) => {
      this.resolve = res;
    });
  }

  private get object(): string {
    return this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  }

  startStream(raw: ServerResponse): void {
    this.raw = raw;
    startEventStream(raw);
    if (this.kind === 'chat')
      this.outs.forEach((_, index) =>
        this.send({
          index,
          delta: { role: 'assistant', content: this.toolCalls ? null : '' },
          logprobs: null,
          finish_reason: null,
        }),
      );
  }

  private send(choice: Record<string, unknown> | null, usage?: unknown): void {
    if (!this.raw || this.raw.writableEnded || this.raw.destroyed) return;
    const chunk: Record<string, unknown> = {
      id: this.id,
      object: this.object,
      created: this.created,
      model: this.model,
      choices: choice ? [choice] : [],
    };
    if (usage !== undefined) chunk.usage = usage;
    else if (this.spec.includeUsage) chunk.usage = null;
    if (!this.raw.write(`data: ${JSON.stringify(chunk)}\n\n`)) this.onFull?.();
  }

  private end(ok: boolean): void {
    if (this.ended) return;
    this.ended = true;
    if (this.raw && !this.raw.writableEnded && !this.raw.destroyed) {
      if (ok) {
        if (this.spec.includeUsage) this.send(null, this.usageBody());
        this.raw.write('data: [DONE]\n\n');
      } else {
        const e = this.error ?? new ApiError(500, 'the request failed', 'server_error');
        this.raw.write(`event: error\ndata: ${JSON.stringify(e.body())}\n\n`);
      }
      this.raw.end();
    }
    this.resolve(ok);
  }

  private logprobsOf(tokens: ChoiceOutput['tokens']): unknown {
    if (this.spec.logprobs === null) return null;
    return this.kind === 'chat' ? chatLogprobs(this.tok, tokens) : completionLogprobs(this.tok, tokens);
  }

  private piece(index: number, text: string, tokens: ChoiceOutput['tokens'], finish: string | null): Record<string, unknown> {
    const logprobs = tokens.length > 0 ? this.logprobsOf(tokens) : null;
    if (this.kind === 'chat') return { index, delta: text ? { content: text } : {}, logprobs, finish_reason: finish };
    return { index, text, logprobs, finish_reason: finish };
  }

  /** A scheduler event of the request whose first choice is choice `base`. */
  event(base: number, ev: RequestEvent): void {
    if (this.ended) return;
    if (ev.type === 'token' || ev.type === 'finish') {
      const index = base + ev.choice;
      const out = this.outs[index];
      if (ev.type === 'token') {
        const withLogprobs = this.spec.logprobs !== null;
        const offset = withLogprobs ? this.offsets.next(index, ev.token) : 0;
        const t = { token: ev.token, logprob: ev.logprob, top: ev.top, offset };
        out.tokens.push(t);
        out.text += ev.text;
        if (this.toolCalls) for (const c of this.toolCalls.token(index, ev.text)) this.send(c);
        else if (ev.text || withLogprobs) this.send(this.piece(index, ev.text, withLogprobs ? [t] : [], null));
      } else {
        out.text += ev.text;
        out.finishReason = ev.reason;
        if (this.toolCalls) for (const c of this.toolCalls.finish(index, ev.text, ev.reason)) this.send(c);
        else this.send(this.piece(index, ev.text, [], ev.reason));
      }
    } else if (ev.type === 'done') {
      this.usage.prompt += ev.usage.promptTokens;
      this.usage.completion += ev.usage.completionTokens;
      this.usage.cached += ev.usage.cachedTokens;
      const ls = ev.usage.simba;
      if (ls) {
        this.loadSimba ??= { flopTokens: 0, promptTokens: 0, pruned: 0 };
        this.loadSimba.flopTokens += ls.flops * ev.usage.promptTokens;
        this.loadSimba.promptTokens += ev.usage.promptTokens;
        this.loadSimba.pruned += ls.prunedTokens;
      }
      if (--this.remaining === 0) this.end(true);
    } else {
      this.error = toApiError(ev.error);
      this.end(false);
    }
  }

  /** Ends the request early (cancelled): a stream gets an error event. */
  abort(why: string): void {
    if (this.ended) return;
    this.error = unavailable(why, 'cancelled');
    this.end(false);
  }

  /**
   * The usage object; with prompts pruned under load, the extension `simba: { flops, pruned_tokens }`
   * (their relative prefill FLOPs, weighted by prompt tokens, and the prompt tokens pruned).
   */
  private usageBody(): Record<string, unknown> {
    const u: Record<string, unknown> = { ...usageOf(this.usage.prompt, this.usage.completion, this.usage.cached) };
    const ls = this.loadSimba;
    if (ls) u.simba = { flops: Number((ls.flopTokens / ls.promptTokens).toFixed(4)), pruned_tokens: ls.pruned };
    return u;
  }

  /** The non-streaming JSON body. */
  response(): unknown {
    const usage = this.usageBody();
    const choices = this.outs.map((o, index) =>
      this.kind === 'chat'
        ? {
            index,
            message: this.toolCalls ? this.toolCalls.message(index) : { role: 'assistant', content: o.text },
            logprobs: this.logprobsOf(o.tokens),
            finish_reason: this.toolCalls ? this.toolCalls.finishReason(index, o.finishReason) : o.finishReason,
          }
        : { index, text: o.text, logprobs: this.logprobsOf(o.tokens), finish_reason: o.finishReason },
    );
    return {
      id: this.id,
      object: this.kind === 'chat' ? 'chat.completion' : 'text_completion',
      created: this.created,
      model: this.model,
      choices,
      usage,
    };
  }
}

/** Creates the server (not yet listening). */
const SERVER_OPTIONS = [
  'model',
  'modelName',
  'tokenizer',
  'chatTemplate',
  'maxRunning',
  'maxQueue',
  'prefillBudget',
  'itlTargetMs',
  'simbaUnderLoad',
  'cacheMb',
  'cacheBlockTokens',
  'apiKey',
  'simba',
  'maxPromptTokens',
  'maxTokens',
  'bodyLimit',
  'drainLimit',
  'streamStallMs',
  'retryAfter',
  'stateStore',
  'replicaId',
  'log',
  'batch',
] as const;

/**
 * The options the server itself uses (the scheduler, the cache and the Simba planner check theirs):
 * unknown keys and out-of-range values are E_ARG naming them.
 */
function checkServerOptions(opts: ServerOptions): void {
  const where = 'createServer';
  const o = v.options(where, opts, SERVER_OPTIONS);
  if (o.model === undefined) throw v.argError(where, 'model is required (a model or a promise of one)');
  v.string(where, 'modelName', o.modelName, true);
  v.string(where, 'apiKey', o.apiKey, true);
  v.int(where, 'maxPromptTokens', o.maxPromptTokens, 1);
  v.int(where, 'maxTokens', o.maxTokens, 1);
  v.int(where, 'bodyLimit', o.bodyLimit, 1);
  v.int(where, 'drainLimit', o.drainLimit, 0);
  v.int(where, 'streamStallMs', o.streamStallMs, 1, 2 ** 31 - 1);
  v.int(where, 'retryAfter', o.retryAfter, 0);
  checkPolicyOptions(where, o);
  v.string(where, 'replicaId', o.replicaId, true);
  v.func(where, 'log', o.log);
}

export function createServer(opts: ServerOptions): SimbaServer {
  return new SimbaServer(opts);
}
