/**
 * The shared tier of the prefix-state cache, on Redis (ioredis): the scheduler looks here after its
 * in-process LRU (prefix_cache.ts) and writes here what it writes there (every prompt end, every
 * block of long prompts).
 *
 * Keys (one hash tag per model, so a cluster keeps a model's keys on one node):
 *   PREFIX:{FP}:s:NS:LEN:DIGEST   a state: codec.ts value for the first LEN tokens (DIGEST: their SHA-256)
 *   PREFIX:{FP}:s:NS:lens         the prefix lengths stored lately (sorted set, scored by write time)
 *   PREFIX:{FP}:s:index           every state key by write time: the size cap drops the oldest
 * A lookup reads the lengths, asks which candidate keys exist (one pipeline), then reads the longest
 * and checks it (codec.ts): a value that fails is deleted and counted, and the next one is tried.
 *
 * Redis down or slow never fails a request: lookups give up after `timeoutMs` (a miss, counted),
 * writes are queued off the request's path (bounded; dropped and counted beyond it) on a connection of
 * their own, commands fail at once while disconnected (no offline queue), and each outage is one log
 * line (the URL without its credentials), its end another.
 *
 * @example
 *   const tier = new RedisStateTier(checkStateStoreOptions('x', { url: 'redis://127.0.0.1:6379' }), fp);
 *   const hit = await tier.lookup('dense', prompt, 1, prompt.length - 1);   // { length, state } | null
 *   tier.insert('dense', prompt.slice(0, 256), snapshot);                   // queued
 */
import { createHash } from 'crypto';
import { Redis, type RedisOptions } from 'ioredis';

import * as v from '../../validate';
import { decodeState, encodeState, StateRejected, STATE_HEADER_BYTES, tokenBytes, type RejectReason } from './codec';

export interface StateStoreOptions {
  /** redis://[user:pass@]host:port[/db] or rediss:// (TLS). */
  url: string;
  /** Key prefix of this deployment (default 'simba'). */
  prefix?: string;
  /** Seconds a prefix state lives in Redis (default 3600). */
  ttlSeconds?: number;
  /** Size cap of the prefix states in Redis, MiB (default 1024): the oldest go beyond it. */
  maxMb?: number;
  /** The most a lookup waits for Redis, ms (default: defaultStateTimeoutMs of the model's state size). */
  timeoutMs?: number;
  /** States waiting to be written, MiB (default 64): beyond it new writes are dropped (counted). */
  writeQueueMb?: number;
  /** Seconds a stored response (Responses API, store: true) lives in Redis (default 30 days). */
  responseTtlSeconds?: number;
}

const STORE_KEYS = ['url', 'prefix', 'ttlSeconds', 'maxMb', 'timeoutMs', 'writeQueueMb', 'responseTtlSeconds'] as const;
/** Candidate lengths a lookup asks about at most, and distinct lengths remembered per namespace. */
const MAX_CANDIDATES = 32;
const MAX_LENGTHS = 4096;
/** Values a lookup reads at most (a rejected one lets it try the next). */
const MAX_READS = 3;

/**
 * The default lookup bound for a model whose recurrent state is stateBytes: 250 ms plus reading the
 * state at 25 MB/s. A lookup reads one state; gets measured 62-77 MB/s on a busy 2-vCPU machine
 * (bench/RESULTS.md: 2.67 MiB 36 ms, 14.25 MiB 232 ms, 23.75 MiB 402 ms), so the bound is 2.5-3x
 * that for the larger shapes: mamba-130m 362 ms, 1.4b 848 ms, 2.8b 1,247 ms (a fixed 250 ms made
 * every 2.8b lookup time out).
 */
export function defaultStateTimeoutMs(stateBytes: number): number {
  return Math.min(60000, 250 + Math.ceil(Math.max(0, stateBytes) / 25000));
}

/**
 * Checks the options (E_ARG naming the bad one) and fills in the defaults; timeoutMs from the
 * model's state size (stateBytes; 0 before the model is known).
 */
export function checkStateStoreOptions(where: string, o: unknown, stateBytes = 0): Required<StateStoreOptions> {
  const s = v.options(where, o, STORE_KEYS, 'stateStore');
  const url = v.string(where, 'stateStore.url', s.url, true);
  if (url === undefined || !/^rediss?:\/\/[^/\s]/.test(url))
    throw v.argError(where, 'stateStore.url must be redis://[user:pass@]host:port[/db] or rediss://...', 'stateStore.url');
  const prefix = v.string(where, 'stateStore.prefix', s.prefix, true) ?? 'simba';
  if (/[\s{}]/.test(prefix)) throw v.argError(where, 'stateStore.prefix must not hold spaces or braces', 'stateStore.prefix');
  return {
    url,
    prefix,
    ttlSeconds: v.int(where, 'stateStore.ttlSeconds', s.ttlSeconds, 1, 365 * 86400) ?? 3600,
    maxMb: v.int(where, 'stateStore.maxMb', s.maxMb, 1) ?? 1024,
    timeoutMs: v.int(where, 'stateStore.timeoutMs', s.timeoutMs, 1, 60000) ?? defaultStateTimeoutMs(stateBytes),
    writeQueueMb: v.int(where, 'stateStore.writeQueueMb', s.writeQueueMb, 1) ?? 64,
    responseTtlSeconds: v.int(where, 'stateStore.responseTtlSeconds', s.responseTtlSeconds, 1, 365 * 86400) ?? 30 * 86400,
  };
}

/** The URL as it may be logged: user and password replaced by '***'. */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)[^@/]*@/, '$1***@');
}

export interface RedisTierStats {
  /** Lookups asked, found a state, found none, failed (Redis down, slow or erroring). */
  lookups: number;
  hits: number;
  misses: number;
  errors: number;
  /** Values refused by the checks (codec.ts), by reason; each is deleted. */
  rejected: Partial<Record<RejectReason, number>>;
  bytesRead: number;
  /** Writes done, failed, dropped (queue full or Redis down), and their bytes. */
  writes: number;
  writeErrors: number;
  writesDropped: number;
  bytesWritten: number;
  /** Redis answers now / has answered since start. */
  up: boolean;
  reached: boolean;
}

// A write: the state, its key in the lengths set and index; keeps the size cap (entries) and the TTL.
const PUT_SCRIPT = `
local now = tonumber(ARGV[3])
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('DEL', old[i]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now, ARGV[5])
local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
`;

interface PendingWrite {
  ns: string;
  tokens: Int32Array;
  state: Buffer;
}

type Client = Redis & {
  simbaPut(
    k1: string,
    k2: string,
    k3: string,
    value: Buffer,
    ttl: number,
    now: number,
    cap: number,
    len: number,
    maxLens: number,
  ): Promise<number>;
};

export class RedisStateTier {
  /** Lookups and responses (commands time out after timeoutMs); writes have a connection of their own. */
  readonly reader: Redis;
  private readonly writer: Client;
  private readonly base: string;
  private readonly queue: PendingWrite[] = [];
  private queuedBytes = 0;
  private writing: Promise<void> | null = null;
  private down = false;
  private closed = false;
  private readonly counts = {
    lookups: 0,
    hits: 0,
    misses: 0,
    errors: 0,
    bytesRead: 0,
    writes: 0,
    writeErrors: 0,
    writesDropped: 0,
    bytesWritten: 0,
  };
  private readonly rejected: Partial<Record<RejectReason, number>> = {};
  private reached = false;

  /** `options` as checkStateStoreOptions() returns them (createServer checks them up front). */
  constructor(
    readonly options: Required<StateStoreOptions>,
    readonly fingerprint: string,
    private readonly log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  ) {
    this.base = `${this.options.prefix}:{${fingerprint}}`;
    this.reader = this.connect(this.options.timeoutMs);
    this.writer = this.connect(Math.max(10000, this.options.timeoutMs)) as Client;
    this.writer.defineCommand('simbaPut', { numberOfKeys: 3, lua: PUT_SCRIPT });
  }

  private connect(commandTimeout: number): Redis {
    const o: RedisOptions = {
      // fail at once while disconnected instead of queueing behind a dead connection
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout,
      connectTimeout: Math.max(1000, this.options.timeoutMs * 4),
      retryStrategy: (n) => Math.min(100 * n, 1000),
      lazyConnect: false,
    };
    const c = new Redis(this.options.url, o);
    // ioredis reports connection errors as events: one log line per outage, never the credentials
    c.on('error', (e: Error & { code?: string }) => this.outage(e.code ?? e.message));
    c.on('ready', () => this.recovered());
    return c;
  }

  private outage(why: string): void {
    if (this.down || this.closed) return;
    this.down = true;
    this.log(
      `simba serve: state store ${redactUrl(this.options.url)} unreachable (${why.slice(0, 200)}); serving from the local tier until it is back`,
    );
  }

  private recovered(): void {
    const was = this.down;
    this.down = false;
    this.reached = true;
    if (was && !this.closed) this.log(`simba serve: state store ${redactUrl(this.options.url)} reachable again`);
  }

  /** Redis has answered since start (readiness). */
  get everReached(): boolean {
    return this.reached;
  }

  /** A key of this deployment and model: PREFIX:{FP}:rest. */
  key(rest: string): string {
    return `${this.base}:${rest}`;
  }

  private stateKey(ns: string, length: number, digest: string): string {
    return this.key(`s:${ns}:${length}:${digest}`);
  }

  /** The SHA-256 digests (32 hex) of tokens[0, len) for each of `lengths` (ascending), in one pass. */
  private static digests(tokens: ArrayLike<number>, lengths: number[]): Map<number, string> {
    const out = new Map<number, string>();
    const h = createHash('sha256');
    let at = 0;
    for (const len of lengths) {
      const part = Array.prototype.slice.call(tokens, at, len) as number[];
      h.update(tokenBytes(part, part.length));
      at = len;
      out.set(len, h.copy().digest('hex').slice(0, 32));
    }
    return out;
  }

  /**
   * The longest stored state for a prefix of `tokens` of minLength..maxLength tokens, checked; null
   * when there is none, Redis fails or takes more than timeoutMs.
   */
  async lookup(
    ns: string,
    tokens: ArrayLike<number>,
    minLength: number,
    maxLength: number,
  ): Promise<{ length: number; state: Buffer } | null> {
    if (minLength > maxLength || this.closed) return null;
    this.counts.lookups++;
    if (this.reader.status !== 'ready') {
      this.counts.errors++;
      return null;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((res) => {
      timer = setTimeout(() => res('timeout'), this.options.timeoutMs);
    });
    try {
      const r = await Promise.race([this.find(ns, tokens, minLength, maxLength), timeout]);
      if (r === 'timeout') {
        this.counts.errors++;
        return null;
      }
      if (r) this.counts.hits++;
      else this.counts.misses++;
      return r;
    } catch {
      this.counts.errors++;
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  private async find(
    ns: string,
    tokens: ArrayLike<number>,
    minLength: number,
    maxLength: number,
  ): Promise<{ length: number; state: Buffer } | null> {
    const stored = await this.reader.zrange(this.key(`s:${ns}:lens`), 0, -1);
    const lens = [...new Set(stored.map(Number))]
      .filter((l) => Number.isInteger(l) && l >= minLength && l <= maxLength)
      .sort((a, b) => b - a)
      .slice(0, MAX_CANDIDATES);
    if (lens.length === 0) return null;
    const digests = RedisStateTier.digests(tokens, [...lens].reverse());
    const keys = lens.map((l) => this.stateKey(ns, l, digests.get(l)!));
    const exists = (await this.reader.pipeline(keys.map((k) => ['exists', k])).exec()) ?? [];
    let reads = 0;
    for (let i = 0; i < lens.length && reads < MAX_READS; i++) {
      if (exists[i]?.[1] !== 1) continue;
      reads++;
      const value = await this.reader.getBuffer(keys[i]);
      if (!value) continue;
      this.counts.bytesRead += value.byteLength;
      try {
        const state = decodeState(value, { fingerprint: this.fingerprint, prefix: digests.get(lens[i])!, position: lens[i] });
        return { length: lens[i], state };
      } catch (e) {
        if (!(e instanceof StateRejected)) throw e;
        this.reject(e.reason, keys[i]);
      }
    }
    return null;
  }

  /** Counts a refused value and deletes it (in the background). */
  reject(reason: RejectReason, key: string): void {
    this.countRejected(reason);
    this.writer.del(key).catch(() => undefined);
  }

  countRejected(reason: RejectReason): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
  }

  /** Writes a hash of binary fields at PREFIX:{FP}:rest with a TTL (stored responses); rejects when Redis fails. */
  async putHash(rest: string, fields: Record<string, Buffer>, ttlMs: number): Promise<void> {
    const key = this.key(rest);
    await this.writer.multi().del(key).hset(key, fields).pexpire(key, ttlMs).exec();
  }

  /** The hash at PREFIX:{FP}:rest (null: none); rejects when Redis fails or takes more than timeoutMs. */
  async getHash(rest: string): Promise<Record<string, Buffer> | null> {
    const h = await this.reader.hgetallBuffer(this.key(rest));
    return Object.keys(h).length > 0 ? h : null;
  }

  /** Deletes PREFIX:{FP}:rest; whether it existed. */
  async deleteKey(rest: string): Promise<boolean> {
    return (await this.writer.del(this.key(rest))) > 0;
  }

  /** Queues the state after `prefix` for writing; returns at once. */
  insert(ns: string, prefix: ArrayLike<number>, state: Buffer): void {
    if (this.closed || prefix.length === 0) return;
    const bytes = state.byteLength + STATE_HEADER_BYTES;
    if (this.writer.status !== 'ready' || this.queuedBytes + bytes > this.options.writeQueueMb * 2 ** 20) {
      this.counts.writesDropped++;
      return;
    }
    this.queue.push({ ns, tokens: Int32Array.from(prefix), state });
    this.queuedBytes += bytes;
    this.writing ??= this.drain();
  }

  private async drain(): Promise<void> {
    // the first write starts after the current tick: the request that produced it goes on first
    await new Promise<void>((res) => setImmediate(res));
    try {
      for (let w = this.queue.shift(); w; w = this.queue.shift()) {
        this.queuedBytes -= w.state.byteLength + STATE_HEADER_BYTES;
        await this.write(w);
      }
    } finally {
      this.writing = null;
    }
  }

  private async write(w: PendingWrite): Promise<void> {
    const n = w.tokens.length;
    const prefix = RedisStateTier.digests(w.tokens, [n]).get(n)!;
    const value = encodeState({ fingerprint: this.fingerprint, prefix, position: n, snapshot: w.state });
    const cap = Math.max(1, Math.floor((this.options.maxMb * 2 ** 20) / value.byteLength));
    try {
      await this.writer.simbaPut(
        this.stateKey(w.ns, n, prefix),
        this.key('s:index'),
        this.key(`s:${w.ns}:lens`),
        value,
        this.options.ttlSeconds * 1000,
        Date.now(),
        cap,
        n,
        MAX_LENGTHS,
      );
      this.counts.writes++;
      this.counts.bytesWritten += value.byteLength;
    } catch {
      this.counts.writeErrors++;
    }
  }

  /** Resolves when the queued writes are done (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  stats(): RedisTierStats {
    return {
      ...this.counts,
      rejected: { ...this.rejected },
      up: !this.down && this.reader.status === 'ready',
      reached: this.reached,
    };
  }

  /** Finishes the queued writes (at most `graceMs`), then closes both connections. */
  async close(graceMs = 2000): Promise<void> {
    if (this.closed) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise<void>((res) => (timer = setTimeout(res, graceMs)))]);
    clearTimeout(timer);
    this.closed = true;
    this.queue.length = 0;
    this.reader.disconnect();
    this.writer.disconnect();
  }
}
