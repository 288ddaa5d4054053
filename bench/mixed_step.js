#!/usr/bin/env node
// The scheduler's tick as one native call: B decode tokens plus one prompt chunk of n tokens
// (model.step), median ms of 7 and the cores the process used meanwhile, for n = 0, 16, 36, 64, 128,
// 256, 512: what a prompt token costs beside the decodes, and whether small chunks waste the cores.
//   node bench/mixed_step.js [shape (default mamba-130m)] [B (default 8)] [--weights f32|bf16|int8|int4]   (needs npm run build:ts)
'use strict';
const { randomModel } = require('../dist/lib/index.js');
const { rngFromSeed } = require('../dist/lib/engine/lm.js');

(async () => {
  const argv = process.argv.slice(2);
  const wi = argv.indexOf('--weights');
  const weights = wi >= 0 ? argv.splice(wi, 2)[1] : 'f32';
  const shape = argv[0] || 'mamba-130m';
  const B = Number(argv[1] || 8);
  if (!Number.isInteger(B) || B < 1 || B > 256) throw new Error(`B must be an integer in [1, 256], got '${argv[1]}'`);
  const m = await randomModel(shape, { seed: 1, weights });
  const V = m.config.vocabSize;
  const toks = (n, s) => Array.from({ length: n }, (_, i) => 3 + ((i * 31 + s) % (V - 3)));
  const greedy = () => [{ temperature: 0, rng: rngFromSeed(0) }];
  const seqs = Array.from({ length: B + 1 }, () => m.newSequence());
  for (let i = 0; i < B; i++) await m.step([{ sequence: seqs[i], tokens: toks(8, i), sample: greedy() }]);
  const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  console.log(
    `${shape} ${weights}, ${B} decodes per step\n| chunk tokens | ms (median of 7) | cores | ms per chunk token beside the decodes |\n|---|---|---|---|`,
  );
  let base = 0;
  for (const n of [0, 16, 36, 64, 128, 256, 512]) {
    const ts = [],
      cs = [];
    for (let r = 0; r < 7; r++) {
      const inputs = seqs.slice(0, B).map((sequence) => ({ sequence, tokens: [5], sample: greedy() }));
      if (n > 0) {
        seqs[B].reset();
        inputs.push({ sequence: seqs[B], tokens: toks(n, r) });
      }
      const c0 = process.cpuUsage(),
        t0 = performance.now();
      await m.step(inputs);
      const dt = performance.now() - t0,
        c = process.cpuUsage(c0);
      ts.push(dt);
      cs.push((c.user + c.system) / 1000 / dt);
    }
    if (n === 0) base = med(ts);
    console.log(`| ${n} | ${med(ts).toFixed(2)} | ${med(cs).toFixed(2)} | ${n ? ((med(ts) - base) / n).toFixed(3) : ''} |`);
  }
  m.dispose();
})().catch((e) => {
  console.error(`mixed_step: ${e.message}`);
  process.exit(1);
});
