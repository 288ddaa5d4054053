#!/usr/bin/env node
// The table of bench/mamba2_vs_mamba1.sh's outputs (markdown on stdout): tokens/s of mamba2-130m and
// mamba-130m per weight format, their ratio, and each as a fraction of this machine's bound (simba
// bench --limits); then Simba's prefill speed-up on mamba2-130m at flops 0.75 against theory.
//   node bench/mamba2_vs_mamba1_summary.js OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node bench/mamba2_vs_mamba1_summary.js OUT_DIR');
  process.exit(2);
}
const json = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const fmt = (x) => (x === undefined ? '' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const pct = (x) => (x === undefined ? '' : `${(100 * x).toFixed(0)}%`);

function row(r, kind, n) {
  const hit = kind === 'prefill' ? r.prefill.find((p) => p.length === n) : r.decode.find((d) => d.batch === n);
  const b = (r.bounds ?? []).find((x) => x.label === `${kind} ${kind === 'prefill' ? 'T' : 'B'}=${n}`);
  return { tps: hit?.tokensPerSec.median, fraction: b?.fraction, boundBy: b?.boundBy };
}

const rows = [
  ['prefill', 512],
  ['prefill', 2048],
  ['decode', 1],
  ['decode', 8],
  ['decode', 32],
];
console.log('| | weights | mamba2-130m tok/s | of bound | mamba-130m tok/s | of bound | Mamba-2 / Mamba-1 |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const w of ['f32', 'int8']) {
  const m2 = json(`mamba2-130m-${w}.json`);
  const m1 = json(`mamba-130m-${w}.json`);
  for (const [kind, n] of rows) {
    const a = row(m2, kind, n);
    const b = row(m1, kind, n);
    const label = kind === 'prefill' ? `prefill T=${n}` : `decode B=${n}`;
    const ratio = a.tps && b.tps ? `${(a.tps / b.tps).toFixed(2)}x` : '';
    console.log(
      `| ${label} | ${w} | ${fmt(a.tps)} | ${pct(a.fraction)} ${a.boundBy ?? ''} | ${fmt(b.tps)} | ${pct(b.fraction)} ${b.boundBy ?? ''} | ${ratio} |`,
    );
  }
}
const s = json('mamba2-130m-simba.json');
for (const r of s.simba ?? []) {
  console.log(
    `\nSimba on mamba2-130m, T=${r.length}, flops ${r.budget} (relFlops ${r.relFlops.toFixed(3)}): ${fmt(r.tokensPerSec.median)} tok/s, ${r.speedup.toFixed(2)}x dense (theory ${r.theoreticalSpeedup.toFixed(2)}x)`,
  );
}
