/**
 * `simba serve`: the OpenAI-compatible HTTP server (lib/serve/server.ts) on a model folder or a
 * random-weight shape. It listens at once (GET /health answers 503 while the model loads), prints
 * `simba serve: listening on URL` and then `simba serve: ready (...)` on stderr. SIGTERM / SIGINT
 * stop accepting, let running requests finish for --grace seconds, then exit 0.
 *
 *   simba serve --port 8080
 *   simba serve --shape mamba-130m --tokenizer test/fixtures/gpt-neox-20b-tokenizer.json
 *   SIMBA_STATE_STORE=redis://:secret@10.0.0.5:6379/0 simba serve --state-prefix prod --replica-id a
 */
import * as fs from 'fs';
import * as path from 'path';
import { Option, type Command } from 'commander';

import { loadChatTemplate } from '../checkpoint/chat_template';
import { isGgufFile, openGguf } from '../checkpoint/gguf';
import { ggufChatTemplate } from '../checkpoint/gguf_model';
import { loadTokenizer, type Tokenizer } from '../checkpoint/tokenizer';
import { DEFAULT_MODEL_DIR } from '../engine/load';
import { createServer, type ServerOptions } from '../serve/server';
import { redactUrl } from '../serve/state_tier/redis_tier';
import { addModelOptions, CliError, floatArg, intArg, openModel, type ModelFlags } from './args';

/** The flags `simba serve` and `simba worker` share: the model and how requests run on it. */
export interface ServedModelFlags extends ModelFlags {
  maxRunning: number;
  tokenizer?: string;
  modelName?: string;
  maxPromptTokens: number;
  grace: number;
}

interface ServeFlags extends ServedModelFlags {
  host: string;
  port: number;
  maxQueue: number;
  prefillBudget: number;
  itlTargetMs: number;
  simbaUnderLoad?: number;
  cacheMb: number;
  apiKey?: string;
  simbaFlops?: number;
  stateStore?: string;
  statePrefix: string;
  stateTtl: number;
  stateStoreMb: number;
  stateTimeoutMs?: number;
  responseTtl: number;
  replicaId?: string;
  redis?: string;
  redisPrefix: string;
  batchMaxFileMb: number;
  batchMaxLines: number;
}

/**
 * The server options that follow from the model flags: the model (loading), its name, tokenizer and
 * chat template.
 */
export async function servedModel(
  f: ServedModelFlags,
): Promise<Pick<ServerOptions, 'model' | 'modelName' | 'tokenizer' | 'chatTemplate'>> {
  const dir = f.shape !== undefined ? null : (f.model ?? DEFAULT_MODEL_DIR);
  if (dir !== null && !fs.existsSync(dir)) throw new CliError(`model folder '${dir}' does not exist`, 1);
  // A random-weight shape has no tokenizer: --tokenizer, else the shipped model's (its ids are a
  // subset of the vocabulary; sampling is limited to them).
  let tokenizer: Tokenizer | null | undefined;
  if (f.tokenizer !== undefined) tokenizer = loadTokenizer(f.tokenizer);
  else if (dir === null) tokenizer = loadTokenizer(DEFAULT_MODEL_DIR);
  const modelName = f.modelName ?? f.shape ?? path.basename(path.resolve(dir!));
  const chatTemplate = dir !== null && isGgufFile(dir) ? ggufChatTemplate(await openGguf(dir)) : loadChatTemplate(dir);
  return { model: openModel(f), modelName, tokenizer, chatTemplate };
}

/** The Batch API's Redis: --redis, else SIMBA_REDIS_URL (the URL may hold a password: never printed). */
export function redisUrl(flag: string | undefined): string | undefined {
  return flag ?? (process.env.SIMBA_REDIS_URL || undefined);
}

async function cmdServe(f: ServeFlags): Promise<void> {
  if (f.prefillBudget + f.maxRunning > 8192) throw new CliError('--prefill-budget + --max-running must be at most 8192', 2);
  const apiKey = f.apiKey ?? process.env.SIMBA_API_KEY;
  // the URL may carry credentials: from the flag or the environment, never logged (see redactUrl)
  const storeUrl = f.stateStore ?? process.env.SIMBA_STATE_STORE;
  // the Batch API on --redis, else on the state store's Redis
  const batchUrl = redisUrl(f.redis) ?? storeUrl;
  const m = await servedModel(f);
  const server = createServer({
    ...m,
    maxRunning: f.maxRunning,
    maxQueue: f.maxQueue,
    prefillBudget: f.prefillBudget,
    itlTargetMs: f.itlTargetMs,
    simbaUnderLoad: f.simbaUnderLoad,
    cacheMb: f.cacheMb,
    apiKey: apiKey || undefined,
    simba: f.simbaFlops !== undefined ? { flops: f.simbaFlops } : undefined,
    maxPromptTokens: f.maxPromptTokens,
    stateStore: storeUrl
      ? {
          url: storeUrl,
          prefix: f.statePrefix,
          ttlSeconds: f.stateTtl,
          maxMb: f.stateStoreMb,
          timeoutMs: f.stateTimeoutMs,
          responseTtlSeconds: f.responseTtl,
        }
      : undefined,
    replicaId: f.replicaId ?? process.env.SIMBA_REPLICA_ID,
    batch: batchUrl
      ? { redis: batchUrl, prefix: f.redisPrefix, maxFileBytes: f.batchMaxFileMb << 20, maxFileLines: f.batchMaxLines }
      : undefined,
  });
  const url = await server.listen(f.port, f.host);
  process.stderr.write(`simba serve: listening on ${url}\n`);
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`simba serve: ${sig}: draining (up to ${f.grace} s)\n`);
      void server.shutdown(f.grace * 1000).finally(() => {
        server.model?.dispose();
        resolve();
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  try {
    await server.ready;
  } catch (e) {
    await server.shutdown(0);
    throw e;
  }
  if (!stopping) {
    const info = server.model!.info();
    process.stderr.write(
      `simba serve: ready (model '${m.modelName}', ${info.config.nLayer} layers, ${info.isa}, ${info.threads} threads, ` +
        `replica ${server.replicaId}${storeUrl ? `, state store ${redactUrl(storeUrl)}` : ''}` +
        `${batchUrl ? `, Batch API on ${redactUrl(batchUrl)}` : ''})\n`,
    );
  }
  await stopped;
  process.stderr.write('simba serve: stopped\n');
}

/** The options of ServedModelFlags. */
export function addServedModelOptions(cmd: Command): Command {
  return addModelOptions(cmd, { shape: true })
    .option('--max-running <n>', 'sequences decoding at once', intArg(1, 1024), 32)
    .option('--tokenizer <path>', "tokenizer.json (or its folder) for --shape or to override the model's")
    .option('--model-name <id>', 'the model id clients send (default: the folder or shape name)')
    .option('--max-prompt-tokens <n>', 'longest prompt accepted (422 beyond)', intArg(1), 65536)
    .addOption(
      new Option('--grace <s>', 'seconds running requests get to finish on SIGTERM').argParser(floatArg(0, 3600)).default(30),
    );
}

export function addServeCommand(program: Command): void {
  const cmd = program
    .command('serve')
    .description('OpenAI-compatible HTTP server (completions, chat, streaming) with continuous batching');
  addServedModelOptions(cmd)
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', intArg(0, 65535), 8080)
    .option('--max-queue <n>', 'requests waiting before 429', intArg(0), 256)
    .option('--prefill-budget <n>', 'prompt tokens prefilled per scheduler tick at most', intArg(1, 8192), 512)
    .option(
      '--itl-target-ms <ms>',
      "inter-token latency target sizing each tick's prefill share from measured costs (0 = off: every tick takes --prefill-budget)",
      floatArg(0, 60000),
      50,
    )
    .option(
      '--simba-under-load <min-flops>',
      'prune new long prompts with Simba (budget in [min-flops, 1] from the backlog) while the prefill backlog exceeds the target',
      floatArg(0, 1, true),
    )
    .option('--cache-mb <n>', 'prefix-state cache budget in MiB (0 = off)', intArg(0), 512)
    .option('--api-key <key>', 'require Authorization: Bearer <key> on /v1 (or SIMBA_API_KEY)')
    .option('--simba-flops <f>', 'Simba: prune every prompt to this fraction of dense prefill FLOPs', floatArg(0, 1, true))
    .option('--state-store <url>', 'shared state tier: redis://[user:pass@]host:port[/db] or rediss:// (or SIMBA_STATE_STORE)')
    .option('--state-prefix <p>', 'key prefix of this deployment in the state store', 'simba')
    .option('--state-ttl <s>', 'seconds a prefix state lives in the state store', intArg(1, 365 * 86400), 3600)
    .option('--state-store-mb <n>', 'size cap of the prefix states in the state store, MiB', intArg(1), 1024)
    .option(
      '--state-timeout-ms <n>',
      'the most a lookup waits for the state store (default: 250 + 1 ms per 25 KB of model state)',
      intArg(1, 60000),
    )
    .option(
      '--response-ttl <s>',
      'seconds a stored response (POST /v1/responses) lives in the state store',
      intArg(1, 365 * 86400),
      30 * 86400,
    )
    .option('--replica-id <id>', 'this replica in /metrics and x-simba-replica (or SIMBA_REPLICA_ID; default host-pid)')
    .option(
      '--redis <url>',
      'Batch API (/v1/files, /v1/batches) on this Redis: redis://[user:pass@]host:port[/db] (or SIMBA_REDIS_URL; default: the --state-store)',
    )
    .option(
      '--redis-prefix <p>',
      'prefix of the Batch API keys in Redis (servers and workers of one deployment share it)',
      'simba',
    )
    .option('--batch-max-file-mb <n>', 'largest batch input file in MiB (413 beyond)', intArg(1, 512), 64)
    .option('--batch-max-lines <n>', 'most requests in one batch input file', intArg(1), 50000)
    .action((f: ServeFlags) => cmdServe(f));
}
