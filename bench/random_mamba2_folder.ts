/**
 * Writes a Hugging Face `Mamba2ForCausalLM` folder with random, sanely scaled weights: config.json as
 * transformers writes it (with `"time_step_limit": [0.0, Infinity]`), model.safetensors (f32) and the
 * GPT-NeoX tokenizer. It is the input of bench/compare_peer_mamba2.sh, which runs the same weights in
 * simba-ssm and, converted to GGUF, in llama.cpp (compiled to dist/bench/random_mamba2_folder.js).
 *
 *   node dist/bench/random_mamba2_folder.js --out DIR [--shape mamba2-130m|tiny] [--seed 1]
 *     [--hidden 768] [--layers 24] [--head-dim 64] [--groups 1] [--state 128] [--conv 4] [--vocab 50288]
 *     [--expand 2] [--chunk 256] [--untied]
 *
 * The scales keep activations O(1) through every layer, so a logits comparison compares real
 * distributions rather than near-uniform ones (the recipe of native/common/tensor_table.h's
 * random_weights, with Mamba-2's per-head A and dt): values are uniform with the given mean and
 * standard deviation; norms 1 +- 0.05 (not exactly 1, so a skipped norm weight shows), in_proj
 * 1/sqrt(d), conv 1/sqrt(K) with bias 0.1, A_log = log(U(1, 16)) per head (mamba_ssm's A_init_range),
 * dt_bias = softplus^-1 of a log-uniform dt in [1e-3, 1e-1], D = 1, out_proj 1/sqrt(E)/sqrt(2L),
 * embeddings 0.02.
 *
 * model.safetensors is written tensor by tensor (the 130m shape is ~0.5 GB), in the order of
 * transformers' state dict.
 */
import * as fs from 'fs';
import * as path from 'path';

/** The shape of the folder to write; names follow transformers' Mamba2Config. */
export interface RandomMamba2Shape {
  hiddenSize: number;
  numHiddenLayers: number;
  expand: number;
  headDim: number;
  nGroups: number;
  stateSize: number;
  convKernel: number;
  vocabSize: number;
  chunkSize: number;
  tieWordEmbeddings: boolean;
}

/**
 * state-spaces/mamba2-130m as transformers converts it (AntonV/mamba2-130m-hf): 24 heads of 64, one
 * group, the GPT-NeoX vocabulary padded to a multiple of 16 (50277 -> 50288), tied embeddings.
 */
export const MAMBA2_130M: RandomMamba2Shape = {
  hiddenSize: 768,
  numHiddenLayers: 24,
  expand: 2,
  headDim: 64,
  nGroups: 1,
  stateSize: 128,
  convKernel: 4,
  vocabSize: 50288,
  chunkSize: 256,
  tieWordEmbeddings: true,
};

/**
 * A quick shape for checks: two groups and head_dim != state_size (the cases a grouped or transposed
 * index gets wrong); the vocabulary stays the tokenizer's (llama.cpp's converter needs every id).
 */
export const MAMBA2_TINY: RandomMamba2Shape = {
  ...MAMBA2_130M,
  hiddenSize: 64,
  numHiddenLayers: 2,
  headDim: 16,
  nGroups: 2,
  stateSize: 32,
};

export const SHAPES: Record<string, RandomMamba2Shape> = { 'mamba2-130m': MAMBA2_130M, tiny: MAMBA2_TINY };

/** The largest id of a tokenizer.json (GPT-NeoX-20B: 50276): the vocabulary must cover it. */
function tokenizerLastId(file: string): number {
  const tok = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    model: { vocab: Record<string, number> };
    added_tokens?: { id: number }[];
  };
  return Math.max(...Object.values(tok.model.vocab), ...(tok.added_tokens ?? []).map((t) => t.id));
}

/** d_inner, heads, conv channels and in_proj rows of a shape. */
export function mamba2Dims(s: RandomMamba2Shape): { E: number; H: number; CH: number; inProjRows: number } {
  const E = s.expand * s.hiddenSize;
  const H = E / s.headDim;
  const GN = s.nGroups * s.stateSize;
  return { E, H, CH: E + 2 * GN, inProjRows: 2 * E + 2 * GN + H };
}

function checkShape(s: RandomMamba2Shape, tokenizerLast: number): void {
  const { E, H } = mamba2Dims(s);
  const ints: (keyof RandomMamba2Shape)[] = [
    'hiddenSize',
    'numHiddenLayers',
    'expand',
    'headDim',
    'nGroups',
    'stateSize',
    'convKernel',
    'vocabSize',
    'chunkSize',
  ];
  for (const k of ints)
    if (!Number.isInteger(s[k]) || (s[k] as number) < 1)
      throw new Error(`random_mamba2_folder: ${k} must be a positive integer, got ${String(s[k])}`);
  if (!Number.isInteger(H))
    throw new Error(`random_mamba2_folder: expand * hidden = ${E} is not a multiple of head_dim ${s.headDim}`);
  if (H % s.nGroups !== 0) throw new Error(`random_mamba2_folder: the ${H} heads do not split into ${s.nGroups} groups`);
  if (s.vocabSize <= tokenizerLast)
    throw new Error(`random_mamba2_folder: vocab ${s.vocabSize} does not cover the tokenizer's ids 0..${tokenizerLast}`);
}

/** config.json as transformers' Mamba2Config.save_pretrained writes it (keys sorted, 2-space indent). */
export function mamba2ConfigJson(s: RandomMamba2Shape): string {
  const { H } = mamba2Dims(s);
  const cfg: Record<string, unknown> = {
    architectures: ['Mamba2ForCausalLM'],
    bos_token_id: 0,
    chunk_size: s.chunkSize,
    conv_kernel: s.convKernel,
    eos_token_id: 0,
    expand: s.expand,
    head_dim: s.headDim,
    hidden_act: 'silu',
    hidden_size: s.hiddenSize,
    initializer_range: 0.1,
    layer_norm_epsilon: 1e-5,
    model_type: 'mamba2',
    n_groups: s.nGroups,
    num_heads: H,
    num_hidden_layers: s.numHiddenLayers,
    pad_token_id: 0,
    rescale_prenorm_residual: false,
    residual_in_fp32: true,
    rms_norm: true,
    state_size: s.stateSize,
    tie_word_embeddings: s.tieWordEmbeddings,
    time_step_floor: 0.0001,
    time_step_limit: [0.0, 'INFINITY'],
    time_step_max: 0.1,
    time_step_min: 0.001,
    time_step_rank: Math.ceil(s.hiddenSize / 16),
    torch_dtype: 'float32',
    transformers_version: '4.46.0',
    use_bias: false,
    use_cache: true,
    use_conv_bias: true,
    vocab_size: s.vocabSize,
  };
  // Python's json writes floats its own way: a bare Infinity, 0.0 with its point, 1e-05
  return (
    JSON.stringify(cfg, null, 2)
      .replace('"INFINITY"', 'Infinity')
      .replace(/("time_step_limit": \[\n\s+)0,/, '$10.0,')
      .replace('"layer_norm_epsilon": 0.00001', '"layer_norm_epsilon": 1e-05') + '\n'
  );
}

/** How one tensor's values are drawn. */
type Fill = { mean: number; sd: number } | ((i: number) => number);

interface TensorPlan {
  name: string;
  shape: number[];
  fill: Fill;
}

/** Every tensor in the order of transformers' Mamba2ForCausalLM state dict, with its distribution. */
export function mamba2TensorPlan(s: RandomMamba2Shape, rnd: () => number): TensorPlan[] {
  const { E, H, CH, inProjRows } = mamba2Dims(s);
  const d = s.hiddenSize;
  const L = s.numHiddenLayers;
  const norm = { mean: 1, sd: 0.05 };
  const plan: TensorPlan[] = [{ name: 'backbone.embeddings.weight', shape: [s.vocabSize, d], fill: { mean: 0, sd: 0.02 } }];
  for (let l = 0; l < L; l++) {
    const p = `backbone.layers.${l}`;
    plan.push(
      { name: `${p}.norm.weight`, shape: [d], fill: norm },
      // one value per head; rnd() is uniform in [0, 1)
      {
        name: `${p}.mixer.dt_bias`,
        shape: [H],
        fill: () => invSoftplus(Math.exp(Math.log(1e-3) + rnd() * (Math.log(1e-1) - Math.log(1e-3)))),
      },
      { name: `${p}.mixer.A_log`, shape: [H], fill: () => Math.log(1 + 15 * rnd()) },
      { name: `${p}.mixer.D`, shape: [H], fill: { mean: 1, sd: 0 } },
      { name: `${p}.mixer.in_proj.weight`, shape: [inProjRows, d], fill: { mean: 0, sd: 1 / Math.sqrt(d) } },
      { name: `${p}.mixer.conv1d.weight`, shape: [CH, 1, s.convKernel], fill: { mean: 0, sd: 1 / Math.sqrt(s.convKernel) } },
      { name: `${p}.mixer.conv1d.bias`, shape: [CH], fill: { mean: 0, sd: 0.1 } },
      { name: `${p}.mixer.norm.weight`, shape: [E], fill: norm },
      { name: `${p}.mixer.out_proj.weight`, shape: [d, E], fill: { mean: 0, sd: 1 / Math.sqrt(E) / Math.sqrt(2 * L) } },
    );
  }
  plan.push({ name: 'backbone.norm_f.weight', shape: [d], fill: norm });
  if (!s.tieWordEmbeddings) plan.push({ name: 'lm_head.weight', shape: [s.vocabSize, d], fill: { mean: 0, sd: 0.02 } });
  return plan;
}

/** softplus^-1(y) = y + log(1 - e^-y). */
const invSoftplus = (y: number): number => y + Math.log(-Math.expm1(-y));

/** xorshift64* in [0, 1), seeded (never 0). */
export function seededUniform(seed: number): () => number {
  let x = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + 0x2545f4914f6cdd1dn) || 1n;
  return () => {
    x ^= x >> 12n;
    x ^= BigInt.asUintN(64, x << 25n);
    x ^= x >> 27n;
    return Number(BigInt.asUintN(64, x * 0x2545f4914f6cdd1dn) >> 11n) / 2 ** 53;
  };
}

/** A fast generator for the bulk values (BigInt is too slow for 130M of them): xorshift128+ on 32-bit halves. */
function bulkUniform(rnd: () => number): () => number {
  const s = new Uint32Array(4).map(() => Math.floor(rnd() * 2 ** 32) | 1);
  return () => {
    // xorshift128 (Marsaglia), 32-bit state words
    let t = s[3];
    t ^= t << 11;
    t ^= t >>> 8;
    s[3] = s[2];
    s[2] = s[1];
    s[1] = s[0];
    s[0] = t ^ s[0] ^ (s[0] >>> 19);
    return s[0] / 2 ** 32;
  };
}

export interface WriteRandomMamba2Options {
  shape?: Partial<RandomMamba2Shape>;
  seed?: number;
  /** tokenizer.json to copy (default: the repository's test/fixtures/gpt-neox-20b-tokenizer.json). */
  tokenizer?: string;
}

function defaultTokenizer(): string {
  // from bench/ (ts-jest) or dist/bench/ (compiled)
  for (const up of ['..', '../..']) {
    const f = path.join(__dirname, up, 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json');
    if (fs.existsSync(f)) return f;
  }
  throw new Error('random_mamba2_folder: test/fixtures/gpt-neox-20b-tokenizer.json not found; pass a tokenizer');
}

/** Writes config.json, model.safetensors and tokenizer.json into `dir` (created); returns the shape. */
export function writeRandomMamba2Folder(dir: string, opts: WriteRandomMamba2Options = {}): RandomMamba2Shape {
  const shape: RandomMamba2Shape = { ...MAMBA2_130M, ...opts.shape };
  const tokenizer = opts.tokenizer ?? defaultTokenizer();
  checkShape(shape, tokenizerLastId(tokenizer));
  const rnd = seededUniform(opts.seed ?? 1);
  const bulk = bulkUniform(rnd);
  const plan = mamba2TensorPlan(shape, rnd);
  fs.mkdirSync(dir, { recursive: true });

  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of plan) {
    const bytes = 4 * t.shape.reduce((a, b) => a * b, 1);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const t of plan) {
      const v = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
      const f = t.fill;
      if (typeof f === 'function') for (let i = 0; i < v.length; i++) v[i] = f(i);
      else {
        const half = f.sd * Math.sqrt(3); // uniform on [mean - half, mean + half] has standard deviation sd
        for (let i = 0; i < v.length; i++) v[i] = f.mean + half * (2 * bulk() - 1);
      }
      fs.writeSync(fd, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.writeFileSync(path.join(dir, 'config.json'), mamba2ConfigJson(shape));
  fs.copyFileSync(tokenizer, path.join(dir, 'tokenizer.json'));
  return shape;
}

const FLAGS: Record<string, keyof RandomMamba2Shape> = {
  '--hidden': 'hiddenSize',
  '--layers': 'numHiddenLayers',
  '--expand': 'expand',
  '--head-dim': 'headDim',
  '--groups': 'nGroups',
  '--state': 'stateSize',
  '--conv': 'convKernel',
  '--vocab': 'vocabSize',
  '--chunk': 'chunkSize',
};

function main(argv: string[]): void {
  const usage = (msg: string): never => {
    console.error(
      `random_mamba2_folder: ${msg}\nusage: node dist/bench/random_mamba2_folder.js --out DIR [--shape ${Object.keys(SHAPES).join('|')}] [--seed N] ` +
        `[${Object.keys(FLAGS).join(' N] [')} N] [--untied] [--tokenizer FILE]`,
    );
    process.exit(2);
  };
  let out: string | undefined;
  let tokenizer: string | undefined;
  let seed = 1;
  let base = MAMBA2_130M;
  const shape: Partial<RandomMamba2Shape> = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--untied') {
      shape.tieWordEmbeddings = false;
      continue;
    }
    const v = argv[++i];
    if (v === undefined) usage(`${k} needs a value`);
    if (k === '--out') out = v;
    else if (k === '--tokenizer') tokenizer = v;
    else if (k === '--shape') base = SHAPES[v] ?? usage(`unknown --shape '${v}'`);
    else if (k === '--seed' || k in FLAGS) {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < (k === '--seed' ? 0 : 1))
        usage(`${k} must be an integer${k === '--seed' ? ' >= 0' : ' >= 1'}, got '${v}'`);
      if (k === '--seed') seed = n;
      else (shape[FLAGS[k]] as number) = n;
    } else usage(`unknown option '${k}'`);
  }
  if (!out) usage('--out DIR is required');
  const t0 = Date.now();
  const s = writeRandomMamba2Folder(out!, { shape: { ...base, ...shape }, seed, tokenizer });
  const bytes = fs.statSync(path.join(out!, 'model.safetensors')).size;
  console.log(JSON.stringify({ out: out!, seed, ...s, ...mamba2Dims(s), bytes, seconds: (Date.now() - t0) / 1000 }));
}

if (require.main === module) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
