/**
 * Throughput when another process holds a core: `simba bench` with the default threads and with
 * SIMBA_THREADS=1, each on an idle machine and beside a shell busy loop (`sh -c 'while :; do :; done'`,
 * started before the run and killed after it), on mamba-130m (random weights: prefill 512, decode B=1
 * and B=8) and the shipped brown-mamba-s (decode B=1 and B=8). Prints one table of medians over the
 * rounds (compiled to dist/bench/contention.js).
 *
 *   node dist/bench/contention.js [--rounds 3] [--runs 3] [--addons A.node,B.node [--clis A/main.js,B/main.js]]
 *
 * With several --addons (SIMBA_ADDON_PATH for each), every round runs each addon in turn under the
 * same conditions, so that a before / after comparison sees the same drift of a shared machine;
 * --clis gives each addon its own build of the CLI (dist/lib/cli/main.js of a worktree: an old
 * addon may lack what the current library calls).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { benchJson } from './bench_json';

interface Case {
  label: string;
  args: string[];
}

const CASES: Case[] = [
  { label: 'mamba-130m', args: ['--shape', 'mamba-130m', '--lengths', '512', '--batches', '1,8'] },
  { label: 'brown-mamba-s', args: ['--lengths', '512', '--batches', '1,8'] },
];

function usage(msg: string): never {
  console.error(
    `contention: ${msg}\nusage: node dist/bench/contention.js [--rounds N] [--runs N] [--addons A.node,B.node [--clis A.js,B.js]]`,
  );
  process.exit(2);
}

function parse(argv: string[]): {
  rounds: number;
  runs: number;
  addons: (string | undefined)[];
  clis: (string | undefined)[];
} {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!['--rounds', '--runs', '--addons', '--clis'].includes(argv[i])) usage(`unknown option '${argv[i]}'`);
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    o[argv[i].slice(2)] = argv[i + 1];
  }
  const int = (k: string, dflt: number, hi: number) => {
    const n = o[k] === undefined ? dflt : Number(o[k]);
    if (!Number.isInteger(n) || n < 1 || n > hi) usage(`--${k} must be an integer in [1, ${hi}], got ${o[k]}`);
    return n;
  };
  const addons = o.addons === undefined ? [undefined] : o.addons.split(',').map((a) => path.resolve(a));
  const clis = o.clis === undefined ? addons.map(() => undefined) : o.clis.split(',').map((c) => path.resolve(c));
  if (clis.length !== addons.length) usage(`give as many --clis as --addons (${addons.length})`);
  for (const f of [...addons, ...clis]) if (f !== undefined && !fs.existsSync(f)) usage(`no file ${f}`);
  return { rounds: int('rounds', 3, 100), runs: int('runs', 3, 100), addons, clis };
}

/** The busy loop standing for the other process; killed by its pid. */
function startBusy(): ChildProcess {
  const p = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
  return p;
}

function stopBusy(p: ChildProcess | undefined): void {
  if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

/** One `simba bench --json` run; its rows as label -> tokens/s. */
function bench(
  c: Case,
  runs: number,
  threads: string | undefined,
  addon: string | undefined,
  cli: string | undefined,
): Map<string, number> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.SIMBA_THREADS;
  if (threads !== undefined) env.SIMBA_THREADS = threads;
  if (addon !== undefined) env.SIMBA_ADDON_PATH = addon;
  const r = benchJson([...c.args, '--runs', String(runs)], env, cli);
  const rows = new Map<string, number>();
  // the shipped model's prefill row only warms it up: its decode is what a server's steps are
  if (c.label === 'mamba-130m') for (const p of r.prefill) rows.set(`prefill ${p.length}`, p.tokensPerSec.median);
  for (const d of r.decode) rows.set(`decode B=${d.batch}`, d.tokensPerSec.median);
  return rows;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const o = parse(process.argv.slice(2));
  let busy: ChildProcess | undefined;
  const cleanup = () => stopBusy(busy);
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  // (addon, case row, threads, busy) -> samples
  const samples = new Map<string, number[]>();
  const key = (a: number, row: string, threads: string, load: string) => `${a}\t${row}\t${threads}\t${load}`;
  const threadsOf = [undefined, '1'];
  for (let r = 0; r < o.rounds; r++) {
    for (const load of ['idle', 'busy']) {
      if (load === 'busy') busy = startBusy();
      for (const c of CASES)
        for (const t of threadsOf)
          o.addons.forEach((addon, a) => {
            for (const [row, tps] of bench(c, o.runs, t, addon, o.clis[a])) {
              const k = key(a, `${c.label} ${row}`, t ?? 'default', load);
              samples.set(k, [...(samples.get(k) ?? []), tps]);
            }
          });
      stopBusy(busy);
      busy = undefined;
    }
    process.stderr.write(`round ${r + 1}/${o.rounds} done\n`);
  }
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const cell = (xs: number[] | undefined) => (xs ? `${f(median(xs))} [${f(Math.min(...xs))}-${f(Math.max(...xs))}]` : '-');
  console.log(`${o.rounds} rounds; tokens/s, median [min-max]; busy = one shell busy loop beside the bench`);
  o.addons.forEach((addon, a) => {
    console.log(`\naddon: ${addon ?? '(default lookup)'}\n`);
    console.log('| row | default idle | 1 thread idle | default busy | 1 thread busy | default/1 busy |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    const rows = [...new Set([...samples.keys()].filter((k) => k.startsWith(`${a}\t`)).map((k) => k.split('\t')[1]))];
    for (const row of rows) {
      const s = (t: string, load: string) => samples.get(key(a, row, t, load));
      const ratio = median(s('default', 'busy') ?? [NaN]) / median(s('1', 'busy') ?? [NaN]);
      console.log(
        `| ${row} | ${cell(s('default', 'idle'))} | ${cell(s('1', 'idle'))} | ${cell(s('default', 'busy'))} | ` +
          `${cell(s('1', 'busy'))} | ${ratio.toFixed(2)} |`,
      );
    }
  });
}

main();
