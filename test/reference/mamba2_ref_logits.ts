/**
 * The float64 Mamba-2 reference's logits on an HF `Mamba2ForCausalLM` folder, as a command: the
 * arbiter when simba-ssm and a peer engine disagree on the same weights (bench/compare_peer_mamba2.sh).
 * Its JSON has the shape of `simba logits --json` ({positions, logits: one row per position}), so
 * bench/compare_logits.js reads both. It is not part of the package (test/ is not compiled into
 * dist/): compile it on its own, e.g.
 *
 *   npx tsc --outDir /tmp/ref --rootDir . --module commonjs --target ES2022 --types node \
 *     --skipLibCheck --esModuleInterop test/reference/mamba2_ref_logits.ts
 *   node /tmp/ref/test/reference/mamba2_ref_logits.js --model DIR --ids 1000,200,30 [--positions last] [--scan chunked] --out F.json
 *
 * Slow by design (plain loops in float64): the mamba2-130m shape takes a few seconds per token.
 */
import * as fs from 'fs';
import * as path from 'path';

import { parseMamba2Config, parsePythonJson } from '../../lib/checkpoint/config';
import { openCheckpoint } from '../../lib/checkpoint/safetensors';
import { mamba2WeightsFromHf, mamba2ZeroState, refMamba2Forward, type Mamba2RefConfig } from './mamba2_ref';

function usage(msg: string): never {
  console.error(
    `mamba2_ref_logits: ${msg}\nusage: mamba2_ref_logits --model DIR --ids 1,2,3 [--positions all|last] [--scan sequential|chunked] [--out FILE]`,
  );
  process.exit(2);
}

function main(argv: string[]): void {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!['--model', '--ids', '--positions', '--scan', '--out'].includes(argv[i])) usage(`unknown option '${argv[i]}'`);
    if (argv[i + 1] === undefined) usage(`${argv[i]} needs a value`);
    o[argv[i].slice(2)] = argv[i + 1];
  }
  if (!o.model || !o.ids) usage('give --model and --ids');
  const scan = (o.scan ?? 'sequential') as 'sequential' | 'chunked';
  if (scan !== 'sequential' && scan !== 'chunked') usage(`--scan is sequential or chunked, got '${o.scan}'`);
  const which = o.positions ?? 'all';
  if (which !== 'all' && which !== 'last') usage(`--positions is all or last, got '${o.positions}'`);
  const file = path.join(o.model, 'config.json');
  const cfg = parseMamba2Config(parsePythonJson(fs.readFileSync(file, 'utf8'), file), file);
  const c: Mamba2RefConfig = {
    d: cfg.dModel,
    L: cfg.nLayer,
    V: cfg.vocabSize,
    H: cfg.nHeads,
    P: cfg.headDim,
    G: cfg.nGroups,
    N: cfg.dState,
    K: cfg.dConv,
    eps: cfg.eps,
    dtLimit: cfg.dtLimit,
    chunk: cfg.chunkSize,
    convBias: cfg.convBias,
  };
  const ids = o.ids.split(',').map(Number);
  ids.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= c.V) usage(`--ids: entry ${i} ('${t}') is not a token id in [0, ${c.V})`);
  });
  const ck = openCheckpoint(o.model);
  let w;
  try {
    // a tied head is the embedding (transformers drops a stored lm_head.weight then)
    w = mamba2WeightsFromHf(c, (n) =>
      ck.has(n) && !(n === 'lm_head.weight' && cfg.tieEmbeddings) ? ck.readTensorF32(n) : undefined,
    );
  } finally {
    ck.close();
  }
  const t0 = Date.now();
  const logits = refMamba2Forward(c, w, ids, mamba2ZeroState(c), scan);
  const positions = which === 'all' ? ids.map((_, t) => t) : [ids.length - 1];
  const rows = positions.map((t) => Array.from(logits.subarray(t * c.V, (t + 1) * c.V)));
  const text = JSON.stringify({ tool: 'mamba2_ref_logits', scan, positions, tokens: ids, logits: rows }) + '\n';
  if (o.out) fs.writeFileSync(o.out, text);
  else process.stdout.write(text);
  console.error(`mamba2_ref_logits: ${ids.length} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s (${scan})`);
}

main(process.argv.slice(2));
