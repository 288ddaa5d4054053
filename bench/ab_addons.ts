/**
 * Before / after on a noisy machine: alternates two builds of the addon, run after run, on the same
 * `simba bench` rows, and prints each row's median tokens/s for both and their ratio. A 2-vCPU cloud
 * machine drifts by 20-40% within minutes; alternating A, B, A, B, ... puts both builds under the same
 * drift, so the ratio of the medians means something where two separate runs do not (compiled to
 * dist/bench/ab_addons.js).
 *
 *   # build the baseline in a worktree: git worktree add /tmp/base HEAD~1 && (cd /tmp/base && npx cmake-js compile)
 *   node dist/bench/ab_addons.js --a /tmp/base/build/Release/simba_ssm.node --b build/Release/simba_ssm.node \
 *     --rounds 7 -- --shape mamba-130m --lengths 2048 --batches 1,32 --runs 1
 *
 * Everything after `--` goes to `simba bench` (with --json added). Each round runs the bench once per
 * build (SIMBA_ADDON_PATH), each a fresh process: load, one warm-up and --runs timed runs per row.
 */
import * as fs from 'fs';
import * as path from 'path';

import { benchJson } from './bench_json';

interface Row {
  label: string;
  tps: number;
}

function usage(msg: string): never {
  console.error(`ab_addons: ${msg}\nusage: node dist/bench/ab_addons.js --a ADDON --b ADDON [--rounds N] -- BENCH_ARGS...`);
  process.exit(2);
}

function parse(argv: string[]): { a: string; b: string; rounds: number; bench: string[] } {
  const sep = argv.indexOf('--');
  const own = sep >= 0 ? argv.slice(0, sep) : argv;
  const bench = sep >= 0 ? argv.slice(sep + 1) : [];
  const o: Record<string, string> = {};
  for (let i = 0; i < own.length; i += 2) {
    const k = own[i];
    if (!['--a', '--b', '--rounds'].includes(k)) usage(`unknown option '${k}'`);
    if (i + 1 >= own.length) usage(`${k} needs a value`);
    o[k.slice(2)] = own[i + 1];
  }
  if (!o.a || !o.b) usage('give both --a and --b');
  for (const k of ['a', 'b'] as const) if (!fs.existsSync(o[k])) usage(`--${k}: no file ${o[k]}`);
  const rounds = o.rounds === undefined ? 5 : Number(o.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) usage(`--rounds must be an integer in [1, 100], got ${o.rounds}`);
  if (bench.includes('--json')) usage('do not pass --json to the bench: ab_addons adds it');
  return { a: path.resolve(o.a), b: path.resolve(o.b), rounds, bench };
}

/** One `simba bench --json` run with the given addon; its prefill / decode / simba rows. */
function runOnce(addon: string, benchArgs: string[]): Row[] {
  const r = benchJson(benchArgs, { ...process.env, SIMBA_ADDON_PATH: addon });
  return [
    ...r.prefill.map((p) => ({ label: `prefill T=${p.length}`, tps: p.tokensPerSec.median })),
    ...r.decode.map((d) => ({ label: `decode B=${d.batch}`, tps: d.tokensPerSec.median })),
    ...(r.simba ?? []).map((s) => ({ label: `simba ${s.budget} T=${s.length}`, tps: s.tokensPerSec.median })),
  ];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const o = parse(process.argv.slice(2));
  const samples = new Map<string, { a: number[]; b: number[] }>();
  for (let r = 0; r < o.rounds; r++) {
    for (const which of ['a', 'b'] as const) {
      for (const row of runOnce(o[which], o.bench)) {
        const s = samples.get(row.label) ?? { a: [], b: [] };
        s[which].push(row.tps);
        samples.set(row.label, s);
      }
    }
    process.stderr.write(`round ${r + 1}/${o.rounds} done\n`);
  }
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  console.log(`A = ${o.a}\nB = ${o.b}\n${o.rounds} alternated rounds; tokens/s, median [min - max]\n`);
  console.log('| row | A | B | B / A |\n| --- | --- | --- | --- |');
  for (const [label, s] of samples) {
    const ma = median(s.a),
      mb = median(s.b);
    const range = (xs: number[]) => `${f(median(xs))} [${f(Math.min(...xs))} - ${f(Math.max(...xs))}]`;
    console.log(`| ${label} | ${range(s.a)} | ${range(s.b)} | ${(mb / ma).toFixed(2)}x |`);
  }
}

main();
