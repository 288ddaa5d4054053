/**
 * The shared state tier (compiled to dist/bench/state_tier.js), two measurements:
 *
 * 1. Time to first token for a 4,000-token shared prefix plus a 10-token question, on two in-process
 *    servers (replicas A and B, one model) sharing one redis-server: cold on A (its states go to its
 *    local tier and to Redis), a local-tier hit on A (same prefix, another question), and a Redis-tier
 *    hit on B (its local tier has never seen the prefix). A fresh prefix per repetition; medians.
 * 2. The Redis round trip per state for the mamba-130m, -1.4b and -2.8b shapes (state sizes from
 *    shapeInfo; random bytes): a put (queued write until Redis has it: encode + checksum + SET through
 *    the size-cap script) and a get (lookup: lengths, EXISTS, GET, header and checksum checks).
 *
 *   node dist/bench/state_tier.js [--shape mamba-130m] [--prefix 4000] [--reps 5] [--redis redis://127.0.0.1:6379]
 *
 * Without --redis it starts `redis-server` on a free loopback port (no persistence) and stops it.
 */
import { spawn, type ChildProcess } from 'child_process';
import { createServer as netServer } from 'net';

import { randomModel, shapeInfo } from '../lib/engine/load';
import { createServer } from '../lib/serve/server';
import { checkStateStoreOptions, RedisStateTier } from '../lib/serve/state_tier/redis_tier';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function startRedis(): Promise<{ url: string; proc: ChildProcess | null }> {
  const given = arg('redis', '');
  if (given) return { url: given, proc: null };
  const port = await new Promise<number>((res) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((res) => {
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('Ready to accept connections')) res();
    });
  });
  return { url: `redis://127.0.0.1:${port}`, proc };
}

let seed = 12345;
function ids(n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return 1 + ((seed >>> 8) % (vocab - 1));
  });
}

/** Milliseconds from sending a streamed completion to its first token chunk; the cached tokens. */
async function ttft(url: string, prompt: number[]): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt, max_tokens: 2, temperature: 0, stream: true }),
  });
  const reader = r.body!.getReader();
  let text = '';
  let first = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
    if (!first && text.includes('"text"')) first = performance.now() - t0;
  }
  return first;
}

async function ttftBench(url: string): Promise<void> {
  const shape = arg('shape', 'mamba-130m');
  const n = Number(arg('prefix', '4000'));
  const reps = Number(arg('reps', '5'));
  const model = await randomModel(shape, { seed: 1 });
  const opts = { model, modelName: 'm', tokenizer: null, stateStore: { url, timeoutMs: 5000 }, log: () => undefined };
  const a = createServer({ ...opts, replicaId: 'a' });
  const b = createServer({ ...opts, replicaId: 'b' });
  const [ua, ub] = [await a.listen(0), await b.listen(0)];
  await Promise.all([a.ready, b.ready]);
  while (!a.tier!.everReached || !b.tier!.everReached) await new Promise((r) => setTimeout(r, 20));
  const V = model.config.vocabSize;
  const rows: { cold: number; local: number; redis: number }[] = [];
  for (let i = 0; i < reps; i++) {
    const prefix = ids(n, V);
    const cold = await ttft(ua, [...prefix, ...ids(10, V)]);
    const local = await ttft(ua, [...prefix, ...ids(10, V)]);
    await a.tier!.flush();
    const redis = await ttft(ub, [...prefix, ...ids(10, V)]);
    rows.push({ cold, local, redis });
    console.log(
      `rep ${i + 1}: cold ${cold.toFixed(1)} ms, local-tier hit ${local.toFixed(1)} ms, Redis-tier hit (replica b) ${redis.toFixed(1)} ms`,
    );
  }
  const m = {
    cold: median(rows.map((r) => r.cold)),
    local: median(rows.map((r) => r.local)),
    redis: median(rows.map((r) => r.redis)),
  };
  console.log(
    `${shape}, ${n}-token shared prefix + 10-token question, TTFT medians of ${reps}: cold ${m.cold.toFixed(1)} ms, ` +
      `local-tier hit ${m.local.toFixed(1)} ms (${(m.cold / m.local).toFixed(1)}x faster), ` +
      `Redis-tier hit on another replica ${m.redis.toFixed(1)} ms (${(m.cold / m.redis).toFixed(1)}x faster)`,
  );
  await a.shutdown(0);
  await b.shutdown(0);
  model.dispose();
}

async function roundTrip(url: string): Promise<void> {
  const reps = 10;
  for (const shape of ['mamba-130m', 'mamba-1.4b', 'mamba-2.8b']) {
    const bytes = shapeInfo(shape).stateBytes + 32; // a snapshot: 32-byte header + the state
    const tier = new RedisStateTier(
      checkStateStoreOptions('bench', { url, prefix: `bench-rt-${process.pid}`, timeoutMs: 10000, writeQueueMb: 256 }),
      'ab'.repeat(16),
      () => undefined,
    );
    while (!tier.everReached) await new Promise((r) => setTimeout(r, 20));
    const state = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i += 4) state.writeUInt32LE((Math.imul(i, 2654435761) >>> 0) & 0x3fffffff, i);
    const put: number[] = [];
    const get: number[] = [];
    for (let i = 0; i < reps; i++) {
      const prompt = ids(64, 50000);
      let t0 = performance.now();
      tier.insert('dense', prompt, state);
      await tier.flush();
      put.push(performance.now() - t0);
      t0 = performance.now();
      const hit = await tier.lookup('dense', [...prompt, 1], 1, 64);
      get.push(performance.now() - t0);
      if (!hit || hit.length !== 64) throw new Error(`${shape}: the state did not come back (${JSON.stringify(tier.stats())})`);
    }
    console.log(
      `${shape}: state ${(bytes / 2 ** 20).toFixed(2)} MiB, put ${median(put).toFixed(1)} ms, get ${median(get).toFixed(1)} ms, ` +
        `round trip ${(median(put) + median(get)).toFixed(1)} ms (medians of ${reps})`,
    );
    await tier.reader.del(...(await tier.reader.keys(`bench-rt-${process.pid}:*`)));
    await tier.close();
  }
}

async function main(): Promise<void> {
  const redis = await startRedis();
  try {
    await ttftBench(redis.url);
    await roundTrip(redis.url);
  } finally {
    redis.proc?.kill('SIGTERM');
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
