/** Helpers of the server tests: a server on 127.0.0.1:0, metrics parsing, polling, raw POSTs. */
import { spawn, type ChildProcess } from 'child_process';
import * as path from 'path';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import type { ChatTemplate } from '../../lib/checkpoint/chat_template';
import type { ParseContext } from '../../lib/serve/openai';
import { createServer, type ServerOptions, type SimbaServer } from '../../lib/serve/server';
import { startRedis, type RedisServer } from '../helpers/redis_server';

export interface Running {
  server: SimbaServer;
  url: string;
}

/**
 * A server on 127.0.0.1:0. Given a loaded model (not a promise), it resolves once the server is
 * ready: the server takes the model's fingerprint first (state_tier/fingerprint.ts) and answers 503
 * until then, which a slow run (the sanitizers) made a test see.
 */
export async function start(opts: ServerOptions): Promise<Running> {
  const server = createServer(opts);
  const url = await server.listen(0, '127.0.0.1');
  if (!(opts.model instanceof Promise)) await server.ready;
  return { server, url };
}

/** The request parsers' context for tests at the parsing layer: model 'm', 4096 prompt tokens, max_tokens 64, n 4. */
export function parseContext(model: MambaModel, chatTemplate: ChatTemplate): ParseContext {
  return {
    modelName: 'm',
    config: model.config,
    tokenizer: model.tokenizer,
    chatTemplate,
    maxPromptTokens: 4096,
    maxTokensLimit: 64,
    maxN: 4,
  };
}

/** Prometheus text format -> {"name{labels}": value}; throws on a malformed line. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    if (!m) throw new Error(`bad metrics line: ${line}`);
    out.set(m[1], Number(m[3]));
  }
  return out;
}

export async function metrics(url: string): Promise<Map<string, number>> {
  const r = await fetch(`${url}/metrics`);
  return parseMetrics(await r.text());
}

/** Polls until cond() holds (at most ms); returns whether it did. */
export async function until(cond: () => Promise<boolean> | boolean, ms = 5000): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

/** A response body as the tests read it: an OpenAI error, or anything else. */
export interface ApiJson {
  error?: { message: string; type: string; param: string | null; code: string | null };
  [key: string]: unknown;
}

export async function post(
  url: string,
  path: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: ApiJson; headers: Headers }> {
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
    signal: AbortSignal.timeout(20000),
  });
  const text = await r.text();
  let json: ApiJson;
  try {
    json = JSON.parse(text) as ApiJson;
  } catch {
    json = { text };
  }
  return { status: r.status, json, headers: r.headers };
}

/** {"error": {"message": string, "type": string, "param": string | null, "code": string | null}} and nothing else. */
export function isOpenAIError(j: unknown): boolean {
  if (!j || typeof j !== 'object' || Object.keys(j).join() !== 'error') return false;
  const e = (j as { error: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } | null }).error;
  return (
    !!e &&
    typeof e.message === 'string' &&
    e.message.length > 0 &&
    typeof e.type === 'string' &&
    (e.param === null || typeof e.param === 'string') &&
    (e.code === null || typeof e.code === 'string') &&
    Object.keys(e).sort().join() === 'code,message,param,type'
  );
}

/**
 * The shipped model and a real redis-server for a test file: loaded / started in beforeAll, freed /
 * stopped in afterAll. Read them through the getters inside tests.
 */
export function modelAndRedis(): { readonly model: MambaModel; readonly redis: RedisServer } {
  let model: MambaModel | null = null;
  let redis: RedisServer | null = null;
  beforeAll(async () => {
    model = await loadModel();
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
    model?.dispose();
  });
  return {
    get model() {
      return model!;
    },
    get redis() {
      return redis!;
    },
  };
}

/** `simba serve ARGS` as a child process, once its ready line names the URL (30 s at most). */
export async function spawnServe(
  args: string[],
): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null>; stderr: () => string }> {
  const root = path.resolve(__dirname, '..', '..');
  const child = spawn(process.execPath, [path.join(root, 'dist', 'lib', 'cli', 'main.js'), 'serve', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  try {
    const url = await new Promise<string>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`no ready line: ${stderr}`)), 30000);
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /listening on (http:\/\/[^\s]+)[\s\S]*ready/.exec(stderr);
        if (m) {
          clearTimeout(t);
          res(m[1]);
        }
      });
    });
    return { child, url, exited, stderr: () => stderr };
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
}
