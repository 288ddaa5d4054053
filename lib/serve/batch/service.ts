/**
 * The Batch API's state for one server or worker process: its Redis client, the file and batch
 * stores, and the upload limits, from the options `createServer({batch})` and `simba worker` take.
 *
 * @example
 *   const svc = openBatchService({ redis: 'redis://127.0.0.1:6379' });
 *   await svc.batches.get('batch_…');
 *   await svc.close();
 */
import type Redis from 'ioredis';

import * as v from '../../validate';
import { BatchStore } from './batches';
import { FileStore } from './files';
import { checkRedisUrl, connectRedis } from './redis';

export interface BatchOptions {
  /** redis://[user:pass@]host:port[/db] or rediss://: files, batches and the job queue live there. */
  redis: string;
  /** Prefix of every Redis key (default 'simba'); servers and workers of one deployment share it. */
  prefix?: string;
  /** Largest uploaded file in bytes (413 beyond; default 64 MiB). */
  maxFileBytes?: number;
  /** Most requests in one input file (400 beyond; default 50000, OpenAI's limit). */
  maxFileLines?: number;
}

export interface BatchService {
  redis: Redis;
  /** Prefix of the Redis keys (the queue's are under PREFIX:bull). */
  prefix: string;
  files: FileStore;
  batches: BatchStore;
  maxFileBytes: number;
  maxFileLines: number;
  close(): Promise<void>;
}

const BATCH_OPTIONS = ['redis', 'prefix', 'maxFileBytes', 'maxFileLines'] as const;

export function openBatchService(opts: BatchOptions, where = 'batch'): BatchService {
  const o = v.options(where, opts, BATCH_OPTIONS);
  const url = checkRedisUrl(where, 'redis', o.redis);
  const prefix = v.string(where, 'prefix', o.prefix, true) ?? 'simba';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) throw v.argError(where, 'prefix must be 1-64 letters, digits, _ . or -', 'prefix');
  const maxFileBytes = v.int(where, 'maxFileBytes', o.maxFileBytes, 1, 512 << 20) ?? 64 << 20;
  const maxFileLines = v.int(where, 'maxFileLines', o.maxFileLines, 1) ?? 50000;
  const redis = connectRedis(url);
  const files = new FileStore(redis, prefix);
  const batches = new BatchStore(redis, prefix, files);
  return {
    redis,
    prefix,
    files,
    batches,
    maxFileBytes,
    maxFileLines,
    close: async () => {
      await batches.close();
      redis.disconnect();
    },
  };
}
