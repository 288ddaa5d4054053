#!/usr/bin/env node
// The table of bench/compare_peer_int4.sh: per shape, prefill 512 and decode B=1 / B=8 tokens/s of
// simba-ssm int4 and int8 (with the fraction of the bound `simba bench --limits` gives) next to
// node-llama-cpp's Q4_0, Q4_K_M (where the OUT_DIR has its rows) and Q8_0 (medians; the peer's
// foreign_cores_max, the CPU other processes used during its runs, in brackets where above 0.1).
//   node bench/compare_int4_summary.js OUT_DIR 130m 1.4b
'use strict';
const fs = require('fs');
const path = require('path');

const [dir, ...shapes] = process.argv.slice(2);
const read = (f) => (fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f), 'utf8') : '');
const lines = (f) =>
  read(f)
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));

function ours(shape, w, label) {
  const r = JSON.parse(read(`ours-${shape}-${w}.json`) || '{}');
  const b = (r.bounds || []).find((x) => x.label === label);
  return b ? `${b.tokensPerSec.toFixed(1)} (${Math.round(b.fraction * 100)}% ${b.boundBy})` : '-';
}
function peer(shape, t, what) {
  const all = [...lines(`peer-${shape}-${t}-prefill-2t.jsonl`), ...lines(`peer-${shape}-${t}-decode-1t.jsonl`)];
  const l = all.find((x) =>
    what === 'prefill'
      ? x.measure === 'prefill' && x.n_tokens === 512
      : what === 1
        ? x.measure === 'decode'
        : x.measure === 'batch_decode' && x.sequences === what && x.mode === 'lockstep',
  );
  if (!l) return { text: '-', tps: NaN };
  const noise = l.foreign_cores_max > 0.1 ? ` [${l.foreign_cores_max}]` : '';
  return { text: `${l.tok_s_median.toFixed(1)}${noise}`, tps: l.tok_s_median };
}
const num = (s) => parseFloat(s);
const ratio = (a, b) => (Number.isFinite(num(a)) && Number.isFinite(b) ? `${(num(a) / b).toFixed(2)}x` : '-');

const kq = shapes.some((s) => read(`peer-${s}-q4_k_m-prefill-2t.jsonl`) || read(`peer-${s}-q4_k_m-decode-1t.jsonl`));
const out = kq
  ? [
      '| shape | row | simba int4 | llama.cpp Q4_0 | ratio | llama.cpp Q4_K_M | ratio | simba int8 | llama.cpp Q8_0 | ratio |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
  : [
      '| shape | row | simba int4 | llama.cpp Q4_0 | ratio | simba int8 | llama.cpp Q8_0 | ratio |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ];
for (const s of shapes)
  for (const [label, what] of [
    ['prefill T=512', 'prefill'],
    ['decode B=1', 1],
    ['decode B=8', 8],
  ]) {
    const [o4, o8, p4, p8] = [ours(s, 'int4', label), ours(s, 'int8', label), peer(s, 'q4_0', what), peer(s, 'q8_0', what)];
    const k = kq ? peer(s, 'q4_k_m', what) : null;
    const kcols = k ? ` ${k.text} | ${ratio(o4, k.tps)} |` : '';
    out.push(
      `| ${s} | ${label} | ${o4} | ${p4.text} | ${ratio(o4, p4.tps)} |${kcols} ${o8} | ${p8.text} | ${ratio(o8, p8.tps)} |`,
    );
  }
console.log(out.join('\n'));
