/**
 * What every checkpoint format shares once its header is read: TensorInfo records (dtype, shape,
 * where the bytes lie in which file), the TensorSource interface the loader reads through, and
 * TensorFileReader, which reads a tensor's bytes in place with positioned reads and converts
 * F32 / F16 / BF16 to f32. safetensors.ts and torch_bin.ts each parse their own header into it.
 *
 * @example
 *   const r = new TensorFileReader(file, fd, tensors, fail);  // tensors: Map<string, TensorInfo>
 *   r.readTensorF32('backbone.norm_f.weight');
 */
import * as fs from 'fs';
import * as os from 'os';
import type { TensorDType } from '../types';

/** The dtypes readTensorF32 converts. */
export const READABLE_DTYPES: readonly TensorDType[] = ['F32', 'F16', 'BF16'];

export interface TensorInfo {
  name: string;
  /** A safetensors dtype name (torch storages are mapped onto them); only F32/F16/BF16 can be read as f32. */
  dtype: string;
  shape: number[];
  /** Number of elements (product of shape). */
  numel: number;
  /** [begin, end) relative to the data section (safetensors) or the storage (torch), as the file states it. */
  dataOffsets: [number, number];
  /** Absolute byte offset of the tensor in its file. */
  byteOffset: number;
  byteLength: number;
  /** The file holding the tensor. */
  file: string;
}

/** Something tensors can be read from: one file or a whole (sharded) checkpoint. */
export interface TensorSource {
  /** Tensor names, sorted. */
  names(): string[];
  has(name: string): boolean;
  /** Header info of a tensor; throws the format's error naming it when absent. */
  info(name: string): TensorInfo;
  /** The tensor's values converted to f32 (F32 / F16 / BF16). Reads only that tensor's bytes. */
  readTensorF32(name: string): Float32Array;
  /** The tensor's raw little-endian bytes. */
  readTensorBytes(name: string): Buffer;
  /** Close all file descriptors. Idempotent. */
  close(): void;
}

/** Throws the format's error (E_SAFETENSORS, E_WEIGHTS) for `file`. */
export type FormatError = (file: string, msg: string) => never;

const LITTLE_ENDIAN = os.endianness() === 'LE';

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

let f16Table: Float32Array | null = null;

/** f32 value of every f16 bit pattern (built on first use, 256 KiB). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero / subnormal: mant * 2^-24 (exact in f32)
      table[h] = (sign ? -1 : 1) * mant * 5.960464477539063e-8;
    } else if (exp === 0x1f) {
      bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      bits[h] = (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** f16 bit pattern -> number. */
export function f16BitsToF32(h: number): number {
  return halfTable()[h & 0xffff];
}

/** bf16 bit pattern -> number. */
export function bf16BitsToF32(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0];
}

/** Convert raw little-endian bytes of a readable dtype to f32. */
function decodeToF32(bytes: Uint8Array, dtype: TensorDType, numel: number): Float32Array {
  const out = new Float32Array(numel);
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) {
      new Uint8Array(out.buffer).set(bytes.subarray(0, numel * 4));
    } else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < numel; i++) out[i] = dv.getFloat32(i * 4, true);
    }
    return out;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F16') {
    const table = halfTable();
    for (let i = 0; i < numel; i++) out[i] = table[dv.getUint16(i * 2, true)];
    return out;
  }
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < numel; i++) outBits[i] = dv.getUint16(i * 2, true) << 16;
  return out;
}

/** Fills `target` from `position` of the open file; a short file is `fail`'s error naming `what`. */
export function readFully(fd: number, target: Uint8Array, position: number, file: string, what: string, fail: FormatError): void {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < target.length) {
    const want = Math.min(CHUNK, target.length - done);
    const n = fs.readSync(fd, target, done, want, position + done);
    if (n <= 0)
      fail(file, `unexpected end of file while reading ${what} (${done} of ${target.length} bytes at offset ${position})`);
    done += n;
  }
}

/**
 * The tensors of one open file, read in place: names, info, bytes and f32 values. Shared by the
 * safetensors and torch.save readers; `fail` throws that format's error.
 */
export class TensorFileReader implements TensorSource {
  private fd: number | null;

  constructor(
    readonly path: string,
    fd: number,
    readonly tensors: Map<string, TensorInfo>,
    private readonly fail: FormatError,
  ) {
    this.fd = fd;
  }

  names(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) this.fail(this.path, `no tensor named '${name}'`);
    return t;
  }

  /** The open descriptor (throws once closed). */
  private open(name: string): number {
    if (this.fd === null) this.fail(this.path, `file is closed (reading tensor '${name}')`);
    return this.fd;
  }

  readTensorBytes(name: string): Buffer {
    const t = this.info(name);
    const buf = Buffer.alloc(t.byteLength);
    readFully(this.open(name), buf, t.byteOffset, this.path, `tensor '${name}'`, this.fail);
    return buf;
  }

  readTensorF32(name: string): Float32Array {
    const t = this.info(name);
    if (!(READABLE_DTYPES as readonly string[]).includes(t.dtype)) {
      this.fail(this.path, `tensor '${name}' has dtype ${t.dtype}; only ${READABLE_DTYPES.join(', ')} can be read as float32`);
    }
    if (t.dtype === 'F32' && LITTLE_ENDIAN) {
      const out = new Float32Array(t.numel);
      readFully(this.open(name), new Uint8Array(out.buffer), t.byteOffset, this.path, `tensor '${name}'`, this.fail);
      return out;
    }
    return decodeToF32(this.readTensorBytes(name), t.dtype as TensorDType, t.numel);
  }

  close(): void {
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      fs.closeSync(fd);
    }
  }
}
