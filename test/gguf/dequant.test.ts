/**
 * GGUF's block types: hand-made blocks of Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K dequantize natively
 * (native/cpu/gguf_dequant.cc) exactly as llama.cpp's reference formulas say (test/reference/gguf_quants.ts,
 * float64, rounded once to float32: every product in those formulas is exact in float32); and a model
 * whose matrices are stored in each type loads with the same logits as the same model written with
 * the dequantized values as F32, and picks its default storage from the type.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadAddon } from '../../bindings';
import { GGUF_TENSOR_TYPES } from '../../lib/checkpoint/gguf';
import { loadModel } from '../../lib/engine/load';
import type { WeightFormat } from '../../lib/types';
import { QUANT_TYPES, randomBlocks, refDequantize, type QuantType } from '../reference/gguf_quants';
import { encodeGguf, f32Bytes, type GgufWriteTensor } from '../../bench/gguf_writer';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../lib/checkpoint/safetensors';
import { maxRowErr, randArray, randTokens, rejection, tmpDir } from '../helpers/util';

const addon = loadAddon();
const work = tmpDir('simba-gguf-q-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe.each(QUANT_TYPES)('%s blocks', (type) => {
  test("dequantize exactly as llama.cpp's formulas", () => {
    // enough blocks that the native side splits them over the thread pool (65536 elements a task)
    const bytes = randomBlocks(type, (2 * 65536) / GGUF_TENSOR_TYPES[type].blockElems + 7, 11, 0.05);
    const want = refDequantize(type, bytes);
    const got = addon.kernels.dequantize({ type, bytes });
    expect(got.length).toBe(want.length);
    let mismatches = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== Math.fround(want[i])) mismatches++;
    expect(mismatches).toBe(0);
    // the random bits reach every quant level: not a constant output
    expect(new Set(got.subarray(0, 256)).size).toBeGreaterThan(8);
  });

  test('a partial block is refused', () => {
    const { blockBytes } = GGUF_TENSOR_TYPES[type];
    expect(() => addon.kernels.dequantize({ type, bytes: new Uint8Array(blockBytes + 1) })).toThrow(/not whole/);
  });
});

// A Mamba-1 model whose rows are whole K-quant super-blocks (d = 256, E = 512): 1 layer, no tokenizer.
const d = 256,
  E = 512,
  N = 16,
  R = 16,
  K = 4,
  V = 64;
const META = {
  'general.architecture': 'mamba',
  'mamba.embedding_length': d,
  'mamba.block_count': 1,
  'mamba.ssm.inner_size': E,
  'mamba.ssm.state_size': N,
  'mamba.ssm.time_step_rank': R,
  'mamba.ssm.conv_kernel': K,
  'mamba.attention.layer_norm_rms_epsilon': 1e-5,
};

type MatrixType = QuantType | 'F16' | 'BF16';

/** n random values stored as `type`: the bytes, and the values they hold. */
function matrixData(type: MatrixType, n: number, seed: number, scale: number): { bytes: Uint8Array; values: ArrayLike<number> } {
  if (type === 'F16' || type === 'BF16') {
    const bits = Array.from(randArray(n, seed, scale), type === 'F16' ? f32ToF16Bits : f32ToBf16Bits);
    const u16 = Uint16Array.from(bits);
    return { bytes: new Uint8Array(u16.buffer), values: bits.map(type === 'F16' ? f16BitsToF32 : bf16BitsToF32) };
  }
  const bytes = randomBlocks(type, n / GGUF_TENSOR_TYPES[type].blockElems, seed, scale / 8);
  return { bytes, values: refDequantize(type, bytes) };
}

/** The model's tensors: its four matrices stored as `type` (or, asF32, as F32 of the values they hold), the rest F32. */
function quantModelTensors(type: MatrixType, asF32: boolean, seed: number): GgufWriteTensor[] {
  const f32 = (name: string, dims: number[], v: ArrayLike<number>): GgufWriteTensor => ({
    name,
    dims,
    type: 'F32',
    data: f32Bytes(v),
  });
  const mats: [string, number, number, number][] = [
    ['token_embd.weight', V, d, 0.3],
    ['blk.0.ssm_in.weight', 2 * E, d, 1 / Math.sqrt(d)],
    ['blk.0.ssm_x.weight', R + 2 * N, E, 1 / Math.sqrt(E)],
    ['blk.0.ssm_out.weight', d, E, 1 / Math.sqrt(E)],
  ];
  const out: GgufWriteTensor[] = mats.map(([name, rows, cols, scale], i) => {
    const { bytes, values } = matrixData(type, rows * cols, seed + i, scale);
    return asF32 ? f32(name, [cols, rows], values) : { name, dims: [cols, rows], type, data: bytes };
  });
  const ones = (n: number, s: number) => Array.from(randArray(n, s, 0.05), (x) => 1 + x);
  out.push(
    f32('output_norm.weight', [d], ones(d, seed + 10)),
    f32('blk.0.attn_norm.weight', [d], ones(d, seed + 11)),
    f32('blk.0.ssm_conv1d.weight', [K, E], randArray(E * K, seed + 12, 0.5)),
    f32('blk.0.ssm_conv1d.bias', [E], randArray(E, seed + 13, 0.1)),
    f32('blk.0.ssm_dt.weight', [R, E], randArray(E * R, seed + 14, 0.25)),
    f32(
      'blk.0.ssm_dt.bias',
      [E],
      Array.from({ length: E }, (_, i) => Math.log(Math.expm1(0.001 + (0.099 * i) / E))),
    ),
    f32(
      'blk.0.ssm_a',
      [N, E],
      Array.from({ length: E * N }, (_, i) => -(1 + (i % N))),
    ),
    f32('blk.0.ssm_d', [E], ones(E, seed + 15)),
  );
  return out;
}

function writeModel(name: string, tensors: GgufWriteTensor[]): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, encodeGguf(META, tensors));
  return file;
}

/** Logits of every position, and the storage the model chose. */
async function run(file: string, ids: number[], weights?: WeightFormat) {
  const m = await loadModel(file, weights && { weights });
  try {
    return { logits: (await m.logits(ids, 'all')).logits, weights: m.info().weights };
  } finally {
    m.dispose();
  }
}

const DEFAULT_STORAGE: Record<MatrixType, WeightFormat> = {
  F16: 'bf16',
  BF16: 'bf16',
  Q8_0: 'int8',
  Q4_0: 'int4',
  Q4_1: 'int4',
  Q4_K: 'int4',
  Q5_K: 'int8',
  Q6_K: 'int8',
};

describe.each([...QUANT_TYPES, 'F16', 'BF16'] as const)('a model with %s matrices', (type) => {
  test('loads with the logits of its dequantized values; its default storage follows the type', async () => {
    const q = writeModel(`m-${type}.gguf`, quantModelTensors(type, false, 100));
    const ref = writeModel(`m-${type}-f32.gguf`, quantModelTensors(type, true, 100));
    const ids = randTokens(9, V, 3);
    const want = await run(ref, ids);
    expect(want.weights).toBe('f32');
    const got = await run(q, ids, 'f32');
    expect(got.logits.every((row) => row.every(Number.isFinite))).toBe(true);
    expect(maxRowErr(got.logits, want.logits)).toBe(0); // the same f32 weights
    // by default stored as the engine's format for the type: the F32 twin loaded in that format
    const dflt = await run(q, ids);
    expect(dflt.weights).toBe(DEFAULT_STORAGE[type]);
    const twin = await run(ref, ids, DEFAULT_STORAGE[type]);
    expect(maxRowErr(dflt.logits, twin.logits)).toBe(0);
    const err = maxRowErr(dflt.logits, want.logits);
    // a BF16 file's values are exactly bf16 storage's; every other type is really re-quantized
    if (type === 'BF16') expect(err).toBeLessThan(1e-5);
    else expect(err).toBeGreaterThan(1e-6);
  });
});

test('refused: a tensor type we do not read, named with the tensor', async () => {
  const t = quantModelTensors('Q8_0', false, 1);
  t[1] = { ...t[1], type: 6 }; // Q5_0
  const e = await rejection(loadModel(writeModel('q5_0.gguf', t)));
  expect(e.code).toBe('E_WEIGHTS');
  expect(e.message).toMatch(/'blk\.0\.ssm_in\.weight' has tensor type Q5_0, which is not supported/);
});
