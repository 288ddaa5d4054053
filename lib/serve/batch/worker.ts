/**
 * A batch worker: takes request jobs from the BullMQ queue and runs each through an in-process
 * SimbaServer (not listening: fastify's inject), so a batch line gets exactly the validation, the
 * scheduler (continuous batching across the `concurrency` jobs it holds) and the response body a
 * single HTTP request to `simba serve` gets. Results go to the batch's results hash once per line
 * (batches.ts); the worker whose result completes a batch queues its finalize job. A request taken
 * after its batch's completion window ended is not run: it goes to the error file as batch_expired
 * (the batch then ends expired).
 *
 * A killed worker loses nothing: its jobs' locks expire after lockDuration and BullMQ's stalled
 * check (every stalledInterval, in any live worker) puts them back in the queue.
 *
 * @example
 *   const w = new BatchWorker({ server, service, concurrency: 16 });
 *   process.on('SIGTERM', () => w.close().then(() => server.shutdown()));
 */
import { randomBytes } from 'crypto';
import { Worker, type Job } from 'bullmq';

import type { SimbaServer } from '../server';
import * as v from '../../validate';
import { QUEUE_NAME, type BatchJob, type ResultKind } from './batches';
import type { BatchService } from './service';

export interface BatchWorkerOptions {
  /** Runs the requests (its model, scheduler and limits); needs no API key and no batch option. */
  server: SimbaServer;
  service: BatchService;
  /** Requests held at once (default 16): they share the scheduler's batch. */
  concurrency?: number;
  /** ms a job stays locked without renewal before another worker may take it (default 30000). */
  lockDuration?: number;
  /** ms between stalled-job checks (default 30000). */
  stalledInterval?: number;
  /** Times a job may be recovered from a dead worker before its line fails (default 3). */
  maxStalledCount?: number;
  /** The worker's name on the jobs it takes (default host:pid). */
  name?: string;
}

/** Answers that say "try again later", not "this request is bad": the job is retried instead of recorded. */
const RETRY_STATUS = new Set([429, 503]);

const WORKER_OPTIONS = [
  'server',
  'service',
  'concurrency',
  'lockDuration',
  'stalledInterval',
  'maxStalledCount',
  'name',
] as const;

export class BatchWorker {
  readonly worker: Worker<BatchJob>;
  private readonly server: SimbaServer;
  private readonly service: BatchService;

  constructor(opts: BatchWorkerOptions) {
    const where = 'BatchWorker';
    const o = v.options(where, opts, WORKER_OPTIONS);
    if (!o.server || !o.service) throw v.argError(where, 'server and service are required');
    this.server = opts.server;
    this.service = opts.service;
    const concurrency = v.int(where, 'concurrency', o.concurrency, 1, 4096) ?? 16;
    const lockDuration = v.int(where, 'lockDuration', o.lockDuration, 100) ?? 30000;
    const stalledInterval = v.int(where, 'stalledInterval', o.stalledInterval, 100) ?? 30000;
    const maxStalledCount = v.int(where, 'maxStalledCount', o.maxStalledCount, 0) ?? 3;
    const name = v.string(where, 'name', o.name, true) ?? `${process.env.HOSTNAME ?? 'worker'}:${process.pid}`;
    this.worker = new Worker<BatchJob>(QUEUE_NAME, (job) => this.process(job), {
      connection: this.service.redis,
      prefix: `${this.service.prefix}:bull`,
      concurrency,
      lockDuration,
      stalledInterval,
      maxStalledCount,
      name,
    });
    this.worker.on('error', () => undefined);
    // a job that failed for good (its tries used up, or recovered from dead workers too often): its line fails
    this.worker.on('failed', (job, err) => {
      if (!job || 'finalize' in job.data) return;
      if (job.attemptsMade < (job.opts.attempts ?? 1) && !/stalled/i.test(err.message)) return;
      void this.recordFailure(job.data.batch, job.data.line, err).catch(() => undefined);
    });
  }

  private ids() {
    return { id: `batch_req_${randomBytes(12).toString('hex')}` };
  }

  /** A line whose job failed for good goes to the error file with the reason. */
  private async recordFailure(batch: string, line: number, err: Error): Promise<void> {
    const l = await this.service.batches.lineOf(batch, line);
    const customId = l?.text ? (JSON.parse(l.text) as { custom_id: string }).custom_id : null;
    const error = { code: 'batch_worker_failed', message: err.message.slice(0, 500) };
    await this.record(batch, line, 'e', JSON.stringify({ ...this.ids(), custom_id: customId, response: null, error }));
  }

  private record(batch: string, line: number, kind: ResultKind, text: string): Promise<number> {
    return this.service.batches.record(batch, line, kind, text);
  }

  private async process(job: Job<BatchJob>): Promise<void> {
    const d = job.data;
    const batches = this.service.batches;
    if ('finalize' in d) {
      await batches.finalize(d.batch);
      return;
    }
    const l = await batches.lineOf(d.batch, d.line);
    if (!l || l.text === null) return; // the batch is gone or already final
    if (l.status === 'cancelling') {
      await this.record(d.batch, d.line, 's', '');
      return;
    }
    if (l.status !== 'in_progress') {
      if (l.status === 'finalizing') await this.record(d.batch, d.line, 's', ''); // re-queues a lost finalize
      return;
    }
    const line = JSON.parse(l.text) as { custom_id: string; url: string; body: Record<string, unknown> };
    if (l.expired) {
      const error = { code: 'batch_expired', message: 'the batch expired before this request could be run' };
      await this.record(
        d.batch,
        d.line,
        'x',
        JSON.stringify({ ...this.ids(), custom_id: line.custom_id, response: null, error }),
      );
      return;
    }
    const res = await this.server.app.inject({ method: 'POST', url: line.url, payload: line.body });
    if (RETRY_STATUS.has(res.statusCode))
      throw new Error(`the worker's server answered ${res.statusCode}: ${res.body.slice(0, 200)}`);
    const body: unknown = JSON.parse(res.body);
    const out = {
      ...this.ids(),
      custom_id: line.custom_id,
      response: { status_code: res.statusCode, request_id: `req_${randomBytes(12).toString('hex')}`, body },
      error: null,
    };
    await this.record(d.batch, d.line, res.statusCode < 300 ? 'o' : 'e', JSON.stringify(out));
  }

  /** Stops taking jobs and waits for the running ones. */
  async close(): Promise<void> {
    await this.worker.close();
  }
}
