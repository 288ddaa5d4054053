/**
 * `simba worker` processes against a real redis-server (with a password): a batch of 200 requests
 * on 2 workers, one SIGKILLed mid-way. Its jobs are recovered (BullMQ's stalled check, short
 * intervals here), every request's result appears exactly once in the output file and equals the
 * single request's at temperature 0; the password appears in no log line; SIGTERM stops a worker
 * cleanly.
 */
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as path from 'path';
import { QueueEvents } from 'bullmq';

import { startRedis, type RedisServer } from '../helpers/redis_server';
import { post, start, type Running } from '../serve/helpers';
import { completionLines, getJson, jsonl, parseJsonl, upload, waitForBatch } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');
const PASSWORD = 'pw-s3cret-7f3a';
const MODEL = 'brown-mamba-s';
const N = 200;

interface WorkerProc {
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** A `simba worker` child; resolves once it printed its ready line. The URL goes by flag or by environment. */
async function spawnWorker(url: string, viaEnv: boolean): Promise<WorkerProc> {
  const args = [CLI, 'worker', '--model', path.join(ROOT, 'models', MODEL), '--concurrency', '8'];
  args.push('--lock-duration', '2000', '--stalled-interval', '1000', '--grace', '10');
  if (!viaEnv) args.push('--redis', url);
  const env = { ...process.env, SIMBA_REDIS_URL: viaEnv ? url : '' };
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no ready line from the worker: ${err}`)), 30000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/simba worker: ready/.test(err)) {
        clearTimeout(t);
        res();
      }
    });
    proc.on('exit', (code) => rej(new Error(`the worker exited with ${code}: ${err}`)));
  });
  return { proc, stderr: () => err, exited };
}

let redis: RedisServer;
let srv: Running;
const workers: WorkerProc[] = [];
let events: QueueEvents | null = null;

beforeAll(async () => {
  redis = await startRedis({ args: ['--requirepass', PASSWORD] });
});

afterAll(async () => {
  for (const w of workers) w.proc.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  await events?.close();
  await srv?.server.shutdown(1000);
  srv?.server.model?.dispose();
  await redis?.stop();
});

test('200 requests, 2 workers, one SIGKILLed mid-way: 200 results, each once, equal to single requests', async () => {
  const url = `redis://:${PASSWORD}@127.0.0.1:${redis.port}`;
  const { loadModel } = await import('../../lib/engine/load');
  srv = await start({ model: loadModel(), modelName: MODEL, batch: { redis: url } });
  await srv.server.ready;
  workers.push(await spawnWorker(url, false), await spawnWorker(url, true));
  events = new QueueEvents('simba-batch', { connection: { url }, prefix: 'simba:bull' });
  events.on('error', () => undefined);
  let stalled = 0;
  events.on('stalled', () => stalled++);
  await events.waitUntilReady();

  const lines = completionLines(N, MODEL, 6);
  const up = await upload(srv.url, jsonl(lines));
  expect(up.status).toBe(200);
  const created = await post(
    srv.url,
    '/v1/batches',
    JSON.stringify({ input_file_id: up.json.id, endpoint: '/v1/completions', completion_window: '24h' }),
  );
  expect(created.json.status).toBe('in_progress');
  const id = created.json.id as string;

  // kill the first worker once a few results are in (it holds up to 8 running requests then)
  let atKill = 0;
  for (const t0 = Date.now(); Date.now() - t0 < 60000;) {
    const b = await getJson(srv.url, `/v1/batches/${id}`);
    atKill = (b.json.request_counts as { completed: number }).completed;
    if (atKill >= 20) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  workers[0].proc.kill('SIGKILL');
  expect(await workers[0].exited).toBeNull();
  expect(atKill).toBeGreaterThanOrEqual(20);
  expect(atKill).toBeLessThan(N - 20);

  const done = await waitForBatch(srv.url, id, ['completed', 'failed', 'cancelled'], 90000);
  expect(done.status).toBe('completed');
  expect(done.request_counts).toEqual({ total: N, completed: N, failed: 0 });
  expect(done.error_file_id).toBeNull();
  // the killed worker's running requests were taken up again by the other
  expect(stalled).toBeGreaterThan(0);

  const r = await fetch(`${srv.url}/v1/files/${done.output_file_id as string}/content`);
  const out = parseJsonl(await r.text());
  expect(out).toHaveLength(N);
  expect(out.map((o) => o.custom_id)).toEqual(lines.map((l) => l.custom_id)); // each once, in input order
  // the single requests, 20 at a time (each has 20 s: all 200 at once would queue past that on a busy machine)
  const singles: Awaited<ReturnType<typeof post>>[] = [];
  for (let i = 0; i < N; i += 20)
    singles.push(
      ...(await Promise.all(lines.slice(i, i + 20).map((l) => post(srv.url, '/v1/completions', JSON.stringify(l.body))))),
    );
  for (const [i, o] of out.entries()) {
    const body = (o.response as { status_code: number; body: { choices: unknown; usage: unknown } }).body;
    expect({ i, choices: body.choices, usage: body.usage }).toEqual({
      i,
      choices: singles[i].json.choices,
      usage: singles[i].json.usage,
    });
  }

  workers[1].proc.kill('SIGTERM');
  expect(await workers[1].exited).toBe(0);
  for (const w of workers) {
    expect(w.stderr()).not.toContain(PASSWORD);
    expect(w.stderr()).toContain(`redis://***@127.0.0.1:${redis.port}`);
  }
  expect(workers[1].stderr()).toMatch(/SIGTERM: finishing[\s\S]*stopped/);
}, 180000);

test('simba worker refuses a missing or malformed --redis (exit 2), without echoing the URL', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [CLI, 'worker', ...args], {
      cwd: ROOT,
      env: { ...process.env, SIMBA_REDIS_URL: '' },
      encoding: 'utf8',
      timeout: 30000,
    });
  const none = run([]);
  expect(none.status).toBe(2);
  expect(none.stderr).toMatch(/--redis URL \(or SIMBA_REDIS_URL\) is required/);
  const http = run(['--redis', `http://user:${PASSWORD}@127.0.0.1:1`]);
  expect(http.status).toBe(2);
  expect(http.stderr).toMatch(/must start with redis:\/\/ or rediss:\/\//);
  expect(http.stderr).not.toContain(PASSWORD);
  const prefix = run(['--redis', 'redis://127.0.0.1:1', '--redis-prefix', 'a b']);
  expect(prefix.status).toBe(2);
  expect(prefix.stderr).toMatch(/prefix must be 1-64 letters/);
});
