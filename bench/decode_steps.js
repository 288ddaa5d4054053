#!/usr/bin/env node
// Milliseconds per decode step of B sequences on a random shape (prefill 4 tokens each, then 10 timed
// steps through model.decode): how a decode step scales with the batch, e.g. with Mamba-2's large states.
//   SIMBA_THREADS=1 node bench/decode_steps.js mamba2-130m 32      (needs npm run build:ts)
'use strict';
const { randomModel } = require('../dist/lib/index.js');

(async () => {
  const shape = process.argv[2] || 'mamba2-130m';
  const B = Number(process.argv[3] || 32);
  const m = await randomModel(shape, { seed: 1 });
  const prompts = Array.from({ length: B }, (_, i) => ({ tokens: [1 + i, 2, 3, 4] }));
  const seqs = (await m.prefill(prompts, { logits: 'none' })).map((r) => r.sequence);
  const t0 = Date.now();
  for (let i = 0; i < 10; i++)
    await m.decode(
      seqs,
      seqs.map((_, j) => (j * 31 + i) % 1000),
    );
  console.log(`${shape} B=${B}: decode ${(Date.now() - t0) / 10} ms/step`);
  m.dispose();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
