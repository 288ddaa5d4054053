/**
 * bench/random_mamba2_folder.ts, the random Mamba2ForCausalLM folder the llama.cpp comparison runs on:
 * its config.json is what the package's reader (and transformers) takes, its safetensors header lists
 * exactly transformers' tensors with their shapes, the values have the scales it promises, and the
 * seed decides the bytes.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { mamba2Dims, MAMBA2_130M, MAMBA2_TINY, writeRandomMamba2Folder } from '../../bench/random_mamba2_folder';
import { parseMamba2Config, parsePythonJson } from '../../lib/checkpoint/config';
import { openSafetensors } from '../../lib/checkpoint/safetensors';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-randm2-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** name -> shape of every tensor transformers' Mamba2ForCausalLM has for this shape. */
function expectedTensors(s: typeof MAMBA2_TINY): Map<string, number[]> {
  const { E, H, CH, inProjRows } = mamba2Dims(s);
  const d = s.hiddenSize;
  const m = new Map<string, number[]>([
    ['backbone.embeddings.weight', [s.vocabSize, d]],
    ['backbone.norm_f.weight', [d]],
  ]);
  if (!s.tieWordEmbeddings) m.set('lm_head.weight', [s.vocabSize, d]);
  for (let i = 0; i < s.numHiddenLayers; i++) {
    const p = `backbone.layers.${i}`;
    m.set(`${p}.norm.weight`, [d]);
    m.set(`${p}.mixer.in_proj.weight`, [inProjRows, d]);
    m.set(`${p}.mixer.conv1d.weight`, [CH, 1, s.convKernel]);
    m.set(`${p}.mixer.conv1d.bias`, [CH]);
    m.set(`${p}.mixer.dt_bias`, [H]);
    m.set(`${p}.mixer.A_log`, [H]);
    m.set(`${p}.mixer.D`, [H]);
    m.set(`${p}.mixer.norm.weight`, [E]);
    m.set(`${p}.mixer.out_proj.weight`, [d, E]);
  }
  return m;
}

const stats = (v: Float32Array) => {
  let s = 0;
  let s2 = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
  }
  const mean = s / v.length;
  return { mean, sd: Math.sqrt(s2 / v.length - mean * mean), min: Math.min(...v), max: Math.max(...v) };
};

test('the 130m shape is state-spaces/mamba2-130m: 24 heads of 64, one group, in_proj 3352 rows, vocab 50288', () => {
  expect(mamba2Dims(MAMBA2_130M)).toEqual({ E: 1536, H: 24, CH: 1536 + 2 * 128, inProjRows: 2 * 1536 + 2 * 128 + 24 });
  expect(MAMBA2_130M).toMatchObject({
    hiddenSize: 768,
    numHiddenLayers: 24,
    stateSize: 128,
    convKernel: 4,
    vocabSize: 50288,
    tieWordEmbeddings: true,
  });
});

test('the tiny folder: config parses as the shape, the header lists every tensor with its shape, scales as promised', () => {
  const out = path.join(dir, 'tiny');
  const s = writeRandomMamba2Folder(out, { shape: MAMBA2_TINY, seed: 3 });
  const file = path.join(out, 'config.json');
  const text = fs.readFileSync(file, 'utf8');
  // Python's spelling, which strict JSON rejects
  expect(text).toMatch(/"time_step_limit": \[\s*0\.0,\s*Infinity\s*\]/);
  expect(() => JSON.parse(text)).toThrow();
  const c = parseMamba2Config(parsePythonJson(text, file), file);
  expect(c).toMatchObject({
    layout: 'hf',
    vocabSize: 50288,
    dModel: 64,
    nLayer: 2,
    dInner: 128,
    nHeads: 8,
    headDim: 16,
    nGroups: 2,
    dState: 32,
    dConv: 4,
    chunkSize: 256,
    dtLimit: [0, Infinity],
    convBias: true,
    projBias: false,
    eps: 1e-5,
    tieEmbeddings: true,
  });

  const st = openSafetensors(path.join(out, 'model.safetensors'));
  try {
    const want = expectedTensors(s);
    expect(st.names().sort()).toEqual([...want.keys()].sort());
    for (const [name, shape] of want) {
      expect({ name, shape: st.info(name).shape, dtype: st.info(name).dtype }).toEqual({ name, shape, dtype: 'F32' });
    }
    const inProj = stats(st.readTensorF32('backbone.layers.1.mixer.in_proj.weight'));
    expect(Math.abs(inProj.mean)).toBeLessThan(0.01 / Math.sqrt(64));
    expect(inProj.sd).toBeCloseTo(1 / Math.sqrt(64), 2);
    const outProj = stats(st.readTensorF32('backbone.layers.0.mixer.out_proj.weight'));
    expect(outProj.sd / (1 / Math.sqrt(128) / Math.sqrt(4))).toBeGreaterThan(0.95);
    expect(outProj.sd / (1 / Math.sqrt(128) / Math.sqrt(4))).toBeLessThan(1.05);
    const norm = stats(st.readTensorF32('backbone.layers.0.mixer.norm.weight'));
    expect(norm.min).toBeGreaterThan(1 - 0.05 * Math.sqrt(3) - 1e-6);
    expect(norm.max).toBeLessThan(1 + 0.05 * Math.sqrt(3) + 1e-6);
    expect(norm.sd).toBeGreaterThan(0.02); // not all 1: a skipped norm weight would show
    for (let l = 0; l < 2; l++) {
      const A = st.readTensorF32(`backbone.layers.${l}.mixer.A_log`);
      for (const a of A) {
        expect(Math.exp(a)).toBeGreaterThanOrEqual(1);
        expect(Math.exp(a)).toBeLessThanOrEqual(16 * (1 + 1e-6));
      }
      expect(new Set(A).size).toBe(8); // one per head, all different
      for (const b of st.readTensorF32(`backbone.layers.${l}.mixer.dt_bias`)) {
        const dt = Math.log1p(Math.exp(b)); // softplus
        expect(dt).toBeGreaterThanOrEqual(1e-3 * (1 - 1e-4));
        expect(dt).toBeLessThanOrEqual(1e-1 * (1 + 1e-4));
      }
      expect(Array.from(st.readTensorF32(`backbone.layers.${l}.mixer.D`))).toEqual(new Array(8).fill(1));
    }
  } finally {
    st.close();
  }
  const tok = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8'));
  expect(tok.model.type).toBe('BPE');
});

test('the seed decides the bytes; --untied adds lm_head.weight', () => {
  const small = { ...MAMBA2_TINY, numHiddenLayers: 1 };
  writeRandomMamba2Folder(path.join(dir, 'a'), { shape: small, seed: 5 });
  writeRandomMamba2Folder(path.join(dir, 'b'), { shape: small, seed: 5 });
  writeRandomMamba2Folder(path.join(dir, 'c'), { shape: { ...small, tieWordEmbeddings: false }, seed: 6 });
  const bytes = (d: string) => fs.readFileSync(path.join(dir, d, 'model.safetensors'));
  expect(bytes('a').equals(bytes('b'))).toBe(true);
  const st = openSafetensors(path.join(dir, 'c', 'model.safetensors'));
  try {
    expect(st.info('lm_head.weight').shape).toEqual([50288, 64]);
    const a = openSafetensors(path.join(dir, 'a', 'model.safetensors'));
    try {
      const x = a.readTensorF32('backbone.layers.0.mixer.in_proj.weight');
      const y = st.readTensorF32('backbone.layers.0.mixer.in_proj.weight');
      expect(x.some((v, i) => v !== y[i])).toBe(true);
    } finally {
      a.close();
    }
  } finally {
    st.close();
  }
  const cfg = parsePythonJson(fs.readFileSync(path.join(dir, 'c', 'config.json'), 'utf8'), 'config.json');
  expect((cfg as Record<string, unknown>).tie_word_embeddings).toBe(false);
});

test('a shape the converter and the reader would refuse is refused when writing', () => {
  expect(() => writeRandomMamba2Folder(path.join(dir, 'bad1'), { shape: { ...MAMBA2_TINY, headDim: 48 } })).toThrow(
    /expand \* hidden = 128 is not a multiple of head_dim 48/,
  );
  expect(() => writeRandomMamba2Folder(path.join(dir, 'bad2'), { shape: { ...MAMBA2_TINY, nGroups: 3 } })).toThrow(
    /8 heads do not split into 3 groups/,
  );
  expect(() => writeRandomMamba2Folder(path.join(dir, 'bad3'), { shape: { ...MAMBA2_TINY, vocabSize: 1000 } })).toThrow(
    /does not cover the tokenizer/,
  );
});
