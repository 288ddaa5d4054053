/** One `simba bench ... --json` run in a fresh process (the bench scripts' common step). */
import { execFileSync } from 'child_process';
import * as path from 'path';

export interface BenchJson {
  prefill: { length: number; tokensPerSec: { median: number } }[];
  decode: { batch: number; tokensPerSec: { median: number } }[];
  simba?: { length: number; budget: number; tokensPerSec: { median: number } }[];
}

/** Runs `cli` (default: this build's dist/lib/cli/main.js) bench with `args` (and --json) under `env`; its parsed report. */
export function benchJson(
  args: string[],
  env: NodeJS.ProcessEnv,
  cli = path.join(__dirname, '..', 'lib', 'cli', 'main.js'),
): BenchJson {
  const out = execFileSync(process.execPath, [cli, 'bench', ...args, '--json'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  }).toString();
  return JSON.parse(out) as BenchJson;
}
