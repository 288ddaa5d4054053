/**
 * Prometheus metrics of the server (prom-client, its own registry), named in the vLLM style with
 * a `simba_` prefix. The scheduler reports through the SchedulerObserver hooks; the gauges read
 * the scheduler and the prefix cache at scrape time.
 *
 * @example
 *   const m = new Metrics(() => ({ running: s.runningCount, waiting: s.waitingCount, cache: cache.stats() }));
 *   new Scheduler(model, { observer: m.observer });
 *   res.type(m.contentType).send(await m.render());
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { PrefixCacheStats } from './prefix_cache';
import type { SchedulerObserver } from './scheduler';

const LATENCY = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const TOKEN_LATENCY = [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

export interface MetricsSource {
  running: number;
  waiting: number;
  /** Sequences holding a slot. */
  slots: number;
  cache: PrefixCacheStats | null;
}

export class Metrics {
  readonly registry = new Registry();
  readonly observer: SchedulerObserver;
  private readonly finished: Counter<'outcome' | 'finished_reason'>;

  constructor(source: () => MetricsSource) {
    const r = [this.registry];
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: r,
        collect() {
          this.set(read());
        },
      });
    gauge('simba_num_requests_running', 'Requests holding decode slots (prefilling or decoding).', () => source().running);
    gauge('simba_num_requests_waiting', 'Requests waiting for a slot.', () => source().waiting);
    gauge('simba_num_sequences_running', 'Sequences (choices) holding slots.', () => source().slots);
    gauge('simba_prefix_cache_entries', 'States held by the prefix cache.', () => source().cache?.entries ?? 0);
    gauge('simba_prefix_cache_bytes', 'Bytes held by the prefix cache.', () => source().cache?.bytes ?? 0);
    const cacheQueries = new Counter({
      name: 'simba_prefix_cache_queries_total',
      help: 'Prompt tokens looked up in the prefix cache.',
      registers: r,
    });
    const cacheHits = new Counter({
      name: 'simba_prefix_cache_hits_total',
      help: 'Prompt tokens found in the prefix cache (prefill saved).',
      registers: r,
    });
    const cacheReqs = new Counter({
      name: 'simba_prefix_cache_requests_total',
      help: 'Prefix cache lookups by outcome.',
      labelNames: ['hit'],
      registers: r,
    });
    const promptTokens = new Counter({
      name: 'simba_prompt_tokens_total',
      help: 'Prompt tokens of finished requests.',
      registers: r,
    });
    const genTokens = new Counter({ name: 'simba_generation_tokens_total', help: 'Generated tokens.', registers: r });
    this.finished = new Counter({
      name: 'simba_request_success_total',
      help: 'Finished requests by outcome (done, cancelled, error) and finish reason.',
      labelNames: ['outcome', 'finished_reason'],
      registers: r,
    });
    const ttft = new Histogram({
      name: 'simba_time_to_first_token_seconds',
      help: 'Time from arrival to the first generated token.',
      buckets: LATENCY,
      registers: r,
    });
    const itl = new Histogram({
      name: 'simba_inter_token_latency_seconds',
      help: 'Time between two tokens of a choice.',
      buckets: TOKEN_LATENCY,
      registers: r,
    });
    const e2e = new Histogram({
      name: 'simba_e2e_request_latency_seconds',
      help: 'Time from arrival to the end of a request.',
      buckets: LATENCY,
      registers: r,
    });
    const queue = new Histogram({
      name: 'simba_request_queue_time_seconds',
      help: 'Time a request waited for a slot.',
      buckets: LATENCY,
      registers: r,
    });
    const batch = new Histogram({
      name: 'simba_batch_size',
      help: 'Sequences in one native step (decode tokens and prompt chunks).',
      buckets: [1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256],
      registers: r,
    });
    const stepTime = new Histogram({
      name: 'simba_step_seconds',
      help: 'Time of one native step (forward and sampling).',
      buckets: TOKEN_LATENCY,
      registers: r,
    });
    const sampling = new Counter({ name: 'simba_sampling_seconds_total', help: 'Native sampling time.', registers: r });
    // the scheduling policy (issue 31): each tick's prefill share, target misses, Simba under load
    const hist = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, buckets, registers: r });
    const tickPrefill = hist(
      'simba_tick_prefill_tokens',
      'Prompt tokens prefilled in one scheduler tick (its prefill share; ticks that ran).',
      [0, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192],
    );
    const tickPrefillRatio = hist(
      'simba_tick_prefill_ratio',
      'Prompt tokens over all tokens of one scheduler tick (0: decode only, 1: prefill only).',
      [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1],
    );
    const budgets = hist(
      'simba_load_pruning_flops_ratio',
      'Budgets (relative prefill FLOPs) of the prompts pruned under load (--simba-under-load).',
      [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1],
    );
    const [misses, pruned] = [
      ['simba_itl_target_misses_total', 'Scheduler ticks holding decodes that took longer than the inter-token latency target.'],
      ['simba_load_pruned_tokens_total', 'Prompt tokens pruned by Simba under load (tokens the last layer did not process).'],
    ].map(([name, help]) => new Counter({ name, help, registers: r }));
    this.observer = {
      admitted: (s) => queue.observe(s),
      firstToken: (s) => ttft.observe(s),
      interToken: (s) => itl.observe(s),
      finished: (outcome, s, prompt, completion, reasons) => {
        e2e.observe(s);
        promptTokens.inc(prompt);
        genTokens.inc(completion);
        this.finished.inc({
          outcome,
          finished_reason: outcome === 'done' ? (reasons.includes('length') ? 'length' : 'stop') : 'none',
        });
      },
      step: (sequences, _tokens, s, sampleMs) => {
        batch.observe(sequences);
        stepTime.observe(s);
        sampling.inc(sampleMs / 1000);
      },
      tick: (t) => {
        tickPrefill.observe(t.prefillTokens);
        tickPrefillRatio.observe(t.prefillTokens / Math.max(1, t.prefillTokens + t.decodes));
        if (t.missed) misses.inc();
      },
      loadPruned: (budget) => budgets.observe(budget),
      prunedTokens: (n) => pruned.inc(n),
      cacheLookup: (hit, prompt, saved) => {
        cacheQueries.inc(prompt);
        cacheHits.inc(saved);
        cacheReqs.inc({ hit: hit ? 'true' : 'false' });
      },
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
