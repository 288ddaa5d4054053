/**
 * Batch API throughput with 1 and with 2 `simba worker` processes: a redis-server on a free loopback
 * port, an in-process server with the Batch API, then per round and per worker count: K workers
 * started (not timed), one batch of --requests completions (shipped brown-mamba-s, temperature 0,
 * --max-tokens each) uploaded and created, timed until it is completed, the workers stopped. Prints
 * the median seconds and requests/s per worker count over the rounds, and the ratio to the first.
 * Worker counts alternate within each round, so they see the same drift of a shared machine.
 *
 *   node dist/bench/batch_workers.js [--requests 400] [--max-tokens 16] [--rounds 3] [--workers 1,2] [--concurrency 16]
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { loadModel } from '../lib/engine/load';
import { createServer } from '../lib/serve/server';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'main.js');
const MODEL_DIR = path.join(__dirname, '..', '..', 'models', 'brown-mamba-s');

function flag(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
  });
}

/** A child that prints `ready` on stderr (redis-server on stdout), resolved once it did. */
function startChild(cmd: string, args: string[], ready: RegExp, stream: 'stdout' | 'stderr'): Promise<ChildProcess> {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    p[stream]!.on('data', (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) resolve(p);
    });
    p.on('exit', (code) => reject(new Error(`${cmd} exited with ${code}: ${out}`)));
  });
}

const stop = (p: ChildProcess) =>
  new Promise<void>((res) => (p.exitCode !== null ? res() : (p.on('exit', () => res()), p.kill('SIGTERM'))));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const requests = Number(flag('requests', '400'));
  const maxTokens = Number(flag('max-tokens', '16'));
  const rounds = Number(flag('rounds', '3'));
  const counts = flag('workers', '1,2').split(',').map(Number);
  const concurrency = flag('concurrency', '16');
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-bench-redis-'));
  const redis = await startChild(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    /Ready to accept/,
    'stdout',
  );
  const url = `redis://127.0.0.1:${port}`;
  const server = createServer({ model: loadModel(MODEL_DIR), modelName: 'brown-mamba-s', batch: { redis: url } });
  const base = await server.listen(0, '127.0.0.1');
  await server.ready;
  const lines = Array.from({ length: requests }, (_, i) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/completions',
      body: {
        model: 'brown-mamba-s',
        prompt: `Item ${i}: the jury said that`,
        max_tokens: maxTokens,
        temperature: 0,
        logit_bias: { 0: -100 },
      },
    }),
  );
  const seconds = new Map<number, number[]>(counts.map((k) => [k, []]));
  try {
    for (let r = 0; r < rounds; r++)
      for (const k of counts) {
        const workers = await Promise.all(
          Array.from({ length: k }, () =>
            startChild(
              process.execPath,
              [CLI, 'worker', '--redis', url, '--model', MODEL_DIR, '--concurrency', concurrency],
              /ready/,
              'stderr',
            ),
          ),
        );
        const form = new FormData();
        form.append('purpose', 'batch');
        form.append('file', new Blob([lines.join('\n')]), 'in.jsonl');
        const file = (await (await fetch(`${base}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
        const t0 = performance.now();
        const created = await fetch(`${base}/v1/batches`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' }),
        });
        const { id } = (await created.json()) as { id: string };
        let status = '';
        let counts_ = {};
        while (status !== 'completed') {
          await new Promise((res) => setTimeout(res, 50));
          const b = (await (await fetch(`${base}/v1/batches/${id}`)).json()) as { status: string; request_counts: object };
          status = b.status;
          counts_ = b.request_counts;
          if (status === 'failed' || status === 'cancelled') throw new Error(`batch ${status}`);
        }
        const s = (performance.now() - t0) / 1000;
        seconds.get(k)!.push(s);
        console.error(`round ${r + 1}, ${k} worker(s): ${s.toFixed(2)} s ${JSON.stringify(counts_)}`);
        await Promise.all(workers.map(stop));
      }
  } finally {
    await server.shutdown(1000);
    server.model?.dispose();
    await stop(redis);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const first = median(seconds.get(counts[0])!);
  console.log(`batch of ${requests} completions x ${maxTokens} tokens, --concurrency ${concurrency}, ${rounds} rounds (medians)`);
  console.log('workers | seconds | requests/s | speed-up');
  for (const k of counts) {
    const m = median(seconds.get(k)!);
    console.log(`${k} | ${m.toFixed(2)} | ${(requests / m).toFixed(1)} | ${(first / m).toFixed(2)}x`);
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
