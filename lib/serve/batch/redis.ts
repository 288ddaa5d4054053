/**
 * The Redis connection of the Batch API (server routes and workers): one ioredis client per URL,
 * credentials only from the URL (or the environment variable the CLI reads it from); log lines show
 * it through the state tier's redactUrl, so a password never reaches a log.
 *
 * @example
 *   const redis = connectRedis('redis://:secret@127.0.0.1:6379/0');
 */
import Redis from 'ioredis';

import * as v from '../../validate';

/** Checks a redis:// or rediss:// URL (E_ARG naming `name`, never echoing the URL: it may hold a password). */
export function checkRedisUrl(where: string, name: string, url: unknown): string {
  if (typeof url !== 'string') throw v.argError(where, `${name} must be a redis:// or rediss:// URL`, name);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw v.argError(where, `${name} is not a valid URL (expected redis://[user:pass@]host:port[/db])`, name);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw v.argError(where, `${name} must start with redis:// or rediss://, got ${u.protocol}//`, name);
  if (u.hostname === '') throw v.argError(where, `${name} has no host`, name);
  return url;
}

/**
 * A client for BullMQ and the batch store: commands wait for a reconnect instead of failing after
 * a few retries (maxRetriesPerRequest null, which BullMQ's blocking calls need).
 */
export function connectRedis(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
  // ioredis reports connection errors as events; without a listener node prints them with the
  // client's options. The caller's own commands still reject (or wait) on an outage.
  client.on('error', () => undefined);
  return client;
}
