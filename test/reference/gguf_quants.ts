/**
 * llama.cpp's block formats in plain TypeScript, float64, written from ggml-quants.c's
 * dequantize_row_q8_0 / q4_0 / q4_1 / q4_K / q5_K / q6_K (and get_scale_min_k4), for the tests that
 * check the native dequantization; and random blocks with sane scales to feed them.
 */
import { f16BitsToF32, f32ToF16Bits } from '../../lib/checkpoint/safetensors';
import { GGUF_TENSOR_TYPES, type GgufTensorType } from '../../lib/checkpoint/gguf';
import { makeRng } from './random_model';

export type QuantType = Exclude<GgufTensorType, 'F32' | 'F16' | 'BF16'>;
export const QUANT_TYPES: readonly QuantType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_K', 'Q6_K'];

const f16 = (b: Uint8Array, o: number): number => f16BitsToF32(b[o] | (b[o + 1] << 8));
const i8 = (x: number): number => (x << 24) >> 24;

function getScaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

/** One block at b[o..] into y[at..]. */
const BLOCK: Record<QuantType, (b: Uint8Array, o: number, y: Float64Array, at: number) => void> = {
  Q8_0(b, o, y, at) {
    const d = f16(b, o);
    for (let j = 0; j < 32; j++) y[at + j] = i8(b[o + 2 + j]) * d;
  },
  Q4_0(b, o, y, at) {
    const d = f16(b, o);
    for (let j = 0; j < 16; j++) {
      const x0 = (b[o + 2 + j] & 0x0f) - 8;
      const x1 = (b[o + 2 + j] >> 4) - 8;
      y[at + j] = x0 * d;
      y[at + j + 16] = x1 * d;
    }
  },
  Q4_1(b, o, y, at) {
    const d = f16(b, o),
      m = f16(b, o + 2);
    for (let j = 0; j < 16; j++) {
      y[at + j] = (b[o + 4 + j] & 0x0f) * d + m;
      y[at + j + 16] = (b[o + 4 + j] >> 4) * d + m;
    }
  },
  Q4_K(b, o, y, at) {
    const d = f16(b, o),
      min = f16(b, o + 2);
    let q = o + 16,
      is = 0;
    for (let j = 0; j < 256; j += 64) {
      const [sc1, m1] = getScaleMinK4(is, b, o + 4);
      const [sc2, m2] = getScaleMinK4(is + 1, b, o + 4);
      for (let l = 0; l < 32; l++) y[at + j + l] = d * sc1 * (b[q + l] & 0xf) - min * m1;
      for (let l = 0; l < 32; l++) y[at + j + 32 + l] = d * sc2 * (b[q + l] >> 4) - min * m2;
      q += 32;
      is += 2;
    }
  },
  Q5_K(b, o, y, at) {
    const d = f16(b, o),
      min = f16(b, o + 2);
    const qh = o + 16;
    let ql = o + 48,
      is = 0,
      u1 = 1,
      u2 = 2;
    for (let j = 0; j < 256; j += 64) {
      const [sc1, m1] = getScaleMinK4(is, b, o + 4);
      const [sc2, m2] = getScaleMinK4(is + 1, b, o + 4);
      for (let l = 0; l < 32; l++) y[at + j + l] = d * sc1 * ((b[ql + l] & 0xf) + (b[qh + l] & u1 ? 16 : 0)) - min * m1;
      for (let l = 0; l < 32; l++) y[at + j + 32 + l] = d * sc2 * ((b[ql + l] >> 4) + (b[qh + l] & u2 ? 16 : 0)) - min * m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  },
  Q6_K(b, o, y, at) {
    const d = f16(b, o + 208);
    let ql = o,
      qh = o + 128,
      sc = o + 192,
      yy = at;
    for (let n = 0; n < 256; n += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const q1 = ((b[ql + l] & 0xf) | (((b[qh + l] >> 0) & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32] & 0xf) | (((b[qh + l] >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l] >> 4) | (((b[qh + l] >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32] >> 4) | (((b[qh + l] >> 6) & 3) << 4)) - 32;
        y[yy + l] = d * i8(b[sc + is]) * q1;
        y[yy + l + 32] = d * i8(b[sc + is + 2]) * q2;
        y[yy + l + 64] = d * i8(b[sc + is + 4]) * q3;
        y[yy + l + 96] = d * i8(b[sc + is + 6]) * q4;
      }
      yy += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  },
};

/** Every block of `bytes` (whole blocks of `type`) in float64. */
export function refDequantize(type: QuantType, bytes: Uint8Array): Float64Array {
  const { blockElems, blockBytes } = GGUF_TENSOR_TYPES[type];
  const n = bytes.length / blockBytes;
  const y = new Float64Array(n * blockElems);
  for (let i = 0; i < n; i++) BLOCK[type](bytes, i * blockBytes, y, i * blockElems);
  return y;
}

/** Where each type keeps its f16 scales (byte offsets in a block). */
const F16_FIELDS: Record<QuantType, number[]> = {
  Q8_0: [0],
  Q4_0: [0],
  Q4_1: [0, 2],
  Q4_K: [0, 2],
  Q5_K: [0, 2],
  Q6_K: [208],
};

/**
 * `nblocks` random blocks: random quant bits and sub-block scales, and f16 scales of about `scale`
 * (Q4_1's min about -8 scale, the K-quants' mins near scale / 8 times their 6-bit multipliers), so
 * that the values have a magnitude of about `scale` times a few.
 */
export function randomBlocks(type: QuantType, nblocks: number, seed: number, scale: number): Uint8Array {
  const rng = makeRng(seed);
  const { blockBytes } = GGUF_TENSOR_TYPES[type];
  const out = new Uint8Array(nblocks * blockBytes);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(rng.uniform() * 256);
  const k = type.endsWith('_K');
  for (let b = 0; b < nblocks; b++) {
    F16_FIELDS[type].forEach((off, f) => {
      let v = scale * (0.5 + rng.uniform());
      if (type === 'Q4_1' && f === 1) v = -8 * scale * (0.5 + rng.uniform()); // the min
      if (k && type !== 'Q6_K') v /= 32; // d and dmin multiply 6-bit scales and mins
      if (type === 'Q6_K') v /= 64; // d multiplies int8 scales
      const h = f32ToF16Bits(v);
      out[b * blockBytes + off] = h & 0xff;
      out[b * blockBytes + off + 1] = h >> 8;
    });
  }
  return out;
}
