/**
 * /metrics of the state tiers and of the replica: which replica answers (simba_replica_info), and
 * per tier ('local': the in-process LRU, 'redis': the shared tier) lookups by result, bytes held,
 * read and written, writes by result, values refused by reason, and where restored prompt states
 * came from. Read from the tiers' own counters at scrape time.
 *
 * @example
 *   registerTierMetrics(metrics.registry, () => ({ replica, fingerprint, model, local: cache.stats(), redis: tier?.stats() ?? null, restored: sched.restored }));
 */
import { Counter, Gauge, type Registry } from 'prom-client';

import type { PrefixCacheStats } from '../prefix_cache';
import type { RedisTierStats } from './redis_tier';

export interface TierMetricsSource {
  replica: string;
  model: string;
  /** '' until the model is loaded. */
  fingerprint: string;
  local: PrefixCacheStats | null;
  redis: RedisTierStats | null;
  restored: { local: number; shared: number; initial: number; failed: number } | null;
}

type Labels = Record<string, string>;

export function registerTierMetrics(registry: Registry, source: () => TierMetricsSource): void {
  const registers = [registry];
  // values that live in the tiers' own counters, read at scrape time
  const spec = (name: string, help: string, labelNames: string[], read: (s: TierMetricsSource) => [Labels, number][]) => ({
    name,
    help,
    labelNames,
    registers,
    collect(this: Counter | Gauge) {
      this.reset();
      for (const [labels, value] of read(source()))
        if (this instanceof Gauge) this.set(labels, value);
        else if (value > 0) this.inc(labels, value);
    },
  });
  const counter = (...a: Parameters<typeof spec>) => new Counter(spec(...a));
  const gauge = (...a: Parameters<typeof spec>) => new Gauge(spec(...a));
  gauge(
    'simba_replica_info',
    'This replica: its id, model name and model fingerprint (value 1).',
    ['replica', 'model', 'fingerprint'],
    (s) => [[{ replica: s.replica, model: s.model, fingerprint: s.fingerprint }, 1]],
  );
  counter(
    'simba_state_tier_lookups_total',
    'Prefix-state lookups per tier by result (hit, miss, error).',
    ['tier', 'result'],
    (s) => [
      [{ tier: 'local', result: 'hit' }, s.local?.hits ?? 0],
      [{ tier: 'local', result: 'miss' }, (s.local?.queries ?? 0) - (s.local?.hits ?? 0)],
      [{ tier: 'redis', result: 'hit' }, s.redis?.hits ?? 0],
      [{ tier: 'redis', result: 'miss' }, s.redis?.misses ?? 0],
      [{ tier: 'redis', result: 'error' }, s.redis?.errors ?? 0],
    ],
  );
  gauge('simba_state_tier_bytes', 'Bytes of prefix states held in process (tier local).', ['tier'], (s) => [
    [{ tier: 'local' }, s.local?.bytes ?? 0],
  ]);
  counter('simba_state_tier_read_bytes_total', 'Bytes of states read from the shared tier.', ['tier'], (s) => [
    [{ tier: 'redis' }, s.redis?.bytesRead ?? 0],
  ]);
  counter('simba_state_tier_written_bytes_total', 'Bytes of states written to the shared tier.', ['tier'], (s) => [
    [{ tier: 'redis' }, s.redis?.bytesWritten ?? 0],
  ]);
  counter('simba_state_tier_writes_total', 'Shared-tier writes by result (ok, error, dropped).', ['tier', 'result'], (s) => [
    [{ tier: 'redis', result: 'ok' }, s.redis?.writes ?? 0],
    [{ tier: 'redis', result: 'error' }, s.redis?.writeErrors ?? 0],
    [{ tier: 'redis', result: 'dropped' }, s.redis?.writesDropped ?? 0],
  ]);
  counter(
    'simba_state_tier_rejected_total',
    'Shared-tier values refused by their checks (deleted, never restored), by reason.',
    ['tier', 'reason'],
    (s) => Object.entries(s.redis?.rejected ?? {}).map(([reason, n]) => [{ tier: 'redis', reason }, n ?? 0]),
  );
  gauge('simba_state_tier_up', 'The shared tier answers (1) or not (0).', ['tier'], (s) =>
    s.redis ? [[{ tier: 'redis' }, s.redis.up ? 1 : 0]] : [],
  );
  counter(
    'simba_state_restored_total',
    'Prompts started from a stored state, by source (local, shared, initial: a stored response; failed: did not restore).',
    ['source'],
    (s) => Object.entries(s.restored ?? {}).map(([k, n]) => [{ source: k }, n]),
  );
}
