/**
 * The shared state tier on a real redis-server (test/helpers/redis_server.ts): the value format
 * refuses damaged values, the fingerprint separates checkpoints, two servers share prompt states,
 * Redis dying under load fails no request, and a corrupted value is refused and counted.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Redis from 'ioredis';

import { DEFAULT_MODEL_DIR, loadModel, randomModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { generate } from '../../lib/generate/generate';
import { decodeState, encodeState, prefixDigest, StateRejected } from '../../lib/serve/state_tier/codec';
import { modelFingerprint } from '../../lib/serve/state_tier/fingerprint';
import { checkStateStoreOptions, defaultStateTimeoutMs, redactUrl } from '../../lib/serve/state_tier/redis_tier';
import { startRedis, type RedisServer } from '../helpers/redis_server';
import { metrics, post, start, until, type Running, modelAndRedis } from './helpers';

const env = modelAndRedis();
let model: MambaModel;
let redis: RedisServer;
beforeAll(() => ({ model, redis } = env));
const NAME = 'brown-mamba-s';

/** Deterministic token ids in [1, 4096): a long prompt without tokenizing text. */
function ids(n: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return 1 + ((x >>> 8) % 4095);
  });
}

async function coldText(prompt: number[], maxTokens: number): Promise<string> {
  let t = '';
  for await (const p of generate(model, prompt, { maxTokens, temperature: 0 })) t += p.text;
  return t;
}

const replicas: Running[] = [];
/** A server on the shared Redis; waits until it is ready (the state store answered) unless told not to. */
async function replica(id: string, extra: Record<string, unknown> = {}, url = redis.url, waitReady = true): Promise<Running> {
  const r = await start({
    model,
    modelName: NAME,
    maxPromptTokens: 8192,
    replicaId: id,
    stateStore: { url, prefix: 't', timeoutMs: 2000 },
    log: () => undefined,
    ...extra,
  });
  replicas.push(r);
  await r.server.ready;
  if (waitReady) expect(await until(async () => (await fetch(`${r.url}/health/ready`)).status === 200)).toBe(true);
  return r;
}
afterEach(async () => {
  for (const r of replicas.splice(0)) await r.server.shutdown(0);
});

const complete = (r: Running, prompt: number[], maxTokens: number) =>
  post(r.url, '/v1/completions', JSON.stringify({ model: NAME, prompt, max_tokens: maxTokens, temperature: 0 }));

describe('value format (codec)', () => {
  const snapshot = Buffer.from(Float32Array.from({ length: 64 }, (_, i) => i * 0.5).buffer);
  const id = { fingerprint: 'ab'.repeat(16), prefix: prefixDigest([1, 2, 3], 3), position: 3 };

  test('a value decodes to its snapshot; every damage is refused with its reason', () => {
    const value = encodeState({ ...id, snapshot });
    expect(decodeState(value, id).equals(snapshot)).toBe(true);
    const reason = (buf: Buffer, want = id) => {
      try {
        decodeState(buf, want);
        return 'accepted';
      } catch (e) {
        return e instanceof StateRejected ? e.reason : `threw ${String(e)}`;
      }
    };
    const flipped = Buffer.from(value);
    flipped[100] ^= 1;
    expect(reason(flipped)).toBe('checksum');
    expect(reason(value.subarray(0, value.length - 4))).toBe('length');
    expect(reason(Buffer.concat([value, Buffer.alloc(4)]))).toBe('length');
    expect(reason(value.subarray(0, 10))).toBe('short');
    expect(reason(Buffer.from('not a state at all, just some text here..........................'))).toBe('format');
    expect(reason(value, { ...id, fingerprint: 'cd'.repeat(16) })).toBe('fingerprint');
    expect(reason(value, { ...id, prefix: prefixDigest([1, 2, 4], 3) })).toBe('prefix');
    expect(reason(value, { ...id, position: 4 })).toBe('position');
    const header = Buffer.from(value);
    header[40] ^= 1; // the position 3 becomes 2: the header is in the checksum too
    expect(reason(header, { ...id, position: 2 })).toBe('checksum');
  });

  test('options: a bad store URL or unknown option is E_ARG naming it; credentials never shown', () => {
    expect(() => checkStateStoreOptions('t', { url: 'http://x' })).toThrow(/stateStore.url/);
    expect(() => checkStateStoreOptions('t', { url: 'redis://h:1', ttl: 3 })).toThrow(/unknown stateStore option 'ttl'/);
    expect(checkStateStoreOptions('t', { url: 'redis://h:1' })).toMatchObject({
      prefix: 'simba',
      ttlSeconds: 3600,
      timeoutMs: 250,
    });
    // the lookup bound's default: 250 ms + the state read at 25 MB/s; a given timeoutMs wins
    const MiB = 2 ** 20;
    expect([0, 2.67 * MiB, 14.25 * MiB, 23.75 * MiB, 1e12].map(defaultStateTimeoutMs)).toEqual([250, 362, 848, 1247, 60000]);
    expect(checkStateStoreOptions('t', { url: 'redis://h:1' }, 14.25 * MiB).timeoutMs).toBe(848);
    expect(checkStateStoreOptions('t', { url: 'redis://h:1', timeoutMs: 100 }, 14.25 * MiB).timeoutMs).toBe(100);
    expect(redactUrl('redis://user:s3cret@h:6379/2')).toBe('redis://***@h:6379/2');
    expect(redactUrl('rediss://:s3cret@h:6379')).toBe('rediss://***@h:6379');
  });

  test("a server's lookup bound defaults to its model's state size; a given timeoutMs wins", async () => {
    const stateBytes = model.info().stateBytes;
    expect(stateBytes).toBeGreaterThan(25000); // the size does move the default
    const derived = await replica('d', { stateStore: { url: redis.url, prefix: 't' } });
    expect(derived.server.tier!.options.timeoutMs).toBe(defaultStateTimeoutMs(stateBytes));
    expect(derived.server.tier!.options.timeoutMs).toBeGreaterThan(250);
    const given = await replica('g');
    expect(given.server.tier!.options.timeoutMs).toBe(2000);
  });
});

describe('model fingerprint', () => {
  test('the same checkpoint gives the same fingerprint; another seed, weight format or changed weights another', async () => {
    const fp = await modelFingerprint(model);
    expect(fp).toMatch(/^[0-9a-f]{32}$/);
    const again = await loadModel();
    const bf16 = await loadModel(DEFAULT_MODEL_DIR, { weights: 'bf16' });
    const r0 = await randomModel(model.config, { seed: 0 });
    const r1 = await randomModel(model.config, { seed: 1 });
    // a copy of the folder with one weight changed (a byte in the middle of the file)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-fp-'));
    for (const f of fs.readdirSync(DEFAULT_MODEL_DIR)) fs.copyFileSync(path.join(DEFAULT_MODEL_DIR, f), path.join(dir, f));
    const st = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(st);
    bytes[Math.floor(bytes.length / 2)] ^= 0x10;
    fs.writeFileSync(st, bytes);
    const changed = await loadModel(dir);
    try {
      expect(await modelFingerprint(again)).toBe(fp);
      const others = [
        await modelFingerprint(bf16),
        await modelFingerprint(r0),
        await modelFingerprint(r1),
        await modelFingerprint(changed),
      ];
      expect(new Set([fp, ...others]).size).toBe(5);
      expect(await modelFingerprint(r0)).toBe(others[1]);
    } finally {
      for (const m of [again, bf16, r0, r1, changed]) m.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('two replicas on one Redis', () => {
  test('a 2,000-token prompt on A, then it + 10 tokens on B: B restores >= 2,000 tokens from Redis, same tokens as cold', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const prompt = ids(2000, 7);
    const ra = await complete(a, prompt, 4);
    expect(ra.status).toBe(200);
    expect(ra.headers.get('x-simba-replica')).toBe('a');
    await a.server.tier!.flush();
    const longer = [...prompt, ...ids(10, 99)];
    const rb = await complete(b, longer, 16);
    expect(rb.status).toBe(200);
    expect(rb.headers.get('x-simba-replica')).toBe('b');
    const usage = rb.json.usage as { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } };
    expect(usage.prompt_tokens).toBe(2010);
    expect(usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(2000);
    expect((rb.json.choices as { text: string }[])[0].text).toBe(await coldText(longer, 16));
    // per-tier metrics on B: one Redis hit, its bytes read, the state restored from the shared tier
    const m = await metrics(b.url);
    expect(m.get('simba_state_tier_lookups_total{tier="redis",result="hit"}')).toBe(1);
    expect(m.get('simba_state_tier_read_bytes_total{tier="redis"}')).toBeGreaterThan(model.info().stateBytes);
    expect(m.get('simba_state_restored_total{source="shared"}')).toBe(1);
    expect(m.get(`simba_replica_info{replica="b",model="${NAME}",fingerprint="${b.server.fingerprint}"}`)).toBe(1);
    expect(m.get('simba_state_tier_up{tier="redis"}')).toBe(1);
    // A wrote the prompt's states where its local cache keeps them (block ends that end a prefill chunk, the prompt's end)
    expect((await metrics(a.url)).get('simba_state_tier_writes_total{tier="redis",result="ok"}')).toBeGreaterThanOrEqual(1);
    // B now holds it locally: the same request again is a local hit (the 2,010-token state leaves no
    // token to prefill), and Redis holds nothing longer
    const again = await complete(b, longer, 16);
    expect((again.json.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens).toBe(
      2000,
    );
    const m2 = await metrics(b.url);
    expect(m2.get('simba_state_tier_lookups_total{tier="redis",result="hit"}')).toBe(1);
    expect(m2.get('simba_state_tier_lookups_total{tier="local",result="hit"}')).toBe(1);
  });

  test('a corrupted or truncated value planted in Redis is refused (counted, deleted) and the request succeeds', async () => {
    const store = { url: redis.url, prefix: 'poison', timeoutMs: 2000 };
    const a = await replica('a', { stateStore: store, prefillBudget: 256, itlTargetMs: 0 });
    const prompt = ids(600, 11);
    expect((await complete(a, prompt, 2)).status).toBe(200);
    await a.server.tier!.flush();
    const c = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    try {
      const keys = (await c.keys('poison:*:s:dense:*')).filter((k) => !k.endsWith(':lens'));
      expect(keys.length).toBe(3); // blocks 256 and 512, and the prompt end 600
      const at = (n: number) => keys.find((k) => k.includes(`:s:dense:${n}:`))!;
      const v600 = (await c.getBuffer(at(600)))!;
      v600[v600.length >> 1] ^= 0x40; // one bit of the state
      await c.set(at(600), v600);
      const v512 = (await c.getBuffer(at(512)))!;
      await c.set(at(512), v512.subarray(0, v512.length - 1000)); // truncated
      const b = await replica('b', { stateStore: store });
      const longer = [...prompt, 5, 6, 7];
      const rb = await complete(b, longer, 12);
      expect(rb.status).toBe(200);
      expect((rb.json.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens).toBe(
        256,
      );
      expect((rb.json.choices as { text: string }[])[0].text).toBe(await coldText(longer, 12));
      const m = await metrics(b.url);
      expect(m.get('simba_state_tier_rejected_total{tier="redis",reason="checksum"}')).toBe(1);
      expect(m.get('simba_state_tier_rejected_total{tier="redis",reason="length"}')).toBe(1);
      await b.server.tier!.flush();
      expect(await c.exists(at(600))).toBe(0); // refused values are deleted
    } finally {
      c.disconnect();
    }
  });
});

describe('Redis failures', () => {
  test('Redis killed during concurrent streams: every stream completes, new requests too, one log line per outage, no credentials logged', async () => {
    const own = await startRedis({ args: ['--requirepass', 'hunter2pass'] });
    const lines: string[] = [];
    const url = `redis://:hunter2pass@127.0.0.1:${own.port}`;
    const a = await replica('a', { stateStore: { url, timeoutMs: 300 }, log: (l: string) => lines.push(l) }, url);
    try {
      let started = 0;
      let finished = 0;
      const stream = async (i: number) => {
        const r = await fetch(`${a.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: NAME,
            prompt: ids(300 + 40 * i, 100 + i),
            max_tokens: 200,
            stream: true,
            logit_bias: { 0: -100 },
          }),
          signal: AbortSignal.timeout(60000),
        });
        let text = '';
        const dec = new TextDecoder();
        for await (const chunk of r.body!) {
          if (text === '') started++;
          text += dec.decode(chunk as Uint8Array, { stream: true });
        }
        finished++;
        return r.status === 200 && text.trimEnd().endsWith('data: [DONE]') && !text.includes('event: error');
      };
      const streams = Array.from({ length: 8 }, (_, i) => stream(i));
      expect(await until(() => started >= 4, 20000)).toBe(true);
      await own.kill();
      const runningAtKill = 8 - finished;
      const ok = await Promise.all(streams);
      // after the outage: new requests (lookups fail at once, writes are dropped) still succeed
      const after = await Promise.all(Array.from({ length: 4 }, (_, i) => complete(a, ids(300, 500 + i), 4)));
      expect(runningAtKill).toBeGreaterThan(0);
      expect(ok.filter((x) => !x)).toHaveLength(0);
      expect(after.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      const m = await metrics(a.url);
      expect(m.get('simba_state_tier_up{tier="redis"}')).toBe(0);
      expect(
        (m.get('simba_state_tier_lookups_total{tier="redis",result="error"}') ?? 0) +
          (m.get('simba_state_tier_writes_total{tier="redis",result="dropped"}') ?? 0),
      ).toBeGreaterThan(0);
      const outages = lines.filter((l) => l.includes('unreachable'));
      expect(outages).toHaveLength(1);
      expect(outages[0]).toContain(`redis://***@127.0.0.1:${own.port}`);
      expect(lines.join('\n')).not.toContain('hunter2pass');
      // readiness stays: Redis was reached once (a replica keeps serving from its local tier)
      expect((await fetch(`${a.url}/health/ready`)).status).toBe(200);
    } finally {
      await own.stop();
    }
  });

  test('no Redis at the URL: requests are served from the local tier; readiness waits for Redis, liveness does not', async () => {
    const dead = await startRedis();
    await dead.kill();
    const a = await replica('a', { stateStore: { url: dead.url, timeoutMs: 100 } }, dead.url, false);
    const r = await complete(a, ids(50, 3), 4);
    expect(r.status).toBe(200);
    expect((await fetch(`${a.url}/health/live`)).status).toBe(200);
    const ready = await fetch(`${a.url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { error: { code: string } }).error.code).toBe('state_store_unreachable');
    expect((await fetch(`${a.url}/health`)).status).toBe(200);
  });
});
