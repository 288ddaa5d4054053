/**
 * Batches in Redis and their jobs on a BullMQ queue. One job per request line (job id
 * `<batch>.<line>`), so workers on any machine share a batch and BullMQ's stalled-job recovery hands
 * the requests of a killed worker to another. Results are idempotent: a request's result goes to
 * the batch's results hash under its line number with HSETNX, so a request run twice (its worker
 * died after writing, or lost its lock) counts once; when every line has a result, a finalize job
 * writes the output and error files in line order.
 *
 * Redis keys (prefix P): P:batch:ID (hash: meta JSON, status, counts, timestamps, file ids),
 * P:batch:ID:input (hash line -> request line), P:batch:ID:results (hash line -> result),
 * P:batches (sorted set of ids by creation), P:file:ID (files.ts); the queue's keys under P:bull.
 *
 * Status: validating -> in_progress -> finalizing -> completed, or expired when the completion window
 * (24 h) ended before some requests ran (a worker then records each of them as a batch_expired
 * error instead of running it); failed (lines naming another
 * endpoint); cancel: cancelling (waiting requests are dropped, running ones finish) -> cancelled
 * (a cancel while validating: cancelled before any request is queued).
 */
import { randomBytes } from 'crypto';
import type Redis from 'ioredis';
import { Queue } from 'bullmq';

import { fileObject, newFileId, nowSeconds, type FileStore } from './files';
import type { BatchLine } from './input_file';

export type BatchStatus =
  'validating' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled' | 'failed';

export interface BatchError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

/** OpenAI's batch object. */
export interface BatchObject {
  id: string;
  object: 'batch';
  endpoint: string;
  errors: { object: 'list'; data: BatchError[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}

/**
 * A line's result as stored: 'o' output line, 'e' error line, 'x' error line of a request the
 * completion window ended before it ran (batch_expired), 's' skipped (cancelled).
 */
export type ResultKind = 'o' | 'e' | 'x' | 's';

/** The job a worker takes: one request line, or the batch's finalize step. */
export type BatchJob = { batch: string; line: number } | { batch: string; finalize: true };

export const QUEUE_NAME = 'simba-batch';

const BATCH_ID = /^batch_[0-9a-f]{24}$/;
const COUNTER: Record<ResultKind, string> = { o: 'completed', e: 'failed', x: 'expired', s: 'skipped' };
const TIMESTAMPS = [
  'in_progress_at',
  'finalizing_at',
  'completed_at',
  'expired_at',
  'failed_at',
  'cancelling_at',
  'cancelled_at',
] as const;
const ADD_CHUNK = 1000;

/**
 * Records a line's result once (HSETNX) while the batch runs; returns -1 if the batch no longer takes
 * results, 1 when every line has one (the batch is then due to finalize), else 0.
 */
const RECORD = `
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'finalizing' then return 1 end
if st ~= 'in_progress' and st ~= 'cancelling' then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then redis.call('HINCRBY', KEYS[1], ARGV[3], 1) end
if redis.call('HLEN', KEYS[2]) < tonumber(redis.call('HGET', KEYS[1], 'total')) then return 0 end
if st == 'in_progress' then redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', ARGV[4]) end
return 1`;

/**
 * Commits a finalize: writes the output / error files and the final status in one step, only if the
 * batch is still finalizing or cancelling (so a second finalizer changes nothing); drops the
 * input and results. A finalizing batch some of whose requests expired unrun is expired, else
 * completed. Returns 1 if it committed.
 */
const COMMIT = `
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'finalizing' and st ~= 'cancelling' then return 0 end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[4], 'meta', ARGV[3], 'content', ARGV[4])
  redis.call('HSET', KEYS[1], 'output_file_id', ARGV[2])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[5], 'meta', ARGV[6], 'content', ARGV[7])
  redis.call('HSET', KEYS[1], 'error_file_id', ARGV[5])
end
if st == 'finalizing' and tonumber(redis.call('HGET', KEYS[1], 'expired') or '0') > 0 then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'expired_at', ARGV[1])
elseif st == 'finalizing' then redis.call('HSET', KEYS[1], 'status', 'completed', 'completed_at', ARGV[1])
else redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelled_at', ARGV[1]) end
redis.call('DEL', KEYS[2], KEYS[3])
return 1`;

/**
 * Ends a batch's validation: if it is still validating, it becomes ARGV[2] (in_progress, or failed
 * with ARGV[3] its errors) and 1 is returned; a batch cancelled meanwhile (cancelling: no job was
 * queued, no line has a result) becomes cancelled, its input dropped, and 0 is returned.
 */
const VALIDATED = `
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'validating' then
  if ARGV[2] == 'failed' then redis.call('HSET', KEYS[1], 'status', 'failed', 'failed_at', ARGV[1], 'errors', ARGV[3])
  else redis.call('HSET', KEYS[1], 'status', 'in_progress', 'in_progress_at', ARGV[1]) end
  return 1
end
if st == 'cancelling' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelled_at', ARGV[1])
  redis.call('DEL', KEYS[2])
end
return 0`;

/** Moves a batch to cancelling; returns its status before (the caller refuses final ones). */
const CANCEL = `
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'validating' or st == 'in_progress' then redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelling_at', ARGV[1]) end
return st`;

export interface CreateBatch {
  inputFileId: string;
  endpoint: string;
  metadata: Record<string, string> | null;
  lines: BatchLine[];
}

export class BatchStore {
  readonly queue: Queue<BatchJob>;

  constructor(
    readonly redis: Redis,
    private readonly prefix: string,
    readonly files: FileStore,
  ) {
    this.queue = new Queue<BatchJob>(QUEUE_NAME, { connection: redis, prefix: `${prefix}:bull` });
    this.queue.on('error', () => undefined);
  }

  private key(id: string, part = ''): string {
    return `${this.prefix}:batch:${id}${part}`;
  }

  static jobId(batch: string, line: number): string {
    return `${batch}.${line}`;
  }

  /**
   * Creates a batch: failed at once if a line names another endpoint, else its lines are stored and
   * queued (the batch is in_progress before the first job exists, so no worker sees it validating).
   */
  async create(c: CreateBatch): Promise<BatchObject> {
    const id = `batch_${randomBytes(12).toString('hex')}`;
    const now = nowSeconds();
    const meta = {
      id,
      endpoint: c.endpoint,
      input_file_id: c.inputFileId,
      completion_window: '24h',
      created_at: now,
      expires_at: now + 86400,
      metadata: c.metadata,
    };
    const k = this.key(id);
    await this.redis
      .multi()
      .hset(k, 'meta', JSON.stringify(meta), 'status', 'validating', 'total', c.lines.length, 'completed', 0, 'failed', 0)
      .zadd(`${this.prefix}:batches`, Date.now(), id)
      .exec();
    const wrong = c.lines.flatMap((l, i) => (l.url === c.endpoint ? [] : [i]));
    if (wrong.length > 0) {
      const errors: BatchError[] = wrong.slice(0, 100).map((i) => ({
        code: 'mismatched_endpoint',
        message: `line ${i + 1} asks for ${c.lines[i].url}; this batch's endpoint is ${c.endpoint}`,
        param: 'url',
        line: i + 1,
      }));
      await this.validated(id, 'failed', JSON.stringify(errors));
      return (await this.get(id))!;
    }
    for (let i = 0; i < c.lines.length; i += ADD_CHUNK) {
      const chunk = c.lines.slice(i, i + ADD_CHUNK).flatMap((l, j) => [String(i + j), l.text]);
      await this.redis.hset(this.key(id, ':input'), ...chunk);
    }
    // a cancel while validating wins: the batch is then cancelled and nothing is queued
    if (!(await this.validated(id, 'in_progress', ''))) return (await this.get(id))!;
    for (let i = 0; i < c.lines.length; i += ADD_CHUNK) {
      const jobs = c.lines.slice(i, i + ADD_CHUNK).map((_, j) => ({
        name: 'request',
        data: { batch: id, line: i + j },
        opts: { jobId: BatchStore.jobId(id, i + j), ...JOB_OPTIONS },
      }));
      await this.queue.addBulk(jobs);
    }
    return (await this.get(id))!;
  }

  /** Runs VALIDATED: whether the batch was still validating (else it was cancelled meanwhile). */
  private async validated(id: string, next: 'in_progress' | 'failed', errors: string): Promise<boolean> {
    return (await this.redis.eval(VALIDATED, 2, this.key(id), this.key(id, ':input'), nowSeconds(), next, errors)) === 1;
  }

  async get(id: string): Promise<BatchObject | null> {
    if (!BATCH_ID.test(id)) return null;
    const h = await this.redis.hgetall(this.key(id));
    if (!h.meta) return null;
    const meta = JSON.parse(h.meta) as Pick<
      BatchObject,
      'id' | 'endpoint' | 'input_file_id' | 'completion_window' | 'created_at' | 'expires_at' | 'metadata'
    >;
    const ts = Object.fromEntries(TIMESTAMPS.map((t) => [t, h[t] ? Number(h[t]) : null])) as Record<
      (typeof TIMESTAMPS)[number],
      number | null
    >;
    const errors = h.errors ? { object: 'list' as const, data: JSON.parse(h.errors) as BatchError[] } : null;
    return {
      id: meta.id,
      object: 'batch',
      endpoint: meta.endpoint,
      errors,
      input_file_id: meta.input_file_id,
      completion_window: meta.completion_window,
      status: h.status as BatchStatus,
      output_file_id: h.output_file_id ?? null,
      error_file_id: h.error_file_id ?? null,
      created_at: meta.created_at,
      expires_at: meta.expires_at,
      ...ts,
      request_counts: { total: Number(h.total), completed: Number(h.completed), failed: Number(h.failed) },
      metadata: meta.metadata,
    };
  }

  /** Newest first, `limit` after the batch `after` (OpenAI's cursor). */
  async list(after: string | null, limit: number): Promise<{ data: BatchObject[]; hasMore: boolean }> {
    const zkey = `${this.prefix}:batches`;
    let start = 0;
    if (after !== null) {
      const rank = await this.redis.zrevrank(zkey, after);
      if (rank === null) return { data: [], hasMore: false };
      start = rank + 1;
    }
    const ids = await this.redis.zrevrange(zkey, start, start + limit);
    const data = (await Promise.all(ids.slice(0, limit).map((id) => this.get(id)))).filter((b): b is BatchObject => !!b);
    return { data, hasMore: ids.length > limit };
  }

  /**
   * The request line of a job, the batch's status and whether its completion window has ended
   * (null: the batch is gone).
   */
  async lineOf(batch: string, line: number): Promise<{ status: BatchStatus; text: string | null; expired: boolean } | null> {
    const [[status, meta], text] = await Promise.all([
      this.redis.hmget(this.key(batch), 'status', 'meta'),
      this.redis.hget(this.key(batch, ':input'), String(line)),
    ]);
    if (status === null || meta === null) return null;
    const expired = nowSeconds() >= (JSON.parse(meta) as { expires_at: number }).expires_at;
    return { status: status as BatchStatus, text, expired };
  }

  /** Records a line's result once; queues the finalize when it was the last. Returns the script's answer. */
  async record(batch: string, line: number, kind: ResultKind, text: string): Promise<number> {
    const r = (await this.redis.eval(
      RECORD,
      2,
      this.key(batch),
      this.key(batch, ':results'),
      String(line),
      kind + text,
      COUNTER[kind],
      nowSeconds(),
    )) as number;
    if (r === 1) await this.queueFinalize(batch);
    return r;
  }

  private async queueFinalize(batch: string): Promise<void> {
    await this.queue.add('finalize', { batch, finalize: true }, { jobId: `${batch}.final`, ...JOB_OPTIONS });
  }

  /**
   * Writes the output and error files (line order) and the final status; safe to run twice or
   * concurrently (the commit happens once). Returns whether this call committed.
   */
  async finalize(batch: string): Promise<boolean> {
    const status = await this.redis.hget(this.key(batch), 'status');
    if (status !== 'finalizing' && status !== 'cancelling') return false;
    const results = await this.redis.hgetall(this.key(batch, ':results'));
    const out: string[] = [];
    const err: string[] = [];
    for (const line of Object.keys(results).sort((a, b) => Number(a) - Number(b))) {
      const r = results[line];
      if (r[0] === 'o') out.push(r.slice(1));
      else if (r[0] === 'e' || r[0] === 'x') err.push(r.slice(1));
    }
    const file = (lines: string[]) => {
      if (lines.length === 0) return { id: '', meta: '', content: '' };
      const content = lines.join('\n') + '\n';
      const id = newFileId();
      const name = `${batch}_${lines === out ? 'output' : 'error'}.jsonl`;
      return { id, meta: JSON.stringify(fileObject(id, 'batch_output', name, Buffer.byteLength(content))), content };
    };
    const o = file(out);
    const e = file(err);
    const done = (await this.redis.eval(
      COMMIT,
      5,
      this.key(batch),
      this.key(batch, ':input'),
      this.key(batch, ':results'),
      this.files.key(o.id || 'none'),
      this.files.key(e.id || 'none'),
      nowSeconds(),
      o.id,
      o.meta,
      o.content,
      e.id,
      e.meta,
      e.content,
    )) as number;
    return done === 1;
  }

  /**
   * Cancels a batch: waiting requests are removed from the queue (and counted as skipped), running
   * ones finish; the batch is cancelled once every line is settled. Returns the status before, or
   * null when the batch does not exist.
   */
  async cancel(batch: string): Promise<BatchStatus | null> {
    if (!BATCH_ID.test(batch)) return null;
    const before = (await this.redis.eval(CANCEL, 1, this.key(batch), nowSeconds())) as BatchStatus | null;
    if (before !== 'in_progress' && before !== 'validating') return before;
    // validating: no job is queued yet, and create() finds it cancelling and ends it cancelled
    if (before === 'validating') return before;
    const total = Number(await this.redis.hget(this.key(batch), 'total'));
    const settled = new Set(await this.redis.hkeys(this.key(batch, ':results')));
    let last = 0;
    for (let i = 0; i < total; i++) {
      if (settled.has(String(i))) continue;
      if ((await this.queue.remove(BatchStore.jobId(batch, i))) === 1) last = await this.record(batch, i, 's', '');
    }
    // every line settled without a worker's help: finalize here (a queued finalize job finds it done)
    if (last === 1) await this.finalize(batch);
    return before;
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}

/** Every job: retried twice (after 1 s, 2 s) when its worker threw; done jobs are dropped. */
const JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { count: 1000 },
} as const;
