import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadConfig, parseConfig } from '../lib/checkpoint/config';
import { encodeSafetensors, openCheckpoint } from '../lib/checkpoint/safetensors';
import type { TensorToEncode } from '../lib/checkpoint/safetensors';
import { loadWeights, inspectWeights, planWeights } from '../lib/checkpoint/weights';
import { tensorTable } from '../lib/engine/load';
import { SimbaError } from '../lib/errors';
import type { EngineTensor, MambaConfig, TensorDType } from '../lib/types';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the module object itself, so jest can spy on its functions
import fsModule = require('fs');

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-w-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Deterministic pseudo-random values (LCG), in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

interface Dims {
  vocab: number;
  d: number;
  layers: number;
  e: number;
  n: number;
  r: number;
  k: number;
  convBias?: boolean;
  projBias?: boolean;
}
const DIMS: Dims = { vocab: 24, d: 8, layers: 2, e: 16, n: 4, r: 2, k: 3 };

/** The checkpoint tensors of a tiny Mamba, HF names (or state-spaces embedding name). */
function tinyTensors(
  dm: Dims,
  opts: { stateSpaces?: boolean; lmHead?: boolean; embRows?: number; dtype?: TensorDType } = {},
): Record<string, TensorToEncode> {
  const dtype = opts.dtype ?? 'F32';
  let seed = 1;
  const t = (shape: number[]): TensorToEncode => ({
    dtype,
    shape,
    data: values(
      shape.reduce((a, b) => a * b, 1),
      seed++,
    ),
  });
  const out: Record<string, TensorToEncode> = {};
  const rows = opts.embRows ?? dm.vocab;
  out[opts.stateSpaces ? 'backbone.embedding.weight' : 'backbone.embeddings.weight'] = t([rows, dm.d]);
  for (let i = 0; i < dm.layers; i++) {
    const p = `backbone.layers.${i}.`;
    out[`${p}norm.weight`] = t([dm.d]);
    out[`${p}mixer.in_proj.weight`] = t([2 * dm.e, dm.d]);
    if (dm.projBias) out[`${p}mixer.in_proj.bias`] = t([2 * dm.e]);
    out[`${p}mixer.conv1d.weight`] = t([dm.e, 1, dm.k]);
    if (dm.convBias !== false) out[`${p}mixer.conv1d.bias`] = t([dm.e]);
    out[`${p}mixer.x_proj.weight`] = t([dm.r + 2 * dm.n, dm.e]);
    out[`${p}mixer.dt_proj.weight`] = t([dm.e, dm.r]);
    out[`${p}mixer.dt_proj.bias`] = t([dm.e]);
    out[`${p}mixer.A_log`] = t([dm.e, dm.n]);
    out[`${p}mixer.D`] = t([dm.e]);
    out[`${p}mixer.out_proj.weight`] = t([dm.d, dm.e]);
    if (dm.projBias) out[`${p}mixer.out_proj.bias`] = t([dm.d]);
  }
  out['backbone.norm_f.weight'] = t([dm.d]);
  if (opts.lmHead) out['lm_head.weight'] = t([rows, dm.d]);
  return out;
}

function hfConfig(dm: Dims, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'mamba',
    architectures: ['MambaForCausalLM'],
    vocab_size: dm.vocab,
    hidden_size: dm.d,
    num_hidden_layers: dm.layers,
    intermediate_size: dm.e,
    expand: dm.e / dm.d,
    state_size: dm.n,
    time_step_rank: dm.r,
    conv_kernel: dm.k,
    use_bias: dm.projBias ?? false,
    use_conv_bias: dm.convBias ?? true,
    tie_word_embeddings: true,
    ...extra,
  };
}

let dirCount = 0;
function modelDir(config: Record<string, unknown>, tensors: Record<string, TensorToEncode>, shards = 1): string {
  const dir = path.join(tmp, `m${dirCount++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  if (shards === 1) {
    fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
    return dir;
  }
  const names = Object.keys(tensors).sort();
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const part: Record<string, TensorToEncode> = {};
    names
      .filter((_, i) => i % shards === s)
      .forEach((n) => {
        part[n] = tensors[n];
        weightMap[n] = file;
      });
    fs.writeFileSync(path.join(dir, file), encodeSafetensors(part));
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}

function collect(dir: string, config: MambaConfig, opts = {}): EngineTensor[] {
  return [...loadWeights(dir, config, tensorTable(config), opts)];
}

function byKey(ts: EngineTensor[]): Map<string, EngineTensor> {
  return new Map(ts.map((t) => [`${t.name}@${t.layer}`, t]));
}

function catchError(fn: () => unknown): SimbaError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SimbaError);
    return e as SimbaError;
  }
  throw new Error('expected an error');
}

describe('loadWeights: shipped brown-mamba-s', () => {
  it('yields every engine tensor with the right shape and values', () => {
    const config = loadConfig(SHIPPED);
    const ts = collect(SHIPPED, config);
    expect(ts).toHaveLength(1 + 6 * 10 + 1);
    expect(ts[0]).toMatchObject({ name: 'embedding', layer: -1, shape: [4096, 128] });
    expect(ts[ts.length - 1]).toMatchObject({ name: 'norm_f', layer: -1, shape: [128] });
    expect(ts.some((t) => t.name === 'lm_head')).toBe(false);
    const expected: Record<string, number[]> = {
      norm: [128],
      in_proj: [512, 128],
      conv_w: [256, 4],
      conv_b: [256],
      x_proj: [40, 256],
      dt_proj_w: [256, 8],
      dt_proj_b: [256],
      A_log: [256, 16],
      D: [256],
      out_proj: [128, 256],
    };
    for (let i = 0; i < 6; i++) {
      const layer = ts.filter((t) => t.layer === i);
      expect(layer.map((t) => t.name)).toEqual(Object.keys(expected));
      for (const t of layer) {
        expect(t.shape).toEqual(expected[t.name]);
        expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      }
    }
    const ck = openCheckpoint(SHIPPED);
    try {
      const conv = byKey(ts).get('conv_w@3')!;
      expect(Array.from(conv.data)).toEqual(Array.from(ck.readTensorF32('backbone.layers.3.mixer.conv1d.weight')));
      expect(Array.from(byKey(ts).get('embedding@-1')!.data.subarray(0, 256))).toEqual(
        Array.from(ck.readTensorF32('backbone.embeddings.weight').subarray(0, 256)),
      );
    } finally {
      ck.close();
    }
  });

  it('checks the plan from headers only', () => {
    const plan = inspectWeights(SHIPPED, loadConfig(SHIPPED), tensorTable(loadConfig(SHIPPED)));
    expect(plan.layout).toBe('hf');
    expect(plan.entries).toHaveLength(62);
    expect(plan.f32Bytes).toBe(1224064 * 4);
  });
});

describe('loadWeights: synthetic checkpoints', () => {
  it('HF layout, single file: values and conv reshape', () => {
    const tensors = tinyTensors(DIMS);
    const dir = modelDir(hfConfig(DIMS), tensors);
    const ts = byKey(collect(dir, loadConfig(dir)));
    expect(ts.size).toBe(1 + 2 * 10 + 1);
    expect(ts.get('conv_w@1')!.shape).toEqual([16, 3]);
    expect(Array.from(ts.get('conv_w@1')!.data)).toEqual(Array.from(tensors['backbone.layers.1.mixer.conv1d.weight'].data));
    expect(Array.from(ts.get('x_proj@0')!.data)).toEqual(Array.from(tensors['backbone.layers.0.mixer.x_proj.weight'].data));
  });

  it('the tensor list and shapes come from the engine table handed in', () => {
    const dir = modelDir(hfConfig(DIMS), tinyTensors(DIMS));
    const config = loadConfig(dir);
    const table = tensorTable(config);
    // yields exactly the required rows of the table, in its order
    expect(collect(dir, config).map((t) => `${t.name}@${t.layer}`)).toEqual(
      table.filter((t) => t.required).map((t) => `${t.name}@${t.layer}`),
    );
    // a table that wants another shape makes the checkpoint's tensor a mismatch (E_SHAPE) ...
    const other = table.map((t) => (t.name === 'D' && t.layer === 1 ? { ...t, shape: [t.shape[0] + 1] } : t));
    const e1 = catchError(() => planWeights(openCheckpoint(dir), config, other));
    expect(e1.code).toBe('E_SHAPE');
    expect(e1.message).toMatch(/'backbone\.layers\.1\.mixer\.D' expected \[17\], found \[16\]/);
    // ... and one that does not list a tensor leaves it unexpected (E_WEIGHTS)
    const fewer = table.map((t) => (t.name === 'D' && t.layer === 1 ? { ...t, required: false } : t));
    const e2 = catchError(() => planWeights(openCheckpoint(dir), config, fewer));
    expect(e2.code).toBe('E_WEIGHTS');
    expect(e2.message).toMatch(/unexpected tensor\(s\) 'backbone\.layers\.1\.mixer\.D'/);
  });

  it('state-spaces layout (bf16, padded vocabulary from pad_vocab_size_multiple)', () => {
    const tensors = tinyTensors(DIMS, { stateSpaces: true, dtype: 'BF16' });
    const ssConfig = {
      d_model: 8,
      n_layer: 2,
      vocab_size: 21,
      pad_vocab_size_multiple: 8,
      rms_norm: true,
      residual_in_fp32: true,
      fused_add_norm: true,
      ssm_cfg: { d_state: 4, d_conv: 3, expand: 2, dt_rank: 2 },
    };
    const dir = modelDir(ssConfig, tensors);
    const config = loadConfig(dir);
    expect(config.vocabSize).toBe(24);
    const ts = byKey(collect(dir, config));
    const emb = ts.get('embedding@-1')!;
    expect(emb.shape).toEqual([24, 8]);
    const src = tensors['backbone.embedding.weight'].data;
    for (let i = 0; i < 16; i++) {
      // bf16 keeps 8 significant bits: relative error below 2^-8
      expect(Math.abs(emb.data[i] - src[i])).toBeLessThanOrEqual(Math.abs(src[i]) * 2 ** -8);
    }
    expect(inspectWeights(dir, config, tensorTable(config)).layout).toBe('state-spaces');
  });

  it('sharded checkpoint loads the same tensors as the single file', () => {
    const tensors = tinyTensors(DIMS, { dtype: 'F16' });
    const single = modelDir(hfConfig(DIMS), tensors);
    const sharded = modelDir(hfConfig(DIMS), tensors, 3);
    expect(fs.existsSync(path.join(sharded, 'model.safetensors'))).toBe(false);
    const a = collect(single, loadConfig(single));
    const b = collect(sharded, loadConfig(sharded));
    expect(b.map((t) => `${t.name}@${t.layer}`)).toEqual(a.map((t) => `${t.name}@${t.layer}`));
    for (let i = 0; i < a.length; i++) expect(Array.from(b[i].data)).toEqual(Array.from(a[i].data));
  });

  it('untied head: lm_head is emitted; missing lm_head is an error', () => {
    const dir = modelDir(hfConfig(DIMS, { tie_word_embeddings: false }), tinyTensors(DIMS, { lmHead: true }));
    const ts = collect(dir, loadConfig(dir));
    expect(ts[ts.length - 1]).toMatchObject({ name: 'lm_head', layer: -1, shape: [24, 8] });
    const noHead = modelDir(hfConfig(DIMS, { tie_word_embeddings: false }), tinyTensors(DIMS));
    const err = catchError(() => collect(noHead, loadConfig(noHead)));
    expect(err.code).toBe('E_WEIGHTS');
    expect(err.message).toMatch(/missing tensor\(s\) 'lm_head\.weight' \(the config says the LM head is not tied/);
  });

  it('tied head: a stored lm_head.weight is ignored', () => {
    const dir = modelDir(hfConfig(DIMS), tinyTensors(DIMS, { lmHead: true }));
    const ts = collect(dir, loadConfig(dir));
    expect(ts.some((t) => t.name === 'lm_head')).toBe(false);
    expect(inspectWeights(dir, loadConfig(dir), tensorTable(loadConfig(dir))).ignored).toEqual(['lm_head.weight']);
  });

  it('padded vocabulary: fewer embedding rows are zero-padded; more rows are an error', () => {
    const tensors = tinyTensors(DIMS, { embRows: 21, lmHead: true });
    const dir = modelDir(hfConfig(DIMS, { tie_word_embeddings: false }), tensors);
    const ts = byKey(collect(dir, loadConfig(dir)));
    for (const name of ['embedding@-1', 'lm_head@-1']) {
      const t = ts.get(name)!;
      expect(t.shape).toEqual([24, 8]);
      expect(t.data.length).toBe(24 * 8);
      expect(Array.from(t.data.subarray(21 * 8)).every((v) => v === 0)).toBe(true);
    }
    expect(Array.from(ts.get('embedding@-1')!.data.subarray(0, 21 * 8))).toEqual(
      Array.from(tensors['backbone.embeddings.weight'].data),
    );

    const tooMany = modelDir(hfConfig(DIMS), tinyTensors(DIMS, { embRows: 25 }));
    const err = catchError(() => collect(tooMany, loadConfig(tooMany)));
    expect(err.code).toBe('E_SHAPE');
    expect(err.message).toMatch(
      /'backbone\.embeddings\.weight' expected \[24, 8\], found \[25, 8\] \(more rows than the config's vocab_size 24\)/,
    );
  });

  it('projection biases and no conv bias', () => {
    const dm = { ...DIMS, projBias: true, convBias: false };
    const dir = modelDir(hfConfig(dm), tinyTensors(dm));
    const names = collect(dir, loadConfig(dir))
      .filter((t) => t.layer === 0)
      .map((t) => t.name);
    expect(names).toEqual([
      'norm',
      'in_proj',
      'in_proj_bias',
      'conv_w',
      'x_proj',
      'dt_proj_w',
      'dt_proj_b',
      'A_log',
      'D',
      'out_proj',
      'out_proj_bias',
    ]);
  });

  it('a NaN / Inf value names the tensor and index; nonFinite: allow loads it', () => {
    const tensors = tinyTensors(DIMS);
    tensors['backbone.layers.1.mixer.A_log'].data[4 * 3 + 2] = NaN;
    const dir = modelDir(hfConfig(DIMS), tensors);
    const config = loadConfig(dir);
    const err = catchError(() => collect(dir, config));
    expect(err.code).toBe('E_WEIGHTS');
    expect(err.message).toMatch(
      /tensor 'backbone\.layers\.1\.mixer\.A_log' has a non-finite value NaN at flat index 14 \(index \[3, 2\]\)/,
    );
    const ts = byKey(collect(dir, config, { nonFinite: 'allow' }));
    expect(Number.isNaN(ts.get('A_log@1')!.data[14])).toBe(true);

    const inf = tinyTensors(DIMS);
    inf['backbone.norm_f.weight'].data[7] = -Infinity;
    const dir2 = modelDir(hfConfig(DIMS), inf);
    expect(() => collect(dir2, loadConfig(dir2))).toThrow(
      /'backbone\.norm_f\.weight' has a non-finite value -Infinity at flat index 7/,
    );
  });

  it('a config inconsistent with the shapes names tensor, expected and found', () => {
    const dir = modelDir(hfConfig({ ...DIMS, n: 8 }), tinyTensors(DIMS));
    const err = catchError(() => collect(dir, loadConfig(dir)));
    expect(err.code).toBe('E_SHAPE');
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/'backbone\.layers\.0\.mixer\.x_proj\.weight' expected \[18, 16\], found \[10, 16\]/);
    expect(err.message).toMatch(/'backbone\.layers\.1\.mixer\.A_log' expected \[16, 8\], found \[16, 4\]/);
  });

  it('missing and unexpected tensors are listed (e.g. wrong layer count)', () => {
    const tensors = tinyTensors({ ...DIMS, layers: 3 });
    const dir = modelDir(hfConfig(DIMS), tensors);
    const err = catchError(() => collect(dir, loadConfig(dir)));
    expect(err.code).toBe('E_WEIGHTS');
    expect(err.message).toMatch(/unexpected tensor\(s\) 'backbone\.layers\.2\.mixer\.A_log'/);

    const t2 = tinyTensors(DIMS);
    delete t2['backbone.layers.1.mixer.D'];
    delete t2['backbone.norm_f.weight'];
    const dir2 = modelDir(hfConfig(DIMS), t2);
    expect(() => collect(dir2, loadConfig(dir2))).toThrow(
      /missing tensor\(s\) 'backbone\.layers\.1\.mixer\.D', 'backbone\.norm_f\.weight'/,
    );
  });

  it('fails before yielding anything, and closes files when abandoned', () => {
    const t2 = tinyTensors(DIMS);
    delete t2['backbone.norm_f.weight'];
    const dir = modelDir(hfConfig(DIMS), t2);
    const it = loadWeights(dir, loadConfig(dir), tensorTable(loadConfig(dir)));
    expect(() => it.next()).toThrow(/missing/); // the first next() already fails: nothing was yielded

    const good = modelDir(hfConfig(DIMS), tinyTensors(DIMS));
    const close = jest.spyOn(fsModule, 'closeSync');
    try {
      const gen = loadWeights(good, loadConfig(good), tensorTable(loadConfig(good)));
      expect(gen.next().value).toMatchObject({ name: 'embedding' });
      expect(close).not.toHaveBeenCalled();
      gen.return(undefined);
      expect(close).toHaveBeenCalledTimes(1);
    } finally {
      close.mockRestore();
    }
  });

  it('accepts an open checkpoint and leaves it open', () => {
    const dir = modelDir(hfConfig(DIMS), tinyTensors(DIMS));
    const ck = openCheckpoint(dir);
    try {
      expect([...loadWeights(ck, loadConfig(dir), tensorTable(loadConfig(dir)))]).toHaveLength(22);
      expect(ck.readTensorF32('backbone.norm_f.weight').length).toBe(8);
      expect(
        planWeights(ck, parseConfig(hfConfig(DIMS), 'x'), tensorTable(parseConfig(hfConfig(DIMS), 'x'))).entries,
      ).toHaveLength(22);
    } finally {
      ck.close();
    }
  });

  it('rejects unusable dtypes and both embedding names', () => {
    const dir = modelDir(hfConfig(DIMS), tinyTensors(DIMS));
    const ck = openCheckpoint(dir);
    const fake = {
      ...ck,
      dir,
      files: ck.files,
      metadata: {},
      names: () => ck.names(),
      has: (n: string) => ck.has(n),
      readTensorF32: (n: string) => ck.readTensorF32(n),
      readTensorBytes: (n: string) => ck.readTensorBytes(n),
      close: () => ck.close(),
      info: (n: string) => (n === 'backbone.layers.0.mixer.D' ? { ...ck.info(n), dtype: 'I32' } : ck.info(n)),
    };
    try {
      expect(() => planWeights(fake, loadConfig(dir), tensorTable(loadConfig(dir)))).toThrow(
        /'backbone\.layers\.0\.mixer\.D' has dtype I32/,
      );
    } finally {
      ck.close();
    }
    const both = tinyTensors(DIMS);
    both['backbone.embedding.weight'] = both['backbone.embeddings.weight'];
    const dir2 = modelDir(hfConfig(DIMS), both);
    expect(() => collect(dir2, loadConfig(dir2))).toThrow(
      /both 'backbone\.embeddings\.weight' and 'backbone\.embedding\.weight'/,
    );
  });
});
