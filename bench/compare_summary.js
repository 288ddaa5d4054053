#!/usr/bin/env node
// The side-by-side table of bench/compare_peer.sh's outputs (markdown on stdout): per weight format
// (ours f32 / bf16 / int8 against the peer's f32 / f16 / Q8_0), prefill 512 and 2048 and decode
// B = 1, 8, 32 in tokens/s, the ratio, and ours as a fraction of this machine's bound (simba bench
// --limits: prefill vs the measured compute peak of the GEMM kernel that ran for those rows: the f32
// FMA, the bf16 / int8 dot products or the AMX tiles; decode vs read bandwidth or that peak,
// each format against its own weight bytes). The peer's number is
// its best over 1 and 2 threads (its decode is faster at 1 thread); peer lines measured under
// foreign load (foreign_cores_max > 0.2) are marked with '*', lines from the peer's fallback CPU
// build (compare_peer.sh: its default build crashed on that row) with '†'.
//   node bench/compare_summary.js OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
if (!dir) { console.error('usage: node bench/compare_summary.js OUT_DIR'); process.exit(2); }
const read = (f) => (fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f), 'utf8') : null);
const json = (f) => { const t = read(f); return t ? JSON.parse(t) : null; };
const lines = (f) => (read(f) ?? '').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));

const formats = [['f32', 'ours-2t.json', 'f32'], ['bf16', 'ours-bf16-2t.json', 'f16'], ['int8', 'ours-int8-2t.json', 'q8_0']];
const rows = [['prefill', 512], ['prefill', 2048], ['decode', 1], ['decode', 8], ['decode', 32]];
const fmt = (x) => (x === undefined ? '' : x >= 100 ? x.toFixed(0) : x.toFixed(1));

function ours(r, kind, n) {
  if (!r) return {};
  const row = kind === 'prefill' ? r.prefill.find((p) => p.length === n) : r.decode.find((d) => d.batch === n);
  if (!row) return {};
  const b = (r.bounds ?? []).find((x) => x.label === `${kind} ${kind === 'prefill' ? 'T' : 'B'}=${n}`);
  return { tps: row.tokensPerSec.median, fraction: b?.fraction, boundBy: b?.boundBy };
}

// Every line of the peer's runs for its format t, each tagged with its run ('f16 decode-1t').
const peerLines = (t) => ['prefill-2t', 'decode-1t', 'decode-2t'].flatMap((k) =>
  lines(`peer-${t}-${k}.jsonl`).map((l) => ({ ...l, run: `${t} ${k}` })));

function peer(t, kind, n) {
  const all = peerLines(t);
  const hits = all.filter((l) => l.measure && !l.error && (kind === 'prefill' ? l.measure === 'prefill' && l.n_tokens === n
    : n === 1 ? l.measure === 'decode' && l.sequences === 1 : l.measure === 'batch_decode' && l.mode === 'lockstep' && l.sequences === n));
  if (!hits.length) return {};
  const best = hits.reduce((a, b) => (b.tok_s_median > a.tok_s_median ? b : a));
  return { tps: best.tok_s_median, threads: best.threads, loaded: best.foreign_cores_max > 0.2, fallback: best.fallback };
}

const r0 = json('ours-2t.json');
if (r0?.limits) {
  const l = r0.limits;
  console.log(`Bounds measured by \`simba bench --limits\`: read ${l.readGBs1.toFixed(1)} GB/s (1 thread), ${l.readGBsAll.toFixed(1)} GB/s (${l.threads} threads); ` +
              `FMA peak ${l.fmaGflops1.toFixed(0)} / ${l.fmaGflopsAll.toFixed(0)} GFLOP/s (1 / ${l.threads} threads, ${l.isa}).\n`);
}
console.log('| | weights (ours / peer) | simba-ssm | of bound | node-llama-cpp | ratio |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [kind, n] of rows)
  for (const [w, file, t] of formats) {
    const o = ours(json(file), kind, n), p = peer(t, kind, n);
    if (o.tps === undefined && p.tps === undefined) continue;
    const label = kind === 'prefill' ? `prefill ${n}, 2 threads` : `decode B=${n}, 2 threads${n > 1 ? ' (total)' : ''}`;
    const of = o.fraction === undefined ? '' : `${(100 * o.fraction).toFixed(0)}% (${o.boundBy})`;
    const pp = p.tps === undefined ? '' : `${fmt(p.tps)}${p.threads ? ` (${p.threads}t)` : ''}${p.loaded ? ' *' : ''}${p.fallback ? ' †' : ''}`;
    const ratio = o.tps !== undefined && p.tps ? `${(o.tps / p.tps).toFixed(2)}x` : '';
    console.log(`| ${label} | ${w} / ${t} | ${fmt(o.tps)} | ${of} | ${pp} | ${ratio} |`);
  }
const peerAll = formats.flatMap(([, , t]) => peerLines(t));
const crashes = peerAll.filter((l) => l.crashed !== undefined);
const fallbacks = [...new Set(peerAll.filter((l) => l.fallback).map((l) => l.fallback))];
if (crashes.length)
  console.log(`\nThe peer crashed in ${crashes.map((c) => `${c.run} (exit ${c.crashed})`).join(', ')}; ` +
              (fallbacks.length ? `† rows are from its run with ${fallbacks.join(', ')} (its next-best CPU build).` : 'no fallback rows.'));
