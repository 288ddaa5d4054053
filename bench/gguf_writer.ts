/**
 * A small GGUF (v3, little-endian) writer for the tests and bench/gguf_rss.ts: metadata values typed from
 * their JavaScript values (string, boolean, bigint = u64, integer = u32, other number = f32, arrays
 * of those; `{ type, value }` forces a type), tensors given as raw bytes of any GGML type id.
 * Nothing is checked: tests use it to write lying headers too.
 */
import { GGUF_TENSOR_TYPES, type GgufTensorType } from '../lib/checkpoint/gguf';
import { f32ToF16Bits } from '../lib/checkpoint/safetensors';

// GGUF value types
export const GT = {
  U8: 0,
  I8: 1,
  U16: 2,
  I16: 3,
  U32: 4,
  I32: 5,
  F32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  U64: 10,
  I64: 11,
  F64: 12,
};

export type GgufWriteValue = string | boolean | number | bigint | GgufWriteValue[] | { type: number; value: GgufWriteValue };

export interface GgufWriteTensor {
  name: string;
  /** ggml's ne (innermost first). */
  dims: number[];
  /** A type name or a raw GGML type id. */
  type: GgufTensorType | number;
  data: Uint8Array;
}

class Bytes {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function typeOf(v: GgufWriteValue): number {
  if (typeof v === 'object' && !Array.isArray(v)) return v.type;
  if (typeof v === 'string') return GT.STRING;
  if (typeof v === 'boolean') return GT.BOOL;
  if (typeof v === 'bigint') return GT.U64;
  if (Array.isArray(v)) return GT.ARRAY;
  return Number.isInteger(v) && v >= 0 ? GT.U32 : Number.isInteger(v) ? GT.I32 : GT.F32;
}

function writeValue(out: Bytes, type: number, v: GgufWriteValue): void {
  if (typeof v === 'object' && !Array.isArray(v)) return writeValue(out, v.type, v.value);
  const b = Buffer.alloc(8);
  switch (type) {
    case GT.STRING:
      return out.str(v as string);
    case GT.BOOL:
    case GT.U8:
      return out.push(Buffer.from([Number(v) & 0xff]));
    case GT.I32:
      b.writeInt32LE(Number(v));
      return out.push(b.subarray(0, 4));
    case GT.U32:
      return out.u32(Number(v));
    case GT.F32:
      b.writeFloatLE(Number(v));
      return out.push(b.subarray(0, 4));
    case GT.U64:
      return out.u64(BigInt(v as number | bigint));
    case GT.ARRAY: {
      const arr = v as GgufWriteValue[];
      const et = arr.length > 0 ? typeOf(arr[0]) : GT.U32;
      const elem = et === GT.U32 && arr.some((x) => typeof x === 'number' && !Number.isInteger(x)) ? GT.F32 : et;
      out.u32(elem);
      out.u64(arr.length);
      for (const x of arr) writeValue(out, elem, x);
      return;
    }
    default:
      throw new Error(`gguf_writer: cannot write value type ${type}`);
  }
}

export interface GgufWriteOptions {
  alignment?: number;
  /** Write general.alignment even when it is the default 32. */
  writeAlignment?: boolean;
}

/** A tensor's place in the file to write: its info, without the bytes. */
export interface GgufTensorSlot {
  name: string;
  dims: number[];
  type: GgufTensorType | number;
  byteLength: number;
}

/**
 * The header of a GGUF file (metadata in the given order, the tensor infos, padding to the
 * alignment) and where each tensor's bytes go, relative to the data section that follows it.
 */
export function ggufHeader(
  metadata: Record<string, GgufWriteValue>,
  tensors: GgufTensorSlot[],
  opts: GgufWriteOptions = {},
): { header: Buffer; offsets: number[]; dataBytes: number } {
  const align = opts.alignment ?? 32;
  const meta = { ...metadata };
  if (opts.writeAlignment || align !== 32) meta['general.alignment'] = align;
  const h = new Bytes();
  h.push(Buffer.from('GGUF', 'latin1'));
  h.u32(3);
  h.u64(tensors.length);
  h.u64(Object.keys(meta).length);
  for (const [k, v] of Object.entries(meta)) {
    h.str(k);
    const t = typeOf(v);
    h.u32(t);
    writeValue(h, t, v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    offset += Math.ceil(t.byteLength / align) * align;
  }
  tensors.forEach((t, i) => {
    h.str(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(typeof t.type === 'number' ? t.type : GGUF_TENSOR_TYPES[t.type].id);
    h.u64(offsets[i]);
  });
  const head = h.concat();
  const header = Buffer.alloc(Math.ceil(head.length / align) * align);
  head.copy(header, 0);
  return { header, offsets, dataBytes: offset };
}

/** The bytes of a GGUF file: metadata in the given order, then the tensors, each aligned. */
export function encodeGguf(
  metadata: Record<string, GgufWriteValue>,
  tensors: GgufWriteTensor[],
  opts: GgufWriteOptions = {},
): Buffer {
  const { header, offsets, dataBytes } = ggufHeader(
    metadata,
    tensors.map((t) => ({ ...t, byteLength: t.data.length })),
    opts,
  );
  const out = Buffer.alloc(header.length + dataBytes);
  header.copy(out, 0);
  tensors.forEach((t, i) => out.set(t.data, header.length + offsets[i]));
  return out;
}

/** f32 values as F32 tensor bytes. */
export function f32Bytes(v: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(v).buffer);
}

/** f32 values as F16 tensor bytes (round to nearest even). */
export function f16Bytes(v: ArrayLike<number>): Uint8Array {
  const u = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) u[i] = f32ToF16Bits(v[i]);
  return new Uint8Array(u.buffer);
}
