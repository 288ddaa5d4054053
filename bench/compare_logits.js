#!/usr/bin/env node
// The largest difference between engines' next-token distributions on the same tokens: reads two or
// more logits dumps, takes each row's log-softmax, and prints for every pair the max |difference|
// over the positions both have (and where it is), the mean |difference|, and whether the argmaxes
// agree. Reads:
//   - `simba logits --json` and test/reference/mamba2_ref_logits.ts: {positions: [p...], logits: [[...]...]}
//     (raw logits: log-softmaxed here, in float64);
//   - ../shared/peers/llamacpp_logits.mjs: {positions: [{pos, logprobs: [...]}...]} (already
//     log-softmaxed; null where the peer's float32 probability underflowed: those entries are skipped).
//   node bench/compare_logits.js NAME=FILE NAME=FILE [NAME=FILE ...] [--pairs A:B,C:D] [--json]
// --pairs limits the table to those pairs (default: every pair).
'use strict';
const fs = require('fs');

function usage(msg) {
  console.error(
    `compare_logits: ${msg}\nusage: node bench/compare_logits.js NAME=FILE NAME=FILE [...] [--pairs A:B,...] [--json]`,
  );
  process.exit(2);
}

/** Map position -> log-softmax row (Float64Array; NaN = not available). */
function load(file) {
  const d = JSON.parse(fs.readFileSync(file, 'utf8'));
  const rows = new Map();
  if (!Array.isArray(d.positions)) usage(`${file}: no 'positions' array`);
  d.positions.forEach((p, i) => {
    if (typeof p === 'object' && p !== null) {
      rows.set(
        p.pos,
        Float64Array.from(p.logprobs, (x) => (x === null ? NaN : x)),
      );
      return;
    }
    const raw = d.logits?.[i];
    if (!Array.isArray(raw)) usage(`${file}: position ${p} has no logits row`);
    let m = -Infinity;
    for (const x of raw) m = Math.max(m, x);
    let z = 0;
    for (const x of raw) z += Math.exp(x - m);
    const lse = m + Math.log(z);
    rows.set(
      p,
      Float64Array.from(raw, (x) => x - lse),
    );
  });
  return rows;
}

function argmax(r) {
  let best = -1;
  for (let i = 0; i < r.length; i++) if (!Number.isNaN(r[i]) && (best < 0 || r[i] > r[best])) best = i;
  return best;
}

function compare(a, b) {
  let max = 0,
    at = null,
    sum = 0,
    n = 0,
    skipped = 0,
    argmaxSame = 0,
    positions = 0;
  for (const [p, ra] of a) {
    const rb = b.get(p);
    if (!rb) continue;
    if (ra.length !== rb.length) throw new Error(`position ${p}: vocabularies differ (${ra.length} and ${rb.length})`);
    positions++;
    if (argmax(ra) === argmax(rb)) argmaxSame++;
    for (let i = 0; i < ra.length; i++) {
      const diff = Math.abs(ra[i] - rb[i]);
      if (Number.isNaN(diff)) {
        skipped++;
        continue;
      }
      sum += diff;
      n++;
      if (diff > max) {
        max = diff;
        at = { pos: p, token: i };
      }
    }
  }
  if (positions === 0) throw new Error('the two dumps have no position in common');
  return { positions, maxAbsDiff: max, at, meanAbsDiff: sum / n, compared: n, skipped, argmaxSame };
}

const args = process.argv.slice(2);
const json = args.includes('--json');
const pairsAt = args.indexOf('--pairs');
if (pairsAt >= 0 && args[pairsAt + 1] === undefined) usage('--pairs needs a value');
const wanted = pairsAt >= 0 ? args[pairsAt + 1].split(',').map((p) => p.split(':')) : null;
const inputs = args
  .filter((a, i) => a !== '--json' && (pairsAt < 0 || (i !== pairsAt && i !== pairsAt + 1)))
  .map((a) => {
    const eq = a.indexOf('=');
    if (eq <= 0) usage(`'${a}' is not NAME=FILE`);
    return { name: a.slice(0, eq), file: a.slice(eq + 1) };
  });
if (inputs.length < 2) usage('give at least two dumps');
const byName = new Map(inputs.map((x) => [x.name, { ...x, rows: load(x.file) }]));
const loaded = [...byName.values()];
const todo = [];
if (wanted) {
  for (const p of wanted) {
    if (p.length !== 2 || !byName.has(p[0]) || !byName.has(p[1]))
      usage(`--pairs: '${p.join(':')}' is not A:B of two given names`);
    todo.push([byName.get(p[0]), byName.get(p[1])]);
  }
} else {
  for (let i = 0; i < loaded.length; i++) for (let j = i + 1; j < loaded.length; j++) todo.push([loaded[i], loaded[j]]);
}
const pairs = todo.map(([a, b]) => ({ a: a.name, b: b.name, ...compare(a.rows, b.rows) }));
if (json) {
  console.log(JSON.stringify(pairs));
} else {
  console.log('| engines | positions | max abs diff of log-softmax | at (position, token) | mean abs diff | same argmax |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of pairs)
    console.log(
      `| ${r.a} vs ${r.b} | ${r.positions} | ${r.maxAbsDiff.toExponential(2)} | ${r.at ? `${r.at.pos}, ${r.at.token}` : ''} | ` +
        `${r.meanAbsDiff.toExponential(2)} | ${r.argmaxSame}/${r.positions} |${r.skipped ? ` (${r.skipped} underflowed entries skipped)` : ''}`,
    );
}
