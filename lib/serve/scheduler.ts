/**
 * The scheduler: one loop per model, continuous batching with chunked prefill.
 *
 * Each tick is ONE native call (LanguageModel.step): a decode token for every running choice plus
 * chunks of waiting prompts, with sampling done natively after the head, so JS only orchestrates.
 * Every running (unpaused) choice gets its decode token in every tick: new prompts never starve
 * decoding requests. The prompt tokens a tick takes (its prefill share) come from the cost model
 * (cost_model.ts: per-token prefill and per-batch decode costs learned from the measured steps)
 * so that a tick holding decodes ends within the inter-token latency target (itlTargetMs), at
 * least a floor (prompts progress every tick: min(minPrefillTokens, the tokens that fit in 0.2 x the
 * target), so such a tick overruns by at most 0.2 x the target) and at most prefillBudget; a tick without
 * decodes takes prefillBudget. Waiting prompts get slots (max running sequences) and prefill
 * tokens in the order of prefill_order.ts: shortest remaining work first (prefix-cache hits count
 * what is left after the hit), aged so that no prompt is overtaken by one arriving more than
 * agingTicks later. With simbaUnderLoad, new long prompts are pruned with Simba while the prefill
 * backlog exceeds what the target allows (load_pruning.ts). A request whose prompt is done samples
 * its first token(s) in the same call. Finished, cancelled or failed requests leave at the end of
 * the tick (their slots are free for the next one); a cancel lands at the start of the next tick.
 *
 * Why in TypeScript, not native: a tick's cost is the native step (milliseconds); the JS around
 * it (a few objects per sequence) is microseconds, and keeping the loop in JS keeps the HTTP side,
 * cancellation and metrics simple. Continuous batching does not change results: every sequence
 * carries its own state and RNG, so at temperature 0 a request gets the same tokens alone or in
 * any batch (test/serve/scheduler.test.ts).
 *
 * n > 1: the prompt is prefilled once; its n first tokens are sampled from the same logits row,
 * then the state is copied (snapshotAsync / restoreAsync: on device 'cuda' one slot to the host and
 * back into each new slot) into one sequence per choice.
 *
 * @example
 *   const s = new Scheduler(model, { tokenizer: model.tokenizer, maxRunning: 32 });
 *   const h = s.submit({ prompt: ids, maxTokens: 16, sampling: [{ temperature: 0, rng: rngFromSeed(0) }],
 *                        onEvent: (e) => { if (e.type === 'token') process.stdout.write(e.text); } });
 *   await h.done;   // 'done' | 'cancelled' | 'error'
 */
import type {
  LanguageModel,
  SampledToken,
  SamplingParams,
  Sequence,
  SimbaOptions,
  SimbaPlan,
  StepInput,
  Tokenizer,
} from '../engine/lm';
import { SimbaError } from '../errors';
import { StopMatcher } from '../generate/stop';
import * as v from '../validate';
import { CostModel } from './cost_model';
import { chunkPlan, LOAD_HORIZON_SECONDS, loadBudget, loadPruningFor, recordChunk, type LoadPruning } from './load_pruning';
import { byKey, DEFAULT_AGING_TICKS, prefillKey } from './prefill_order';
import { snapshotPosition } from '../engine/sequence';
import type { PrefixCache } from './prefix_cache';

/** Prompt tokens between cached states when no in-process cache gives its block size. */
const DEFAULT_BLOCK = 256;

export type FinishReason = 'stop' | 'length';

export type RequestEvent =
  | { type: 'token'; choice: number; token: number; text: string; logprob: number; top: { token: number; logprob: number }[] }
  /** A choice ended; `text` is what was still held back (incomplete characters, a possible stop string). */
  | { type: 'finish'; choice: number; reason: FinishReason; text: string }
  | {
      type: 'done';
      usage: RequestUsage;
      /** With keepState: the sequence's state at the end (it has seen `position` tokens of prompt + output). */
      final?: { state: Buffer; position: number };
    }
  | { type: 'error'; error: Error };

export interface RequestUsage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Set when the scheduler pruned the prompt under load (simbaUnderLoad): the relative prefill FLOPs its chunks ran at and the tokens pruned. */
  simba?: { flops: number; prunedTokens: number };
}

export interface GenerationRequest {
  /** Prompt token ids (at least one). */
  prompt: number[];
  /** Tokens to generate at most per choice (>= 1). */
  maxTokens: number;
  /** One per choice (n = sampling.length); each holds its own RNG. */
  sampling: SamplingParams[];
  stop?: string[];
  stopAtEos?: boolean;
  /**
   * Prune this prompt (its prefill is one call of its own, not chunked, not cached): options, or the
   * plan checkSimba() made for this prompt.
   */
  simba?: SimbaOptions | SimbaPlan;
  /**
   * A state to start from (a snapshot of a sequence that saw the first `position` tokens of
   * `prompt`): only the rest is prefilled. Used when it is the longest known prefix; one that does not
   * restore is dropped (counted in restored.failed) and the prompt runs without it.
   */
  initialState?: Buffer;
  /** Snapshot the state at the end (n = 1): the 'done' event carries it (`final`). */
  keepState?: boolean;
  /** Called on the scheduler's loop; exceptions thrown here are ignored. */
  onEvent(ev: RequestEvent): void;
}

/**
 * A second, shared tier of the prefix-state cache (state_tier/redis_tier.ts): looked up after the
 * in-process cache, asynchronously (a request waits for its answer before admission, the loop does
 * not), and written to whenever the in-process cache is.
 */
export interface SharedStateTier {
  /** The longest stored state for a prefix of `tokens` of minLength..maxLength tokens, or null; never rejects. */
  lookup(
    ns: string,
    tokens: ArrayLike<number>,
    minLength: number,
    maxLength: number,
  ): Promise<{ length: number; state: Buffer } | null>;
  /** Queues a write of the state after `prefix`; returns at once. */
  insert(ns: string, prefix: ArrayLike<number>, state: Buffer): void;
}

export type RequestOutcome = 'done' | 'cancelled' | 'error';

export interface RequestHandle {
  readonly id: number;
  /** Cancels the request: it stops within one tick and frees its slot. */
  cancel(): void;
  /**
   * Stops stepping the request (its sequences keep their slots and state) until resume(): the
   * HTTP layer pauses a stream whose client does not read.
   */
  pause(): void;
  resume(): void;
  readonly done: Promise<RequestOutcome>;
}

/** Rejections of submit(): the HTTP layer maps them to 429 / 503. */
export class SchedulerRejection extends Error {
  constructor(
    readonly kind: 'queue_full' | 'shutting_down',
    message: string,
  ) {
    super(message);
  }
}

/** Hooks for metrics (all optional; times in seconds). */
export interface SchedulerObserver {
  admitted?(queueSeconds: number): void;
  firstToken?(ttftSeconds: number): void;
  interToken?(seconds: number): void;
  finished?(
    outcome: RequestOutcome,
    e2eSeconds: number,
    promptTokens: number,
    completionTokens: number,
    reasons: FinishReason[],
  ): void;
  step?(sequences: number, tokens: number, seconds: number, sampleMs: number): void;
  cacheLookup?(hit: boolean, promptTokens: number, savedTokens: number): void;
  /** After every tick that ran: its decode tokens, prompt tokens, seconds, and whether it missed the target. */
  tick?(t: TickReport): void;
  /** A prompt to be pruned under load, at this budget (relative prefill FLOPs). */
  loadPruned?(budget: number): void;
  /** A chunk pruned under load pruned this many prompt tokens. */
  prunedTokens?(tokens: number): void;
}

export interface TickReport {
  decodes: number;
  prefillTokens: number;
  seconds: number;
  /** The target in seconds (null: no target). */
  targetSeconds: number | null;
  /** The tick held decodes and took longer than the target. */
  missed: boolean;
}

export interface SchedulerOptions {
  /** Decodes the generated text (null: text is ''). */
  tokenizer?: Tokenizer | null;
  /** Sequences (choices) decoding at once (default 32). */
  maxRunning?: number;
  /** Requests waiting beyond the free slots before submit() rejects with queue_full (default 256). */
  maxQueue?: number;
  /** Prompt tokens prefilled per tick at most, over all requests (default 512; a tick without decodes takes this many). */
  prefillBudget?: number;
  /**
   * Inter-token latency target in ms (default 50): a tick holding decodes takes the prompt tokens
   * the cost model says fit in it. 0: no target, every tick takes prefillBudget prompt tokens.
   */
  itlTargetMs?: number;
  /**
   * The most the floor of a tick's prefill share can be (default 64, at most prefillBudget): every
   * tick gives waiting prompts min(this, the tokens the cost model fits in 0.2 x the target), at least 1.
   */
  minPrefillTokens?: number;
  /** K of the prefill order: a prompt is never overtaken by one arriving more than K ticks later (default 32). */
  agingTicks?: number;
  /** Prune new long prompts with Simba down to this fraction of dense prefill FLOPs while the backlog exceeds the target (default: off). */
  simbaUnderLoad?: number;
  /** The cost model (default: a new one); tests feed it fake timings. */
  costModel?: CostModel;
  /** Seconds, for step timings (default: performance.now() / 1000); tests pass a fake clock. */
  clock?: () => number;
  cache?: PrefixCache | null;
  /** The shared tier after `cache` (prompt states every cache block and at prompt ends go to both). */
  shared?: SharedStateTier | null;
  observer?: SchedulerObserver;
  /** End-of-sequence id (default: the tokenizer's, else the config's). */
  eosTokenId?: number | null;
}

interface Choice {
  index: number;
  seq: Sequence | null;
  params: SamplingParams;
  history: number[];
  decoder: { push(ids: number): string; flush(): string } | null;
  stop: StopMatcher;
  generated: number;
  last: number;
  finished: boolean;
  reason: FinishReason | null;
  lastTime: number;
}

interface Req {
  id: number;
  r: GenerationRequest;
  /** The request's own Simba pruning (its prompt in one call of its own). */
  simba: SimbaOptions | SimbaPlan | undefined;
  /** Pruning under load (its prompt in pruned chunks). */
  load: LoadPruning | null;
  /** Tick count at submit, and prompt tokens found in the cache then (the prefill order's inputs). */
  arrivalTick: number;
  peeked: number;
  seq: Sequence | null;
  pos: number;
  cached: number;
  choices: Choice[];
  phase: 'waiting' | 'prefill' | 'decode' | 'done';
  cancelled: boolean;
  /** Set while the request's own Simba prefill runs: cancel() aborts that native call. */
  abort: AbortController | null;
  paused: boolean;
  arrival: number;
  firstTokenAt: number;
  completionTokens: number;
  /** The shared tier's answer (fetching: not yet in; the request is not admitted meanwhile). */
  fetching: boolean;
  shared: { length: number; state: Buffer } | null;
  /** keepState: every choice finished, the state is to be captured before the request ends. */
  capture: boolean;
  resolve(o: RequestOutcome): void;
}

type Planned = { kind: 'decode'; req: Req; choice: Choice } | { kind: 'prefill'; req: Req; end: number; final: boolean };

const now = () => performance.now() / 1000;

/** Recycles a sequence when no native call holds it (recycle() refuses a busy one), else disposes it. */
function recycle(seq: Sequence): void {
  if (seq.busy) seq.dispose();
  else seq.recycle();
}

const SCHEDULER_OPTIONS = [
  'tokenizer',
  'maxRunning',
  'maxQueue',
  'prefillBudget',
  'itlTargetMs',
  'minPrefillTokens',
  'agingTicks',
  'simbaUnderLoad',
  'cache',
  'observer',
  'eosTokenId',
  'costModel',
  'clock',
  'shared',
] as const;

/** The scheduling policy's options that the server takes too (checked by both entry points with this). */
export function checkPolicyOptions(where: string, o: Partial<Record<string, unknown>>): void {
  v.number(where, 'itlTargetMs', o.itlTargetMs, 0, 60000);
  v.int(where, 'minPrefillTokens', o.minPrefillTokens, 1, 8192);
  v.int(where, 'agingTicks', o.agingTicks, 0, 1 << 20);
  v.number(where, 'simbaUnderLoad', o.simbaUnderLoad, 0, 1, true);
}

export class Scheduler {
  readonly maxRunning: number;
  readonly maxQueue: number;
  readonly prefillBudget: number;
  /** The target in seconds, null without one. */
  readonly targetSeconds: number | null;
  readonly minPrefillTokens: number;
  readonly agingTicks: number;
  readonly simbaUnderLoad: number | null;
  readonly costModel: CostModel;
  private readonly clock: () => number;
  /** The weight format: the cost model's key. */
  private readonly format: string;
  private readonly waiting: Req[] = [];
  private readonly running: Req[] = [];
  private readonly cache: PrefixCache | null;
  private readonly shared: SharedStateTier | null;
  private readonly tokenizer: Tokenizer | null;
  private readonly eos: number | null;
  private readonly observer: SchedulerObserver;
  private nextId = 1;
  private looping = false;
  private accepting = true;
  private idleWaiters: (() => void)[] = [];
  /** Set while the loop sleeps because every request it holds is paused or waits for their slots. */
  private wake: (() => void) | null = null;
  /** A submit, cancel or resume since the current tick began (the loop must not sleep through it). */
  private kicked = false;
  /** Ticks run and sequences stepped (for tests and the bench). */
  readonly counters = { ticks: 0, steppedSequences: 0, sampleMs: 0, stepSeconds: 0, targetMisses: 0, prunedTokens: 0 };
  /** Prompts started from a stored state, by where it came from; failed: states that did not restore. */
  readonly restored = { local: 0, shared: 0, initial: 0, failed: 0 };

  constructor(
    private readonly model: LanguageModel,
    opts: SchedulerOptions = {},
  ) {
    v.options('scheduler', opts, SCHEDULER_OPTIONS);
    checkPolicyOptions('scheduler', opts as Record<string, unknown>);
    this.maxRunning = opts.maxRunning ?? 32;
    this.maxQueue = opts.maxQueue ?? 256;
    this.prefillBudget = opts.prefillBudget ?? 512;
    if (!Number.isInteger(this.maxRunning) || this.maxRunning < 1 || this.maxRunning > 1024)
      throw new SimbaError('E_ARG', `scheduler: maxRunning must be an integer in [1, 1024], got ${this.maxRunning}`);
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0)
      throw new SimbaError('E_ARG', `scheduler: maxQueue must be an integer >= 0, got ${this.maxQueue}`);
    if (!Number.isInteger(this.prefillBudget) || this.prefillBudget < 1 || this.prefillBudget + this.maxRunning > 8192)
      throw new SimbaError(
        'E_ARG',
        `scheduler: prefillBudget must be an integer >= 1 with prefillBudget + maxRunning <= 8192, got ${this.prefillBudget}`,
      );
    this.cache = opts.cache ?? null;
    this.shared = opts.shared ?? null;
    this.tokenizer = opts.tokenizer ?? null;
    this.eos = opts.eosTokenId !== undefined ? opts.eosTokenId : (this.tokenizer?.eosTokenId ?? model.config.eosTokenId);
    this.observer = opts.observer ?? {};
    const target = opts.itlTargetMs ?? 50;
    this.targetSeconds = target > 0 ? target / 1000 : null;
    this.minPrefillTokens = Math.min(opts.minPrefillTokens ?? 64, this.prefillBudget);
    this.agingTicks = opts.agingTicks ?? DEFAULT_AGING_TICKS;
    this.simbaUnderLoad = opts.simbaUnderLoad ?? null;
    this.costModel = opts.costModel ?? new CostModel();
    this.clock = opts.clock ?? now;
    this.format = model.info().weights;
  }

  /** Requests decoding or prefilling / waiting for a slot. */
  get runningCount(): number {
    return this.running.length;
  }
  get waitingCount(): number {
    return this.waiting.length;
  }
  /** Sequences (choices) holding a slot. */
  get slotsUsed(): number {
    return this.running.reduce((a, r) => a + r.choices.length, 0);
  }
  /** Requests paused (see RequestHandle.pause). */
  get pausedCount(): number {
    return this.running.filter((r) => r.paused).length + this.waiting.filter((r) => r.paused).length;
  }

  /**
   * The waiting requests that the next admission (first come, first served) leaves waiting, and the
   * slots used once it admitted the others: only those left waiting count against maxQueue.
   */
  private queueState(): { queued: number; slots: number } {
    let slots = this.slotsUsed;
    let i = 0;
    while (i < this.waiting.length && slots + this.waiting[i].choices.length <= this.maxRunning)
      slots += this.waiting[i++].choices.length;
    return { queued: this.waiting.length - i, slots };
  }

  /** Queues a request; throws SchedulerRejection when the queue is full or the scheduler is closing. */
  submit(r: GenerationRequest): RequestHandle {
    if (!this.accepting) throw new SchedulerRejection('shutting_down', 'the server is shutting down');
    // a request that fits in the free slots is admitted at the next tick; others queue (up to maxQueue)
    const n = Array.isArray(r.sampling) ? r.sampling.length : 1;
    const { queued, slots } = this.queueState();
    if ((queued > 0 || slots + n > this.maxRunning) && queued >= this.maxQueue)
      throw new SchedulerRejection(
        'queue_full',
        `the queue is full (${queued} requests waiting for a slot, all ${this.maxRunning} slots taken); retry later`,
      );
    if (!Array.isArray(r.prompt) || r.prompt.length === 0)
      throw new SimbaError('E_ARG', 'scheduler: the prompt needs at least one token');
    if (!Array.isArray(r.sampling) || r.sampling.length === 0 || r.sampling.length > this.maxRunning)
      throw new SimbaError('E_ARG', `scheduler: n must be in [1, ${this.maxRunning}] (max running sequences)`);
    if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1)
      throw new SimbaError('E_ARG', 'scheduler: maxTokens must be an integer >= 1');
    if (r.keepState && (r.sampling.length !== 1 || r.simba))
      throw new SimbaError('E_ARG', 'scheduler: keepState needs n = 1 and a dense prompt');
    if (r.initialState !== undefined && (!(r.initialState instanceof Uint8Array) || r.simba))
      throw new SimbaError('E_ARG', 'scheduler: initialState must be a snapshot Buffer, for a dense prompt');
    const V = this.model.config.vocabSize;
    for (let i = 0; i < r.prompt.length; i++) {
      const t = r.prompt[i];
      if (!Number.isInteger(t) || t < 0 || t >= V)
        throw new SimbaError('E_TOKEN', `scheduler: prompt token ${String(t)} at index ${i} is outside the vocabulary [0, ${V})`);
    }
    let resolve!: (o: RequestOutcome) => void;
    const done = new Promise<RequestOutcome>((res) => {
      resolve = res;
    });
    const req: Req = {
      id: this.nextId++,
      r,
      simba: r.simba,
      load: null,
      arrivalTick: this.counters.ticks,
      peeked: r.simba || !this.cache ? 0 : this.cache.peek('dense', r.prompt, r.prompt.length - 1),
      seq: null,
      pos: 0,
      cached: 0,
      phase: 'waiting',
      cancelled: false,
      abort: null,
      paused: false,
      arrival: this.clock(),
      firstTokenAt: 0,
      completionTokens: 0,
      fetching: false,
      shared: null,
      capture: false,
      resolve,
      choices: r.sampling.map((params, index) => ({
        index,
        seq: null,
        params,
        history: [],
        decoder: this.tokenizer ? this.tokenizer.createStreamDecoder() : null,
        stop: new StopMatcher(r.stop ?? []),
        generated: 0,
        last: -1,
        finished: false,
        reason: null,
        lastTime: 0,
      })),
    };
    for (const c of req.choices) c.params.history = c.history;
    if (this.simbaUnderLoad !== null && !r.simba) this.pruneUnderLoad(req);
    this.waiting.push(req);
    this.fetchShared(req);
    this.kick();
    return {
      id: req.id,
      done,
      cancel: () => this.cancel(req),
      pause: () => {
        req.paused = true;
      },
      resume: () => {
        if (!req.paused) return;
        req.paused = false;
        this.kick();
      },
    };
  }

  private cancel(req: Req): void {
    if (req.phase === 'done' || req.cancelled) return;
    req.cancelled = true;
    req.abort?.abort('the request was cancelled'); // stops its native prefill at the next layer
    const w = this.waiting.indexOf(req);
    if (w >= 0) {
      // never admitted: leaves right away
      this.waiting.splice(w, 1);
      this.finish(req, 'cancelled');
    }
    this.kick(); // a sleeping loop reaps it now
  }

  /** Resolves when no request is running or waiting. */
  idle(): Promise<void> {
    if (!this.looping && this.running.length === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  /**
   * Stops accepting requests, lets the running and waiting ones finish for up to graceMs, then
   * cancels what is left. Resolves when the loop is idle.
   */
  async close(graceMs: number): Promise<void> {
    this.accepting = false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((res) => {
      timer = setTimeout(res, Math.max(0, graceMs));
    });
    await Promise.race([this.idle(), timeout]);
    clearTimeout(timer);
    for (const r of [...this.waiting, ...this.running]) this.cancel(r);
    await this.idle();
  }

  get closing(): boolean {
    return !this.accepting;
  }

  private kick(): void {
    this.kicked = true;
    const wake = this.wake;
    this.wake = null;
    wake?.();
    if (this.looping) return;
    this.looping = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.running.length > 0 || this.waiting.length > 0) {
        const stepped = await this.tick();
        if (!stepped && !this.kicked && (this.running.length > 0 || this.waiting.length > 0)) {
          // nothing to step (every request paused, or waiting for their slots): sleep until a
          // submit, cancel or resume instead of spinning
          await new Promise<void>((res) => {
            this.wake = res;
          });
          continue;
        }
        // let I/O (new requests, disconnects) in between ticks
        await new Promise<void>((res) => setImmediate(res));
      }
    } finally {
      this.looping = false;
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  /** Prompt tokens a request still has to prefill (its cached prefix counted as done). */
  private remaining(req: Req): number {
    return req.r.prompt.length - (req.phase === 'waiting' ? req.peeked : req.pos);
  }

  /** Requests in the prefill order (prefill_order.ts). */
  private ordered(reqs: readonly Req[]): Req[] {
    return byKey(
      reqs,
      (r) => prefillKey(r.arrivalTick, this.remaining(r), this.agingTicks),
      (r) => r.id,
    );
  }

  /** The prompt tokens a tick with `decodes` decode tokens takes (see SchedulerOptions.itlTargetMs). */
  private prefillShare(decodes: number): number {
    if (this.targetSeconds === null) return this.prefillBudget;
    return this.costModel.prefillShare(this.format, decodes, {
      targetSeconds: this.targetSeconds,
      minTokens: this.minPrefillTokens,
      maxTokens: this.prefillBudget,
    });
  }

  /** One tick: reap cancelled requests, plan one batched step, run it, hand out the tokens; false when nothing ran. */
  private async tick(): Promise<boolean> {
    this.kicked = false;
    this.reap();
    // waiting requests take the free slots in the prefill order; one that does not fit stops the
    // admission (a request of many choices is not overtaken for ever by requests of one)
    let slots = this.slotsUsed;
    // (a request whose shared-tier lookup is not in yet waits for it)
    for (const req of this.ordered(this.waiting.filter((r) => !r.fetching))) {
      if (slots + req.choices.length > this.maxRunning) break;
      this.waiting.splice(this.waiting.indexOf(req), 1);
      slots += req.choices.length;
      await this.admit(req);
    }
    const inputs: StepInput[] = [];
    const plan: Planned[] = [];
    for (const req of this.running)
      if (req.phase === 'decode' && !req.paused)
        for (const c of req.choices)
          if (!c.finished) {
            inputs.push({ sequence: c.seq!, tokens: [c.last], sample: [c.params] });
            plan.push({ kind: 'decode', req, choice: c });
          }
    const decodes = inputs.length;
    let budget = this.prefillShare(decodes);
    let simbaReq: Req | null = null;
    let pruned: { req: Req; n: number } | null = null;
    let prefillTokens = 0;
    for (const req of this.ordered(this.running.filter((r) => r.phase === 'prefill' && !r.paused))) {
      if (budget <= 0) break;
      if (req.load) {
        // one chunk pruned under load per tick, in a call of its own: n tokens cost ~budget x n
        if (pruned) continue;
        const n = Math.min(req.r.prompt.length - req.pos, Math.max(1, Math.floor(budget / req.load.budget)));
        pruned = { req, n };
        budget -= Math.ceil(n * req.load.budget);
        prefillTokens += n;
      } else if (!req.simba) {
        const n = this.addChunk(req, budget, inputs, plan);
        budget -= n;
        prefillTokens += n;
      } else if (!simbaReq) {
        // one pruned prefill per tick, in its call of its own (not chunked)
        simbaReq = req;
        budget -= req.r.prompt.length;
        prefillTokens += req.r.prompt.length;
      }
    }
    const t0 = this.clock();
    if (inputs.length > 0) await this.runStep(inputs, plan, undefined);
    if (pruned) await this.runPrunedChunk(pruned.req, pruned.n);
    if (simbaReq) {
      const p: Planned[] = [{ kind: 'prefill', req: simbaReq, end: simbaReq.r.prompt.length, final: true }];
      // The only call of this request alone, and the longest (up to 65,536 tokens): a client that goes
      // away meanwhile stops it (dense prefill runs in chunks of prefillBudget tokens, within a tick).
      simbaReq.abort = new AbortController();
      await this.runStep(
        [{ sequence: simbaReq.seq!, tokens: simbaReq.r.prompt, sample: simbaReq.choices.map((c) => c.params) }],
        p,
        simbaReq.simba,
        simbaReq.abort.signal,
      );
      simbaReq.abort = null;
    }
    const seconds = this.clock() - t0;
    this.counters.stepSeconds += seconds;
    this.counters.ticks++;
    const ran = inputs.length > 0 || simbaReq !== null || pruned !== null;
    if (ran) {
      const missed = this.targetSeconds !== null && decodes > 0 && seconds > this.targetSeconds;
      if (missed) this.counters.targetMisses++;
      this.observer.tick?.({ decodes, prefillTokens, seconds, targetSeconds: this.targetSeconds, missed });
    }
    this.reap();
    return ran;
  }

  /** The next n prompt tokens of a request pruned under load, pruned on their own (load_pruning.ts). */
  private async runPrunedChunk(req: Req, n: number): Promise<void> {
    if (req.phase === 'done' || req.cancelled) return;
    const end = req.pos + n;
    const final = end === req.r.prompt.length;
    const plan = chunkPlan(this.model.config, n, req.load!.budget);
    const input = {
      sequence: req.seq!,
      tokens: req.r.prompt.slice(req.pos, end),
      sample: final ? req.choices.map((c) => c.params) : undefined,
    };
    await this.runStep([input], [{ kind: 'prefill', req, end, final }], plan);
    if (req.pos !== end) return; // the step failed
    recordChunk(req.load!, plan);
    const prunedNow = plan.T - plan.processed[plan.processed.length - 1];
    this.counters.prunedTokens += prunedNow;
    this.observer.prunedTokens?.(prunedNow);
  }

  /**
   * Simba under load: prunes a new prompt when the prefill backlog (the waiting prompts' remaining
   * tokens, pruned ones at their budget, and this one, in seconds from the cost model) exceeds what
   * the target allows within LOAD_HORIZON_SECONDS (load_pruning.ts).
   */
  private pruneUnderLoad(req: Req): void {
    const perToken = this.costModel.prefillSecondsPerToken(this.format);
    if (perToken === null || this.simbaUnderLoad === null) return;
    let tokens = this.remaining(req);
    for (const r of [...this.waiting, ...this.running])
      if (r.phase === 'waiting' || r.phase === 'prefill') tokens += this.remaining(r) * (r.load?.budget ?? 1);
    let decodes = 0;
    for (const r of this.running) if (r.phase === 'decode') decodes += r.choices.filter((c) => !c.finished).length;
    // the fraction of the wall time the target leaves for prefill: a tick's share over the whole tick
    const share = this.prefillShare(decodes) * perToken;
    const d = decodes === 0 ? 0 : (this.costModel.decodeSeconds(this.format, decodes) ?? 0);
    const allowed = share + d > 0 ? (LOAD_HORIZON_SECONDS * share) / (share + d) : LOAD_HORIZON_SECONDS;
    const load = loadPruningFor(
      this.model.config,
      req.r.prompt.length,
      loadBudget(tokens * perToken, allowed, this.simbaUnderLoad),
    );
    if (!load) return;
    req.load = load;
    req.peeked = 0; // pruned chunks are not cached
    this.observer.loadPruned?.(load.budget);
  }

  /** Asks the shared tier for a longer prefix than the local cache holds; the request waits for the answer. */
  private fetchShared(req: Req): void {
    const n = req.r.prompt.length;
    if (!this.shared || req.simba || req.load || req.r.initialState || req.peeked >= n - 1) return;
    req.fetching = true;
    void this.shared
      .lookup('dense', req.r.prompt, req.peeked + 1, n - 1)
      .then(
        (hit) => {
          req.shared = hit;
          if (hit) req.peeked = Math.max(req.peeked, hit.length);
        },
        () => undefined,
      )
      .finally(() => {
        req.fetching = false;
        this.kick();
      });
  }

  private async admit(req: Req): Promise<void> {
    req.phase = 'prefill';
    req.seq = this.model.newSequence();
    req.choices[0].seq = req.seq;
    this.running.push(req);
    this.observer.admitted?.(this.clock() - req.arrival);
    if (req.simba) return;
    const prompt = req.r.prompt;
    const local = this.cache?.enabled ? this.cache.lookup('dense', prompt, prompt.length - 1) : null;
    // the longest known start wins; one that does not restore gives way to the next (never fails the request)
    const starts: { from: 'local' | 'shared' | 'initial'; length: number; state: Buffer }[] = [];
    if (local) starts.push({ from: 'local', ...local });
    if (req.shared) starts.push({ from: 'shared', ...req.shared });
    if (req.r.initialState)
      starts.push({ from: 'initial', length: snapshotPosition(req.r.initialState), state: Buffer.from(req.r.initialState) });
    req.shared = null;
    starts.sort((a, b) => b.length - a.length);
    for (const s of starts) {
      if (s.length < 1 || s.length > prompt.length - 1) {
        if (s.from === 'initial') this.restored.failed++;
        continue;
      }
      try {
        await req.seq.restoreAsync(s.state);
        if (req.seq.position !== s.length) throw new Error('the state is not of the prefix it was stored for');
      } catch {
        this.restored.failed++;
        req.seq.reset();
        continue;
      }
      req.pos = req.cached = s.length;
      this.restored[s.from]++;
      // a state from the shared tier is kept locally too: the next request here finds it at once
      if (s.from === 'shared') this.cache?.insert('dense', prompt.slice(0, s.length), s.state);
      break;
    }
    if (this.cache?.enabled || this.shared) this.observer.cacheLookup?.(req.cached > 0, prompt.length, req.cached);
  }

  /** Whether prompt states go to the caches (every block of tokens and at the prompt's end). */
  private caching(req: Req): boolean {
    return (this.cache?.enabled === true || this.shared !== null) && !req.simba && !req.load;
  }

  /** Plans the next prompt chunk of req within budget (ends on cache block boundaries); returns its size. */
  private addChunk(req: Req, budget: number, inputs: StepInput[], plan: Planned[]): number {
    const n = req.r.prompt.length;
    let end = Math.min(n, req.pos + budget);
    if (end < n && this.caching(req)) {
      const K = this.cache?.blockTokens ?? DEFAULT_BLOCK;
      const aligned = Math.floor(end / K) * K;
      if (aligned > req.pos) end = aligned;
    }
    const final = end === n;
    inputs.push({
      sequence: req.seq!,
      tokens: req.r.prompt.slice(req.pos, end),
      sample: final ? req.choices.map((c) => c.params) : undefined,
    });
    plan.push({ kind: 'prefill', req, end, final });
    return end - req.pos;
  }

  private async runStep(
    inputs: StepInput[],
    plan: Planned[],
    simba: SimbaOptions | SimbaPlan | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    const t0 = this.clock();
    let samples: SampledToken[][];
    try {
      const r = await this.model.step(inputs, { simba, signal });
      const seconds = this.clock() - t0;
      samples = r.samples;
      this.counters.sampleMs += r.sampleMs;
      this.counters.steppedSequences += inputs.length;
      const decodes = plan.filter((p) => p.kind === 'decode').length;
      const tokens = inputs.reduce((a, i) => a + i.tokens.length, 0);
      // a pruned prefill costs less per token than the model learns for dense ones: not learned from
      if (!simba) this.costModel.observe(this.format, { decodes, prefillTokens: tokens - decodes, seconds });
      this.observer.step?.(inputs.length, tokens, seconds, r.sampleMs);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      // a cancelled request (its step aborted) ends as cancelled at the next reap
      for (const req of new Set(plan.map((p) => p.req))) if (!req.cancelled) this.fail(req, err);
      return;
    }
    for (let i = 0; i < plan.length; i++) {
      const p = plan[i];
      if (p.req.phase === 'done' || p.req.cancelled) continue;
      if (p.kind === 'decode') {
        this.handleToken(p.req, p.choice, samples[i][0]);
        if (p.req.capture) await this.captureState(p.req);
        continue;
      }
      const req = p.req;
      req.pos = p.end;
      try {
        await this.afterPrefill(req, p.end, p.final);
      } catch (e) {
        this.fail(req, e instanceof Error ? e : new Error(String(e)));
        continue;
      }
      if (p.final) req.choices.forEach((c, j) => this.handleToken(req, c, samples[i][j]));
      if (req.capture) await this.captureState(req);
    }
  }

  /** A prompt chunk ran: cache its state; after the last one, copy the state into the other choices' sequences. */
  private async afterPrefill(req: Req, end: number, final: boolean): Promise<void> {
    const K = this.cache?.blockTokens ?? DEFAULT_BLOCK;
    let snap: Buffer | null = null;
    if (this.caching(req) && (final || end % K === 0)) {
      snap = await req.seq!.snapshotAsync();
      const prefix = req.r.prompt.slice(0, end);
      this.cache?.insert('dense', prefix, snap);
      this.shared?.insert('dense', prefix, snap);
    }
    if (!final) return;
    req.phase = 'decode';
    if (req.choices.length > 1) {
      snap ??= await req.seq!.snapshotAsync();
      for (const c of req.choices.slice(1)) {
        c.seq = this.model.newSequence();
        await c.seq.restoreAsync(snap);
      }
    }
  }

  private emit(req: Req, ev: RequestEvent): void {
    try {
      req.r.onEvent(ev);
    } catch {
      // a listener's failure (e.g. a closed socket) must not stop the loop
    }
  }

  private handleToken(req: Req, c: Choice, s: SampledToken): void {
    const t = this.clock();
    if (req.firstTokenAt === 0) {
      req.firstTokenAt = t;
      this.observer.firstToken?.(t - req.arrival);
    } else if (c.lastTime > 0) this.observer.interToken?.(t - c.lastTime);
    c.lastTime = t;
    const grammar = c.params.matcher;
    if (s.token < 0) {
      // (only a grammar's mask leaves no token to sample)
      const e = new SimbaError('E_ARG', `grammar: ${s.grammarError ?? 'no token allowed'}`, { param: 'grammar' });
      return this.fail(req, e);
    }
    if ((req.r.stopAtEos !== false || grammar) && this.eos !== null && s.token === this.eos)
      return this.finishChoice(req, c, 'stop', true);
    c.history.push(s.token);
    c.generated++;
    req.completionTokens++;
    const { emit, stopped } = c.stop.push(c.decoder ? c.decoder.push(s.token) : '');
    this.emit(req, { type: 'token', choice: c.index, token: s.token, text: emit, logprob: s.logprob, top: s.top });
    if (stopped) return this.finishChoice(req, c, 'stop', false);
    // a grammar that is complete and allows nothing more ends the choice (no step for the EOS)
    if (grammar?.finished()) return this.finishChoice(req, c, 'stop', true);
    if (c.generated >= req.r.maxTokens) return this.finishChoice(req, c, 'length', true);
    c.last = s.token;
  }

  private finishChoice(req: Req, c: Choice, reason: FinishReason, flush: boolean): void {
    const text = flush ? c.stop.flush(c.decoder ? c.decoder.flush() : '') : '';
    c.finished = true;
    c.reason = reason;
    this.emit(req, { type: 'finish', choice: c.index, reason, text });
    if (!req.choices.every((x) => x.finished)) return;
    if (req.r.keepState)
      req.capture = true; // captureState() completes it, after this step's tokens
    else this.complete(req);
  }

  /** keepState: snapshots the finished request's state, then completes it. */
  private async captureState(req: Req): Promise<void> {
    req.capture = false;
    const seq = req.choices[0].seq!;
    let final: { state: Buffer; position: number };
    try {
      final = { state: await seq.snapshotAsync(), position: seq.position };
    } catch (e) {
      return this.fail(req, e instanceof Error ? e : new Error(String(e)));
    }
    this.complete(req, final);
  }

  private complete(req: Req, final?: { state: Buffer; position: number }): void {
    if (req.phase === 'done') return;
    this.emit(req, {
      type: 'done',
      usage: {
        promptTokens: req.r.prompt.length,
        completionTokens: req.completionTokens,
        cachedTokens: req.cached,
        ...(req.load ? { simba: { flops: req.load.flopTokens / req.load.tokens, prunedTokens: req.load.prunedTokens } } : {}),
      },
      ...(final ? { final } : {}),
    });
    this.finish(req, 'done');
  }

  private fail(req: Req, error: Error): void {
    if (req.phase === 'done') return;
    this.emit(req, { type: 'error', error });
    this.finish(req, 'error');
  }

  /** Ends a request (frees its sequences); it leaves the running list at the next reap. */
  private finish(req: Req, outcome: RequestOutcome): void {
    if (req.phase === 'done') return;
    req.phase = 'done';
    // the scheduler's sequences never leave it: their state arrays go back to the model's pool
    for (const c of req.choices) if (c.seq) recycle(c.seq);
    this.observer.finished?.(
      outcome,
      this.clock() - req.arrival,
      req.r.prompt.length,
      req.completionTokens,
      req.choices.map((c) => c.reason).filter((x): x is FinishReason => x !== null),
    );
    req.resolve(outcome);
  }

  /** Drops finished requests and ends cancelled ones (between ticks: no native call holds their state). */
  private reap(): void {
    for (let i = this.running.length - 1; i >= 0; i--) {
      const req = this.running[i];
      if (req.cancelled) this.finish(req, 'cancelled');
      if (req.phase === 'done') this.running.splice(i, 1);
    }
  }
}
