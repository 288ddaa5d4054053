/**
 * `simba worker`: a Batch API worker (lib/serve/batch/worker.ts). It loads the model, connects to the
 * Redis the servers use, and runs the requests of queued batches, `--concurrency` at a time through
 * one scheduler (continuous batching). Run any number of them, on any machines. SIGTERM / SIGINT:
 * stop taking jobs, let the running ones finish for --grace seconds, exit 0 (jobs cut off are taken
 * up again by another worker, like those of a killed one).
 *
 *   simba worker --redis redis://127.0.0.1:6379 --model models/brown-mamba-s --concurrency 16
 */
import type { Command } from 'commander';

import { openBatchService } from '../serve/batch/service';
import { BatchWorker } from '../serve/batch/worker';
import { createServer } from '../serve/server';
import { redactUrl } from '../serve/state_tier/redis_tier';
import { CliError, intArg } from './args';
import { addServedModelOptions, redisUrl, servedModel, type ServedModelFlags } from './serve';

interface WorkerFlags extends ServedModelFlags {
  redis?: string;
  redisPrefix: string;
  concurrency: number;
  lockDuration: number;
  stalledInterval: number;
  maxStalled: number;
}

const log = (s: string) => process.stderr.write(`simba worker: ${s}\n`);

async function cmdWorker(f: WorkerFlags): Promise<void> {
  const url = redisUrl(f.redis);
  if (url === undefined) throw new CliError('--redis URL (or SIMBA_REDIS_URL) is required', 2);
  // the URL and prefix are checked before the model loads
  const service = openBatchService({ redis: url, prefix: f.redisPrefix }, 'simba worker');
  let m: Awaited<ReturnType<typeof servedModel>>;
  try {
    m = await servedModel(f);
  } catch (e) {
    await service.close();
    throw e;
  }
  const server = createServer({ ...m, maxRunning: f.maxRunning, maxPromptTokens: f.maxPromptTokens });
  const shutdown = async (workerToo: BatchWorker | null) => {
    await workerToo?.close();
    await server.shutdown(f.grace * 1000);
    await service.close();
    server.model?.dispose();
  };
  try {
    await server.ready;
  } catch (e) {
    await shutdown(null);
    throw e;
  }
  const worker = new BatchWorker({
    server,
    service,
    concurrency: f.concurrency,
    lockDuration: f.lockDuration,
    stalledInterval: f.stalledInterval,
    maxStalledCount: f.maxStalled,
  });
  const info = server.model!.info();
  log(
    `ready (model '${m.modelName}', ${info.isa}, ${info.threads} threads; queue on ${redactUrl(url)}, concurrency ${f.concurrency})`,
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log(`${sig}: finishing the running requests (up to ${f.grace} s)`);
      const cut = setTimeout(() => void worker.worker.close(true), f.grace * 1000);
      void shutdown(worker).finally(() => {
        clearTimeout(cut);
        resolve();
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  log('stopped');
}

export function addWorkerCommand(program: Command): void {
  const cmd = program
    .command('worker')
    .description('Batch API worker: runs the requests of queued batches (any number of workers, on any machines)');
  addServedModelOptions(cmd)
    .option('--redis <url>', 'the Redis of the servers: redis://[user:pass@]host:port[/db] (or SIMBA_REDIS_URL)')
    .option('--redis-prefix <p>', 'prefix of the Redis keys (as the servers use)', 'simba')
    .option('--concurrency <n>', 'requests run at once (they share one continuous batch)', intArg(1, 4096), 16)
    .option('--lock-duration <ms>', "ms before a silent worker's jobs may be taken by another", intArg(100), 30000)
    .option('--stalled-interval <ms>', 'ms between checks for jobs of dead workers', intArg(100), 30000)
    .option('--max-stalled <n>', 'times a request may be recovered from dead workers before it fails', intArg(0), 3)
    .action((f: WorkerFlags) => cmdWorker(f));
}
