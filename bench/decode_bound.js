#!/usr/bin/env node
// Decode at batch 1 against the read bound measured beside it: this machine's memory bandwidth moves
// by a third within seconds (a shared host; `simba bench --limits` probes once, so its fraction
// carries that swing). Here each of P pairs is the read probe over a buffer of the weights' size
// (best of 2) right before 16 decode steps, and the fraction is taken per pair: bound ms / step ms,
// where bound ms = weight bytes / probe GB/s. Prints the median step, probe and fraction.
//   node bench/decode_bound.js [shape (default mamba-1.4b)] [--weights f32|bf16|int8|int4] [--pairs P (default 9)]
//   (needs npm run build)
'use strict';
const { randomModel } = require('../dist/lib/index.js');
const { measureReadBandwidth } = require('../dist/lib/platform/machine.js');

(async () => {
  const argv = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv.splice(i, 2)[1] : dflt;
  };
  const weights = opt('--weights', 'int4');
  const pairs = Number(opt('--pairs', '9'));
  if (!Number.isInteger(pairs) || pairs < 1 || pairs > 100) throw new Error(`--pairs must be an integer in [1, 100]`);
  const shape = argv[0] || 'mamba-1.4b';
  const m = await randomModel(shape, { seed: 1, weights });
  const bytes = m.info().weightBytes;
  const seq = (await m.prefill([{ tokens: [1, 2, 3, 4] }], { logits: 'none' }))[0].sequence;
  for (let i = 0; i < 8; i++) await m.decode([seq], [5 + i]);
  const steps = [],
    reads = [],
    fractions = [];
  for (let p = 0; p < pairs; p++) {
    const gbs = (await measureReadBandwidth(bytes, 2)).readGBsAll;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 16; i++) await m.decode([seq], [(p * 31 + i) % 1000]);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / 16;
    steps.push(ms);
    reads.push(gbs);
    fractions.push(bytes / (gbs * 1e9) / (ms / 1e3));
  }
  const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  const pct = (f) => (100 * f).toFixed(0);
  console.log(
    `${shape} ${weights}, ${(bytes / 2 ** 20).toFixed(0)} MiB of weights, ${pairs} pairs: decode B=1 ` +
      `${med(steps).toFixed(2)} ms/step (${(1e3 / med(steps)).toFixed(1)} tok/s), read ${med(reads).toFixed(1)} GB/s, ` +
      `${pct(med(fractions))}% of the read bound (pairs: ${fractions.map(pct).join(' ')})`,
  );
  m.dispose();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
