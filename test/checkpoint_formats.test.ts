/**
 * The original checkpoint formats (issue 27 item 6): PyTorch's pytorch_model.bin (single, sharded,
 * ZIP64) loads exactly like the same weights as model.safetensors, safetensors win when a folder
 * holds both, state-spaces' own config.json folders load, and the Mamba-2 family is recognised in
 * each of its layouts (HF Mamba2ForCausalLM, state-spaces ssm_cfg.layer "Mamba2", Mistral's
 * params.json of Mamba-Codestral) and parsed (the engine's own tests: test/mamba2.test.ts). config.json is read as Python
 * writes it (Infinity, -Infinity, NaN). Every folder is written here, in a temporary directory.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';

import { loadConfig, parseMamba2Config, parsePythonJson } from '../lib/checkpoint/config';
import { encodeSafetensors, openCheckpoint, type TensorToEncode } from '../lib/checkpoint/safetensors';
import { openTorchBin } from '../lib/checkpoint/torch_bin';
import { loadModel } from '../lib/engine/load';
import { SimbaError } from '../lib/errors';
import type { MambaConfig, TensorDType } from '../lib/types';
import { randomConfig, randomEngineTensors, stateSpacesConfigJson, hfConfigJson, toHfTensors } from './reference/random_model';
import { fuzzParams } from './fuzz/params';
import { encodeTorchSave, type TorchTensor } from './helpers/torch_save';
import { randomMamba2Weights, writeMamba2Folder } from './helpers/mamba2_folder';
import { maxRowErr, randTokens, rejection, tmpDir } from './helpers/util';
import { mamba2ZeroState, refMamba2Forward, type Mamba2RefConfig } from './reference/mamba2_ref';

const work = tmpDir('simba-formats-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

let folders = 0;
/** A fresh folder holding the given files (JSON objects are written as JSON). */
function folder(files: Record<string, Buffer | string | object>): string {
  const dir = path.join(work, `m${folders++}`);
  fs.mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.isBuffer(content) || typeof content === 'string' ? content : JSON.stringify(content, null, 2);
    fs.writeFileSync(path.join(dir, name), data);
  }
  return dir;
}

type Layout = 'hf' | 'state-spaces';

/** The checkpoint tensors of random weights for cfg, by name, in the checkpoint's order. */
function checkpointTensors(cfg: MambaConfig, layout: Layout, dtype: TensorDType, seed: number): Record<string, TorchTensor> {
  const out: Record<string, TorchTensor> = {};
  for (const t of toHfTensors(cfg, randomEngineTensors(cfg, seed), layout, dtype))
    out[t.name] = { dtype: t.dtype, shape: t.shape, data: t.data };
  return out;
}

const safetensors = (t: Record<string, TorchTensor>): Buffer => encodeSafetensors(t as Record<string, TensorToEncode>);

/** A tied state-spaces head is stored by torch.save as the embedding's own storage. */
function tiedShare(layout: Layout, cfg: MambaConfig): Record<string, string> | undefined {
  return layout === 'state-spaces' && cfg.tieEmbeddings ? { 'lm_head.weight': 'backbone.embedding.weight' } : undefined;
}

async function allLogits(dir: string, ids: number[]): Promise<Float32Array[]> {
  const m = await loadModel(dir);
  try {
    return (await m.logits(ids, 'all')).logits;
  } finally {
    m.dispose();
  }
}

describe('pytorch_model.bin loads like model.safetensors', () => {
  const cases: [string, Layout, TensorDType, Partial<MambaConfig>][] = [
    ['state-spaces names, f32, tied head', 'state-spaces', 'F32', {}],
    ['HF names, bf16, untied head, biases', 'hf', 'BF16', { tieEmbeddings: false, projBias: true }],
  ];
  test.each(cases)('%s: bit-identical logits', async (_label, layout, dtype, over) => {
    const cfg = randomConfig({ dModel: 24, nLayer: 2, vocabSize: 48, ...over });
    const tensors = checkpointTensors(cfg, layout, dtype, 11);
    const config = layout === 'hf' ? hfConfigJson(cfg, dtype) : stateSpacesConfigJson(cfg);
    const st = folder({ 'config.json': config, 'model.safetensors': safetensors(tensors) });
    const bin = folder({
      'config.json': config,
      'pytorch_model.bin': encodeTorchSave(tensors, { shared: tiedShare(layout, cfg) }),
    });
    const ck = openCheckpoint(bin);
    try {
      expect(ck.format).toBe('pytorch');
      expect(ck.names()).toEqual(Object.keys(tensors).sort());
    } finally {
      ck.close();
    }
    const ids = randTokens(13, cfg.vocabSize, 3);
    const want = await allLogits(st, ids);
    const got = await allLogits(bin, ids);
    expect(got).toHaveLength(13);
    const bits = (r: Float32Array) => Buffer.from(r.buffer, r.byteOffset, r.byteLength);
    for (let t = 0; t < want.length; t++) expect(bits(got[t])).toEqual(bits(want[t]));
  });

  test('a sharded pytorch_model.bin.index.json (one shard in ZIP64 records) gives the same logits', async () => {
    const cfg = randomConfig({ dModel: 16, nLayer: 3, vocabSize: 40 });
    const tensors = checkpointTensors(cfg, 'hf', 'F32', 12);
    const names = Object.keys(tensors);
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const files: Record<string, Buffer | object> = { 'config.json': hfConfigJson(cfg) };
    const weightMap: Record<string, string> = {};
    shards.forEach((part, i) => {
      const file = `pytorch_model-0000${i + 1}-of-00002.bin`;
      const sub = Object.fromEntries(part.map((n) => [n, tensors[n]]));
      files[file] = encodeTorchSave(sub, { archive: file.replace(/\.bin$/, ''), zip64: i === 1 });
      for (const n of part) weightMap[n] = file;
    });
    files['pytorch_model.bin.index.json'] = { metadata: { total_size: 0 }, weight_map: weightMap };
    const bin = folder(files);
    const st = folder({ 'config.json': hfConfigJson(cfg), 'model.safetensors': safetensors(tensors) });
    const ck = openCheckpoint(bin);
    try {
      expect(ck.files.map((f) => path.basename(f))).toEqual([
        'pytorch_model-00001-of-00002.bin',
        'pytorch_model-00002-of-00002.bin',
      ]);
    } finally {
      ck.close();
    }
    const ids = randTokens(9, cfg.vocabSize, 4);
    expect(await allLogits(bin, ids)).toEqual(await allLogits(st, ids));
  });

  test('a sharded index naming a missing shard, or a tensor its shard lacks, is an E_WEIGHTS', () => {
    const cfg = randomConfig({ dModel: 16, nLayer: 1, vocabSize: 32 });
    const tensors = checkpointTensors(cfg, 'hf', 'F32', 1);
    const dir = folder({
      'pytorch_model-1.bin': encodeTorchSave(tensors),
      'pytorch_model.bin.index.json': {
        weight_map: { 'backbone.norm_f.weight': 'pytorch_model-1.bin', 'x.weight': 'pytorch_model-2.bin' },
      },
    });
    const e = catchSimba(() => openCheckpoint(dir));
    expect(e.code).toBe('E_WEIGHTS');
    expect(e.message).toMatch(/shard 'pytorch_model-2\.bin' listed in weight_map is missing/);
    fs.writeFileSync(
      path.join(dir, 'pytorch_model.bin.index.json'),
      JSON.stringify({ weight_map: { 'not.there': 'pytorch_model-1.bin' } }),
    );
    expect(catchSimba(() => openCheckpoint(dir)).message).toMatch(
      /tensor 'not\.there' is listed in weight_map for shard 'pytorch_model-1\.bin' but is absent/,
    );
  });

  test('safetensors are preferred when a folder holds both', async () => {
    const cfg = randomConfig({ dModel: 16, nLayer: 1, vocabSize: 32 });
    const tensors = checkpointTensors(cfg, 'hf', 'F32', 5);
    const other = checkpointTensors(cfg, 'hf', 'F32', 6);
    const both = folder({
      'config.json': hfConfigJson(cfg),
      'model.safetensors': safetensors(tensors),
      'pytorch_model.bin': encodeTorchSave(other),
    });
    const onlySt = folder({ 'config.json': hfConfigJson(cfg), 'model.safetensors': safetensors(tensors) });
    const onlyBin = folder({ 'config.json': hfConfigJson(cfg), 'pytorch_model.bin': encodeTorchSave(other) });
    const ck = openCheckpoint(both);
    expect(ck.format).toBe('safetensors');
    ck.close();
    const ids = randTokens(5, cfg.vocabSize, 7);
    const got = await allLogits(both, ids);
    expect(got).toEqual(await allLogits(onlySt, ids));
    expect(got).not.toEqual(await allLogits(onlyBin, ids));
  });

  test('loadModel of a folder whose pytorch_model.bin would run a command: E_WEIGHTS, and nothing runs', async () => {
    const marker = '/tmp/simba-pickle-ran-code'; // what the hostile fixtures would create
    fs.rmSync(marker, { force: true });
    const cfg = randomConfig({ dModel: 16, nLayer: 1, vocabSize: 32 });
    const evil = fs.readFileSync(path.join(__dirname, 'fixtures', 'torch-bin', 'evil-os-system.bin'));
    const dir = folder({ 'config.json': hfConfigJson(cfg), 'pytorch_model.bin': evil });
    const e = await rejection(loadModel(dir));
    expect(e.code).toBe('E_WEIGHTS');
    expect(e.message).toMatch(/global 'posix\.system' is not allowed: loading a file never runs code/);
    expect(fs.existsSync(marker)).toBe(false);
  });

  test('a ZIP64 torch.save file is read (end record, locator and 64-bit entry fields)', () => {
    const data = Float32Array.from({ length: 6 }, (_, i) => i - 2.5);
    const file = path.join(folder({}), 'z64.bin');
    fs.writeFileSync(file, encodeTorchSave({ w: { dtype: 'F32', shape: [2, 3], data } }, { zip64: true, archive: 'z64' }));
    const t = openTorchBin(file);
    try {
      expect(t.archive).toBe('z64');
      expect(t.info('w')).toMatchObject({ dtype: 'F32', shape: [2, 3], numel: 6 });
      expect(t.info('w').byteOffset % 64).toBe(0); // aligned as torch aligns storages
      expect(Array.from(t.readTensorF32('w'))).toEqual(Array.from(data));
    } finally {
      t.close();
    }
  });

  test('a folder with neither names what it looked for and what it found', () => {
    const dir = folder({ 'config.json': {}, 'weights.pt': 'x' });
    const e = catchSimba(() => openCheckpoint(dir));
    expect(e.code).toBe('E_IO');
    expect(e.message).toMatch(/no checkpoint file \(looked for model\.safetensors\.index\.json, .*pytorch_model\.bin\)/);
    expect(e.message).toMatch(/found weights\.pt/);
  });
});

describe("state-spaces' own folders", () => {
  test('config.json with d_model / n_layer / ssm_cfg and a padded vocabulary loads, with the logits of the same weights in HF form', async () => {
    // mamba_ssm pads the embedding to pad_vocab_size_multiple and saves a tied head as the same storage
    const cfg = randomConfig({ dModel: 32, nLayer: 2, vocabSize: 64, dState: 16, dInner: 64, dtRank: 2, dConv: 4 });
    const ssConfig = { ...SS_MAMBA2, d_model: 32, n_layer: 2, vocab_size: 60, ssm_cfg: {} };
    const ss = checkpointTensors(cfg, 'state-spaces', 'F32', 21);
    const dir = folder({
      'config.json': ssConfig,
      'pytorch_model.bin': encodeTorchSave(ss, { shared: tiedShare('state-spaces', cfg) }),
    });
    expect(loadConfig(dir)).toMatchObject({ vocabSize: 64, dModel: 32, nLayer: 2, dInner: 64, dState: 16, dtRank: 2, dConv: 4 });
    const hf = folder({
      'config.json': hfConfigJson(cfg),
      'model.safetensors': safetensors(checkpointTensors(cfg, 'hf', 'F32', 21)),
    });
    const ids = randTokens(11, 60, 8);
    const got = await allLogits(dir, ids);
    expect(got[0]).toHaveLength(64);
    expect(got).toEqual(await allLogits(hf, ids));
  });
});

/** The config.json transformers writes for a Mamba2ForCausalLM (Python's Infinity included). */
const HF_MAMBA2 = `{
  "architectures": ["Mamba2ForCausalLM"],
  "bos_token_id": 0, "chunk_size": 64, "conv_kernel": 4, "eos_token_id": 0, "expand": 2,
  "head_dim": 32, "hidden_act": "silu", "hidden_size": 128, "initializer_range": 0.1,
  "layer_norm_epsilon": 1e-05, "model_type": "mamba2", "n_groups": 2, "num_heads": 8,
  "num_hidden_layers": 6, "pad_token_id": 1, "rescale_prenorm_residual": false,
  "residual_in_fp32": true, "rms_norm": true, "state_size": 32, "tie_word_embeddings": true,
  "time_step_floor": 0.0001, "time_step_limit": [0.0, Infinity], "time_step_max": 0.1,
  "time_step_min": 0.001, "time_step_rank": 8, "torch_dtype": "float32",
  "transformers_version": "4.46.0", "use_bias": false, "use_cache": true, "use_conv_bias": true,
  "vocab_size": 4096
}`;

/** state-spaces/mamba2-130m's config.json. */
const SS_MAMBA2 = {
  d_model: 768,
  d_intermediate: 0,
  n_layer: 24,
  vocab_size: 50277,
  ssm_cfg: { layer: 'Mamba2' },
  attn_layer_idx: [],
  attn_cfg: {},
  rms_norm: true,
  residual_in_fp32: true,
  fused_add_norm: true,
  pad_vocab_size_multiple: 16,
  tie_embeddings: true,
};

/** mistralai/Mamba-Codestral-7B-v0.1's params.json. */
const CODESTRAL = {
  dim: 4096,
  n_layers: 64,
  vocab_size: 32768,
  n_groups: 8,
  rms_norm: true,
  residual_in_fp32: true,
  fused_add_norm: true,
  pad_vocab_size_multiple: 1,
  tie_embeddings: false,
  model_type: 'mamba',
};

function catchSimba(fn: () => unknown): SimbaError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SimbaError);
    return e as SimbaError;
  }
  throw new Error('did not throw');
}

describe('Mamba-2 folders are recognised and parsed in each layout', () => {
  test('parseMamba2Config reads each layout', () => {
    expect(parseMamba2Config(parsePythonJson(HF_MAMBA2, 'config.json'), 'config.json')).toEqual({
      layout: 'hf',
      vocabSize: 4096,
      dModel: 128,
      nLayer: 6,
      dInner: 256,
      nHeads: 8,
      headDim: 32,
      nGroups: 2,
      dState: 32,
      dConv: 4,
      chunkSize: 64,
      dtLimit: [0, Infinity],
      convBias: true,
      projBias: false,
      eps: 1e-5,
      tieEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
      padTokenId: 1,
    });
    expect(parseMamba2Config(SS_MAMBA2, 'config.json')).toMatchObject({
      layout: 'state-spaces',
      vocabSize: 50288, // 50277 padded to a multiple of 16
      dModel: 768,
      nLayer: 24,
      dInner: 1536,
      nHeads: 24,
      headDim: 64,
      nGroups: 1,
      dState: 128,
      chunkSize: 256,
      tieEmbeddings: true,
    });
    expect(parseMamba2Config(CODESTRAL, 'params.json')).toMatchObject({
      layout: 'mistral',
      vocabSize: 32768,
      dModel: 4096,
      nLayer: 64,
      dInner: 8192,
      nHeads: 128,
      headDim: 64,
      nGroups: 8,
      dState: 128,
      tieEmbeddings: false,
    });
    const ss = { ...SS_MAMBA2, ssm_cfg: { layer: 'Mamba2', headdim: 32, ngroups: 4, d_state: 64, dt_limit: [0.001, 0.1] } };
    expect(parseMamba2Config(ss, 'c')).toMatchObject({ nHeads: 48, headDim: 32, nGroups: 4, dState: 64, dtLimit: [0.001, 0.1] });
  });

  test.each([
    [
      'ssm_cfg.d_ssm (a gated MLP)',
      { ...SS_MAMBA2, ssm_cfg: { layer: 'Mamba2', d_ssm: 768 } },
      /'ssm_cfg\.d_ssm' = 768: a gated MLP/,
    ],
    ['D per channel', { ...SS_MAMBA2, ssm_cfg: { layer: 'Mamba2', D_has_hdim: true } }, /D_has_hdim' = true/],
    ['norm before the gate', { ...SS_MAMBA2, ssm_cfg: { layer: 'Mamba2', norm_before_gate: true } }, /norm_before_gate' = true/],
    [
      'heads that do not split into groups',
      { ...SS_MAMBA2, ssm_cfg: { layer: 'Mamba2', ngroups: 5 } },
      /24 heads do not split into 'ssm_cfg\.ngroups' = 5/,
    ],
    [
      'a bad dt limit',
      { ...SS_MAMBA2, ssm_cfg: { layer: 'Mamba2', dt_limit: [1, 0] } },
      /'ssm_cfg\.dt_limit' must be \[low, high\].*found \[1, 0\]/,
    ],
    [
      'HF heads disagreeing with expand',
      { ...JSON.parse(HF_MAMBA2.replace('Infinity', '1e9')), num_heads: 4 },
      /'num_heads \* head_dim' = 128 but 'expand \* hidden_size' = 256/,
    ],
    [
      'a transformer params.json',
      { dim: 4096, n_layers: 32, n_heads: 32, head_dim: 128, hidden_dim: 14336, vocab_size: 32768 },
      /Mistral transformer's params\.json \('n_heads', 'head_dim', 'hidden_dim'\), not a Mamba model/,
    ],
  ])('parseMamba2Config refuses %s with an E_CONFIG naming it', (_label, json, why) => {
    const e = catchSimba(() => parseMamba2Config(json, 'c.json'));
    expect(e.code).toBe('E_CONFIG');
    expect(e.message).toMatch(why);
  });

  test.each([
    [
      'an HF Mamba2ForCausalLM folder',
      { 'config.json': HF_MAMBA2 },
      { dInner: 256, mamba2: { nHeads: 8, headDim: 32, nGroups: 2 } },
    ],
    ['a state-spaces mamba2-130m folder', { 'config.json': SS_MAMBA2 }, { vocabSize: 50288, mamba2: { nHeads: 24, nGroups: 1 } }],
    [
      'a Mamba-Codestral folder (params.json)',
      { 'params.json': CODESTRAL },
      { dInner: 8192, mamba2: { nHeads: 128, nGroups: 8 } },
    ],
  ])('loadConfig reads %s as a Mamba-2 MambaConfig (dtRank 0, the SSD fields under mamba2)', (_label, files, want) => {
    const c = loadConfig(folder(files));
    expect(c).toMatchObject({ ...want, dtRank: 0 });
    expect(c.mamba2!.dtLimit).toEqual([0, Infinity]);
  });

  test('a Mamba-Codestral-style folder (params.json + consolidated.safetensors, state-spaces names) loads and runs as the reference', async () => {
    // params.json fixes head_dim 64 and d_state 128; dim 32 gives d_inner 64: one head per group of 2
    const params = { ...CODESTRAL, dim: 32, n_layers: 2, vocab_size: 40, n_groups: 1, tie_embeddings: false };
    const cfg: Mamba2RefConfig = {
      d: 32,
      L: 2,
      V: 40,
      H: 1,
      P: 64,
      G: 1,
      N: 128,
      K: 4,
      eps: 1e-5,
      dtLimit: [0, Infinity],
      chunk: 256,
      convBias: true,
    };
    const w = randomMamba2Weights(cfg, 8, false);
    const src = writeMamba2Folder(cfg, w, { layout: 'state-spaces' });
    const dir = folder({
      'params.json': params,
      'consolidated.safetensors': fs.readFileSync(path.join(src, 'model.safetensors')),
    });
    const m = await loadModel(dir);
    try {
      const ids = randTokens(9, cfg.V, 2);
      const want = refMamba2Forward(cfg, w, ids, mamba2ZeroState(cfg));
      const got = (await m.logits(ids, 'all')).logits;
      const rows = got.map((_, t) => want.subarray(t * cfg.V, (t + 1) * cfg.V));
      expect(maxRowErr(got, rows)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  test('a malformed Mamba-2 config names its problem', () => {
    const dir = folder({ 'config.json': { ...SS_MAMBA2, n_layer: 0 } });
    expect(catchSimba(() => loadConfig(dir)).message).toMatch(/key 'n_layer' must be a positive integer, found 0/);
  });
});

describe('config.json as Python writes it', () => {
  test('Infinity, -Infinity and NaN are read as bare values, and only there', () => {
    const text =
      '{"a": [0.0, Infinity], "b": -Infinity, "c": NaN, "d": "Infinity NaN", "e": {"f": [true, false, null, -1.5e-3]}}';
    const v = parsePythonJson(text, 'x.json') as Record<string, unknown>;
    expect(v).toEqual({ a: [0, Infinity], b: -Infinity, c: NaN, d: 'Infinity NaN', e: { f: [true, false, null, -0.0015] } });
    // the rest is JSON.parse's JSON
    const plain = '{"s": "\\u00e9\\n\\"", "n": [0, -0, 1e400, 12.5E+2], "__proto__": {"x": 1}, "k": {}}';
    expect(parsePythonJson(plain, 'x.json')).toEqual(JSON.parse(plain));
    expect(Object.getPrototypeOf(parsePythonJson(plain, 'x.json'))).toBe(Object.prototype);
  });

  test('a config.json with Infinity loads: the dt limit is [0, Infinity]', () => {
    const dir = folder({ 'config.json': HF_MAMBA2 });
    expect(loadConfig(dir).mamba2!.dtLimit).toEqual([0, Infinity]);
  });

  test.each([
    [
      'a bare Infinitx',
      HF_MAMBA2.replace('Infinity', 'Infinitx'),
      /line 8, column 55: unexpected 'Infinitx' \(bare values are true, false, null and Python's NaN, Infinity, -Infinity\)/,
    ],
    ['a trailing comma', '{"a": 1,}', /line 1, column 9: expected a key in double quotes, found '}'/],
    ['single quotes', "{'a': 1}", /line 1, column 2: expected a key in double quotes, found ''a''/],
    ['an unclosed object', '{"a": [1, 2]', /line 1, column 13: expected ',' or '}', found the end of the text/],
    ['a control character in a string', '{"a": "x\ty"}', /column 7: a string that is not closed/],
    ['text after the value', '{} {}', /line 1, column 4: unexpected '\{' after the value/],
    ['nothing', '', /expected a value, found the end of the text/],
    ['nesting past the limit', '['.repeat(300) + ']'.repeat(300), /nested deeper than 256 levels/],
  ])('%s is an E_CONFIG naming the place', (_label, text, why) => {
    const dir = folder({ 'config.json': text });
    const e = catchSimba(() => loadConfig(dir));
    expect(e.code).toBe('E_CONFIG');
    expect(e.message).toContain(`${path.join(dir, 'config.json')}: not valid JSON at line`);
    expect(e.message).toMatch(why);
  });
});

describe('fuzz: parsePythonJson', () => {
  /** JSON text as Python's json.dumps writes it: non-finite numbers as bare NaN / Infinity / -Infinity. */
  const pythonDumps = (v: unknown): string => {
    if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
    if (Object.is(v, -0)) return '-0.0';
    if (Array.isArray(v)) return `[${v.map(pythonDumps).join(', ')}]`;
    if (v !== null && typeof v === 'object')
      return `{${Object.entries(v)
        .map(([k, x]) => `${JSON.stringify(k)}: ${pythonDumps(x)}`)
        .join(', ')}}`;
    return JSON.stringify(v);
  };
  const withNonFinite = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      fc.constantFrom(NaN, Infinity, -Infinity, 'Infinity', 'NaN', 0, -0),
      fc.jsonValue({ maxDepth: 1 }),
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 4 }),
    ),
  })).value;

  test('what Python writes reads back as the value, and any JSON text as JSON.parse reads it', () => {
    fc.assert(
      fc.property(withNonFinite, fc.json({ maxDepth: 3 }), (v, text) => {
        expect(parsePythonJson(pythonDumps(v), 'x')).toEqual(v);
        expect(parsePythonJson(text, 'x')).toEqual(JSON.parse(text));
      }),
      fuzzParams(300, { offset: 27 }),
    );
  });

  test('damaged text is an E_CONFIG naming line and column, or what JSON.parse reads', () => {
    const base = HF_MAMBA2.replace('Infinity', '1e308');
    const edit = fc.record({ at: fc.nat(base.length - 1), cut: fc.nat(3), insert: fc.string({ maxLength: 3 }) });
    fc.assert(
      fc.property(edit, ({ at, cut, insert }) => {
        const text = base.slice(0, at) + insert + base.slice(at + cut);
        let want: unknown;
        try {
          want = JSON.parse(text);
        } catch {
          if (/NaN|Infinity/.test(text) || text.startsWith('\uFEFF')) return; // Python's values, or a byte order mark
          const e = catchSimba(() => parsePythonJson(text, 'x.json'));
          expect(e.code).toBe('E_CONFIG');
          expect(e.message).toMatch(/^x\.json: not valid JSON at line \d+, column \d+: /);
          return;
        }
        expect(parsePythonJson(text, 'x.json')).toEqual(want);
      }),
      fuzzParams(500, { offset: 28 }),
    );
  });
});
