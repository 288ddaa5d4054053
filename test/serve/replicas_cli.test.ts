/**
 * The README's two-replica setup, as processes: one redis-server and two `simba serve --state-store`
 * on loopback. A prompt served by replica a is restored from Redis by replica b.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as path from 'path';
import Redis from 'ioredis';

import { loadModel } from '../../lib/engine/load';
import { generate } from '../../lib/generate/generate';
import { startRedis, type RedisServer } from '../helpers/redis_server';
import { post, until } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');

interface Replica {
  child: ChildProcess;
  url: string;
  stderr: () => string;
}

function serve(id: string, redisUrl: string): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--port', '0', '--model-name', 'm', '--replica-id', id, '--state-prefix', 'readme', '--grace', '2'],
    // the URL (with its password) comes from the environment, as the README shows
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SIMBA_STATE_STORE: redisUrl } },
  );
  let stderr = '';
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`replica ${id} not ready: ${stderr}`)), 30000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/[^\s]+)[\s\S]*ready/.exec(stderr);
      if (m) {
        clearTimeout(t);
        res({ child, url: m[1], stderr: () => stderr });
      }
    });
  });
}

let redis: RedisServer;
const children: ChildProcess[] = [];
beforeAll(async () => {
  redis = await startRedis({ args: ['--requirepass', 'readme-secret'] });
});
afterAll(async () => {
  await Promise.all(
    children.map((c) => {
      const exited = c.exitCode !== null || c.signalCode !== null;
      c.kill('SIGKILL');
      return exited ? undefined : new Promise((res) => c.once('exit', res));
    }),
  );
  await redis.stop();
});

test('two simba serve processes share prompt states through one redis-server', async () => {
  const url = `redis://:readme-secret@127.0.0.1:${redis.port}/0`;
  const [a, b] = await Promise.all([serve('a', url), serve('b', url)]);
  children.push(a.child, b.child);
  for (const r of [a, b])
    expect(await until(async () => (await fetch(`${r.url}/health/ready`)).status === 200, 10000)).toBe(true);
  const prompt = Array.from({ length: 1200 }, (_, i) => 1 + ((i * 7919) % 4095));
  const body = (p: number[]) => JSON.stringify({ model: 'm', prompt: p, max_tokens: 8, temperature: 0 });
  const ra = await post(a.url, '/v1/completions', body(prompt));
  expect(ra.status).toBe(200);
  expect(ra.headers.get('x-simba-replica')).toBe('a');
  // a's writes are asynchronous: wait until its prompt-end state is in
  const c = new Redis(url, { maxRetriesPerRequest: 0 });
  try {
    expect(await until(async () => (await c.keys('readme:*:s:dense:1200:*')).length === 1, 10000)).toBe(true);
  } finally {
    c.disconnect();
  }
  const rb = await post(b.url, '/v1/completions', body([...prompt, 9, 8, 7]));
  expect(rb.status).toBe(200);
  expect(rb.headers.get('x-simba-replica')).toBe('b');
  expect((rb.json.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens).toBe(1200);
  // the same tokens as a cold run (a fresh model in this process, no cache)
  const model = await loadModel();
  let cold = '';
  try {
    for await (const p of generate(model, [...prompt, 9, 8, 7], { maxTokens: 8, temperature: 0 })) cold += p.text;
  } finally {
    model.dispose();
  }
  expect((rb.json.choices as { text: string }[])[0].text).toBe(cold);
  for (const r of [a, b]) {
    expect(r.stderr()).toContain(`state store redis://***@127.0.0.1:${redis.port}/0`);
    expect(r.stderr()).not.toContain('readme-secret');
  }
}, 90000);
