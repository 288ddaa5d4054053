#!/usr/bin/env node
// simba-ssm's logits through the decode path: one `model.decode` step per token from an empty
// sequence (the recurrent step, where `simba logits` runs the prefill scan), in the JSON shape of
// `simba logits --json`, for bench/compare_logits.js. Uses the package's public API from dist/.
//   node bench/stepwise_logits.js --model DIR --ids 1,2,3 [--weights f32|bf16|int8] > F.json
'use strict';
const path = require('path');

const { loadModel } = require(path.join(__dirname, '..', 'dist', 'lib', 'index.js'));

function usage(msg) {
  console.error(
    `stepwise_logits: ${msg}\nusage: node bench/stepwise_logits.js --model DIR --ids 1,2,3 [--weights f32|bf16|int8]`,
  );
  process.exit(2);
}

async function main(argv) {
  const o = { weights: 'f32' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!['--model', '--ids', '--weights'].includes(argv[i])) usage(`unknown option '${argv[i]}'`);
    if (argv[i + 1] === undefined) usage(`${argv[i]} needs a value`);
    o[argv[i].slice(2)] = argv[i + 1];
  }
  if (!o.model || !o.ids) usage('give --model and --ids');
  const ids = o.ids.split(',').map(Number);
  const model = await loadModel(o.model, { weights: o.weights });
  try {
    const seq = model.newSequence();
    const rows = [];
    for (const id of ids) {
      const [row] = await model.decode([seq], [id]);
      rows.push(Array.from(row));
    }
    process.stdout.write(JSON.stringify({ tool: 'stepwise_logits', positions: ids.map((_, t) => t), logits: rows }) + '\n');
  } finally {
    model.dispose();
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error(`stepwise_logits: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exit(1);
});
