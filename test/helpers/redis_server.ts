/**
 * A real redis-server for the tests: started on a free loopback port with no persistence, stopped
 * (or killed, to simulate an outage) by the test. `.ci/run` installs the Debian package.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
  proc: ChildProcess;
  /** SIGKILL, as a crash or a network partition would look to clients; resolves once it exited. */
  kill(): Promise<void>;
  /** SIGTERM and wait; removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** A port the kernel says is free on 127.0.0.1 now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts redis-server on 127.0.0.1 (port: given, to restart on the same one, or a free one); resolves when it
 * accepts connections (at most `readyMs`). Extra arguments go to redis-server (e.g. ['--requirepass', 'x']).
 */
export async function startRedis(opts: { port?: number; args?: string[]; readyMs?: number } = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'simba-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  const proc = spawn('redis-server', [...args, ...(opts.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`redis-server did not start on port ${port} within ${opts.readyMs ?? 10000} ms:\n${out}`));
    }, opts.readyMs ?? 10000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`redis-server could not be started (install the Debian package redis-server): ${e.message}`));
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code} before it was ready:\n${out}`));
    });
  });
  let stopped = false;
  const finish = async (signal: NodeJS.Signals): Promise<void> => {
    if (!stopped && proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    stopped = true;
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc,
    kill: () => finish('SIGKILL'),
    stop: () => finish('SIGTERM'),
  };
}
