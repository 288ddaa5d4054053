/**
 * Many short prompts in one prefill call, around MAX_CHUNK_TOKENS (8192) tokens in all: the time of
 * `model.prefill` for N prompts of T tokens each (logits at the last position), median of --runs
 * after one warm-up (compiled to dist/bench/prefill_batch.js).
 *
 *   node dist/bench/prefill_batch.js [--model DIR] [--prompts 910,911] [--tokens 9] [--runs 5] [--lib DIST_LIB]
 *
 * --lib loads another build of the library (e.g. a worktree's dist/lib/index.js) for a before /
 * after comparison; SIMBA_THREADS and SIMBA_ADDON_PATH apply as usual.
 */
import * as path from 'path';

import type * as Simba from '../lib/index';

function usage(msg: string): never {
  console.error(
    `prefill_batch: ${msg}\nusage: node dist/bench/prefill_batch.js [--model DIR] [--prompts N,N] [--tokens T] [--runs N] [--lib FILE]`,
  );
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!['--model', '--prompts', '--tokens', '--runs', '--lib'].includes(argv[i])) usage(`unknown option '${argv[i]}'`);
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    o[argv[i].slice(2)] = argv[i + 1];
  }
  const prompts = (o.prompts ?? '910,911').split(',').map(Number);
  const tokens = Number(o.tokens ?? 9),
    runs = Number(o.runs ?? 5);
  for (const n of [...prompts, tokens, runs])
    if (!Number.isInteger(n) || n < 1 || n > 1e6) usage(`counts must be positive integers, got ${n}`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const simba = require(path.resolve(o.lib ?? path.join(__dirname, '..', 'lib', 'index.js'))) as typeof Simba;
  const model = await simba.loadModel(o.model);
  const V = model.config.vocabSize;
  console.log(`| prompts x tokens | total tokens | ms (median of ${runs}) | min | max |\n| --- | --- | --- | --- | --- |`);
  for (const n of prompts) {
    const inputs = Array.from({ length: n }, (_, i) => ({
      tokens: Array.from({ length: tokens }, (_, k) => (i * 7919 + k * 104729) % V),
    }));
    const times: number[] = [];
    for (let r = 0; r <= runs; r++) {
      const t0 = process.hrtime.bigint();
      const res = await model.prefill(inputs, { logits: 'last' });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      for (const x of res) x.sequence.dispose();
      if (r > 0) times.push(ms);
    }
    times.sort((a, b) => a - b);
    const med = times.length % 2 ? times[(times.length - 1) / 2] : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
    console.log(
      `| ${n} x ${tokens} | ${n * tokens} | ${med.toFixed(0)} | ${times[0].toFixed(0)} | ${times[times.length - 1].toFixed(0)} |`,
    );
  }
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
