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
 *
 * `--round-weights rows|blocks32` first rounds the matrices (embedding / head, in_proj, out_proj) to
 * symmetric int8 with one scale per output row (simba-ssm's int8 storage) or per 32 values of a row
 * (llama.cpp's Q8_0), keeping the activations exact: what the weight rounding alone costs, apart
 * from an engine's quantization of the activations.
 */
import * as fs from 'fs';
import * as path from 'path';

import { parseMamba2Config, parsePythonJson } from '../../lib/checkpoint/config';
import { openCheckpoint } from '../../lib/checkpoint/safetensors';
import { mamba2WeightsFromHf, mamba2ZeroState, refMamba2Forward, type Mamba2RefConfig } from './mamba2_ref';

function usage(msg: string): never {
  console.error(
    `mamba2_ref_logits: ${msg}\nusage: mamba2_ref_logits --model DIR --ids 1,2,3 [--positions all|last] [--scan sequential|chunked] [--round-weights rows|blocks32] [--out FILE]`,
  );
  process.exit(2);
}

/** The matrices an int8 engine stores as int8, by name suffix, with their row length. */
const MATRIX_COLS: [string, (c: Mamba2RefConfig) => number][] = [
  ['embeddings.weight', (c) => c.d],
  ['lm_head.weight', (c) => c.d],
  ['in_proj.weight', (c) => c.d],
  ['out_proj.weight', (c) => c.H * c.P],
];

/** Each run of `block` values of each row of `cols` rounded to int8 times max|run| / 127. */
function roundInt8(v: Float32Array, cols: number, block: number): Float32Array {
  const q = new Float32Array(v.length);
  for (let row = 0; row < v.length; row += cols)
    for (let b = row; b < row + cols; b += block) {
      const end = Math.min(b + block, row + cols);
      let m = 0;
      for (let k = b; k < end; k++) m = Math.max(m, Math.abs(v[k]));
      const scale = m / 127;
      for (let k = b; k < end; k++) q[k] = scale > 0 ? Math.round(v[k] / scale) * scale : 0;
    }
  return q;
}

function main(argv: string[]): void {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!['--model', '--ids', '--positions', '--scan', '--round-weights', '--out'].includes(argv[i]))
      usage(`unknown option '${argv[i]}'`);
    if (argv[i + 1] === undefined) usage(`${argv[i]} needs a value`);
    o[argv[i].slice(2)] = argv[i + 1];
  }
  if (!o.model || !o.ids) usage('give --model and --ids');
  const scan = (o.scan ?? 'sequential') as 'sequential' | 'chunked';
  if (scan !== 'sequential' && scan !== 'chunked') usage(`--scan is sequential or chunked, got '${o.scan}'`);
  const round = o['round-weights'];
  if (round !== undefined && round !== 'rows' && round !== 'blocks32')
    usage(`--round-weights is rows or blocks32, got '${round}'`);
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
    w = mamba2WeightsFromHf(c, (n) => {
      if (!ck.has(n) || (n === 'lm_head.weight' && cfg.tieEmbeddings)) return undefined;
      const v = ck.readTensorF32(n);
      const cols = MATRIX_COLS.find(([suffix]) => n.endsWith(suffix))?.[1](c);
      return round && cols ? roundInt8(v, cols, round === 'rows' ? cols : 32) : v;
    });
  } finally {
    ck.close();
  }
  const t0 = Date.now();
  const logits = refMamba2Forward(c, w, ids, mamba2ZeroState(c), scan);
  const positions = which === 'all' ? ids.map((_, t) => t) : [ids.length - 1];
  const rows = positions.map((t) => Array.from(logits.subarray(t * c.V, (t + 1) * c.V)));
  const text =
    JSON.stringify({ tool: 'mamba2_ref_logits', scan, roundWeights: round ?? null, positions, tokens: ids, logits: rows }) + '\n';
  if (o.out) fs.writeFileSync(o.out, text);
  else process.stdout.write(text);
  console.error(`mamba2_ref_logits: ${ids.length} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s (${scan})`);
}

main(process.argv.slice(2));
