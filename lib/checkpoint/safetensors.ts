/**
 * Bounds-checked safetensors reader, a small encoder, and openCheckpoint: a model folder's tensors
 * from whichever file set it holds (safetensors, preferred, or PyTorch's pytorch_model.bin, single
 * or sharded).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header (may be padded with spaces),
 * then the data section. Each header entry is {dtype, shape, data_offsets: [begin, end]} with offsets
 * relative to the data section. Every entry is validated when a file is opened; tensor data is then
 * read one tensor at a time with positioned reads on a file descriptor (never the whole file).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { TensorDType } from '../types';
import { SimbaError, describeValue } from '../errors';
import { READABLE_DTYPES, TensorFileReader, readFully, type TensorInfo, type TensorSource } from './tensor_file';
import { openTorchBin } from './torch_bin';
import { zipError } from './zip';

export { READABLE_DTYPES, bf16BitsToF32, f16BitsToF32 } from './tensor_file';
export type { TensorInfo, TensorSource } from './tensor_file';

/** Every dtype the safetensors format defines (with its element size), readable or not. */
const SAFETENSORS_DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

/** Largest header we accept (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsFile extends TensorSource {
  path: string;
  /** File size in bytes. */
  size: number;
  /** Length of the JSON header (N). The data section starts at 8 + N. */
  headerLength: number;
  /** The optional `__metadata__` map. */
  metadata: Record<string, string>;
  tensors: ReadonlyMap<string, TensorInfo>;
}

export interface Checkpoint extends TensorSource {
  dir: string;
  /** Which kind of files: safetensors, or PyTorch's torch.save (pytorch_model.bin). */
  format: 'safetensors' | 'pytorch';
  /** The files, in the order opened. */
  files: string[];
  /** `__metadata__` of a single safetensors file, or the index's `metadata` ({} for one torch.save file). */
  metadata: Record<string, unknown>;
}

function bad(file: string, msg: string): never {
  throw new SimbaError('E_SAFETENSORS', `${file}: ${msg}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// dtype encoding

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** number -> f32 -> f16 bit pattern, round to nearest even (overflow -> ±Inf, NaN stays NaN). */
export function f32ToF16Bits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to ±0
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is correct
  return sign | h;
}

/** number -> f32 -> bf16 bit pattern, round to nearest even (NaN stays a quiet NaN). */
export function f32ToBf16Bits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function parseHeaderEntry(file: string, name: string, entry: unknown, dataLength: number, dataStart: number): TensorInfo {
  const t = `tensor '${name}'`;
  if (!isObject(entry)) bad(file, `${t}: header entry must be an object, found ${describeValue(entry)}`);
  const dtype = entry['dtype'];
  if (typeof dtype !== 'string') bad(file, `${t}: 'dtype' must be a string, found ${describeValue(dtype)}`);
  const size = Object.hasOwn(SAFETENSORS_DTYPE_SIZES, dtype) ? SAFETENSORS_DTYPE_SIZES[dtype] : undefined;
  if (size === undefined) {
    bad(file, `${t}: unknown dtype '${dtype}' (known: ${Object.keys(SAFETENSORS_DTYPE_SIZES).join(', ')})`);
  }
  const shape = entry['shape'];
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    bad(file, `${t}: 'shape' must be a list of non-negative integers, found ${describeValue(shape)}`);
  }
  const offs = entry['data_offsets'];
  if (!Array.isArray(offs) || offs.length !== 2) {
    bad(file, `${t}: 'data_offsets' must be [begin, end], found ${describeValue(offs)}`);
  }
  const [begin, end] = offs as unknown[];
  if (
    typeof begin !== 'number' ||
    typeof end !== 'number' ||
    !Number.isSafeInteger(begin) ||
    !Number.isSafeInteger(end) ||
    begin < 0 ||
    end < 0
  ) {
    bad(file, `${t}: data_offsets must be non-negative integers, found ${describeValue(offs)}`);
  }
  if (end < begin) bad(file, `${t}: data_offsets end ${end} is before begin ${begin}`);
  const dims = shape as number[];
  let numel = 1;
  for (const d of dims) numel *= d;
  if (!Number.isSafeInteger(numel * size)) bad(file, `${t}: shape ${describeValue(dims)} is too large`);
  if (numel * size !== end - begin) {
    bad(
      file,
      `${t}: shape ${describeValue(dims)} x ${dtype} (${size} bytes) needs ${numel * size} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  if (end > dataLength) {
    bad(file, `${t}: data_offsets [${begin}, ${end}] lie outside the data section (${dataLength} bytes)`);
  }
  return {
    name,
    dtype,
    shape: dims.slice(),
    numel,
    dataOffsets: [begin, end],
    byteOffset: dataStart + begin,
    byteLength: end - begin,
    file,
  };
}

class SafetensorsReader extends TensorFileReader implements SafetensorsFile {
  constructor(
    path: string,
    fd: number,
    readonly size: number,
    readonly headerLength: number,
    tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {
    super(path, fd, tensors, bad);
  }
}

/** Open and validate one safetensors file. The caller must close() it. */
export function openSafetensors(file: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new SimbaError('E_IO', `${file}: cannot open safetensors file (${(e as Error).message})`, { cause: e });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile())
      throw new SimbaError(
        'E_IO',
        `${file}: ${st.isDirectory() ? 'is a directory' : 'is not a regular file'}, not a safetensors file`,
      );
    const size = st.size;
    if (size < 8) bad(file, `file too short (${size} bytes) to hold the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, file, 'the header length', bad);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(size - 8)) {
      bad(file, `header length ${n} runs past the end of the file (${size} bytes, so at most ${size - 8} header bytes)`);
    }
    const headerLength = Number(n);
    if (headerLength > MAX_HEADER_BYTES)
      bad(file, `header length ${headerLength} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    if (headerLength < 2) bad(file, `header length ${headerLength} is too small for a JSON object`);
    const headerBuf = Buffer.alloc(headerLength);
    readFully(fd, headerBuf, 8, file, 'the header', bad);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
    } catch (e) {
      bad(file, `header (${headerLength} bytes at offset 8) is not valid UTF-8 JSON: ${(e as Error).message}`);
    }
    if (!isObject(header))
      bad(file, `header must be a JSON object, found ${Array.isArray(header) ? 'an array' : describeValue(header)}`);

    const dataStart = 8 + headerLength;
    const dataLength = size - dataStart;
    let metadata: Record<string, string> = {};
    const tensors = new Map<string, TensorInfo>();
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
          bad(file, `'__metadata__' must be an object of string values, found ${describeValue(entry)}`);
        }
        metadata = { ...(entry as Record<string, string>) };
        continue;
      }
      tensors.set(name, parseHeaderEntry(file, name, entry, dataLength, dataStart));
    }
    // No two non-empty tensors may share bytes.
    const byStart = [...tensors.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
    for (let i = 1; i < byStart.length; i++) {
      const prev = byStart[i - 1];
      const cur = byStart[i];
      if (cur.dataOffsets[0] < prev.dataOffsets[1]) {
        bad(
          file,
          `tensors '${prev.name}' [${prev.dataOffsets.join(', ')}] and '${cur.name}' [${cur.dataOffsets.join(', ')}] overlap`,
        );
      }
    }
    return new SafetensorsReader(file, fd, size, headerLength, tensors, metadata);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// checkpoints: a folder's files, single or sharded, safetensors or torch.save

/** One file of a checkpoint. */
interface Shard extends TensorSource {
  path: string;
  tensors: ReadonlyMap<string, TensorInfo>;
  /** safetensors' `__metadata__` (torch.save files have none). */
  metadata?: Record<string, string>;
}

/** How a format's files open, and the error its problems are (E_SAFETENSORS, E_WEIGHTS for torch.save). */
interface Format {
  name: Checkpoint['format'];
  open(file: string): Shard;
  fail: (file: string, msg: string) => never;
}

const SAFETENSORS: Format = { name: 'safetensors', open: openSafetensors, fail: bad };
const TORCH: Format = { name: 'pytorch', open: openTorchBin, fail: zipError };

/** What a folder may hold, in order of preference: safetensors first, then torch.save. */
const FOLDER_LAYOUTS: readonly { file: string; sharded: boolean; format: Format }[] = [
  { file: 'model.safetensors.index.json', sharded: true, format: SAFETENSORS },
  { file: 'model.safetensors', sharded: false, format: SAFETENSORS },
  { file: 'consolidated.safetensors', sharded: false, format: SAFETENSORS }, // Mistral's folders
  { file: 'pytorch_model.bin.index.json', sharded: true, format: TORCH },
  { file: 'pytorch_model.bin', sharded: false, format: TORCH },
];

/** torch.save files by their usual extensions; anything else is read as safetensors. */
function formatOfFile(file: string): Format {
  return /\.(bin|pt|pth)(\.index\.json)?$/.test(file) ? TORCH : SAFETENSORS;
}

class ShardedCheckpoint implements Checkpoint {
  private readonly where = new Map<string, Shard>();

  constructor(
    readonly dir: string,
    private readonly shards: Shard[],
    readonly metadata: Record<string, unknown>,
    weightMap: Map<string, Shard> | null,
    source: string,
    private readonly fmt: Format,
  ) {
    if (weightMap) {
      for (const [name, shard] of weightMap) this.where.set(name, shard);
    }
    // Tensors in a shard but not listed in the index are still visible (as transformers sees them).
    const extra = new Map<string, Shard>();
    for (const shard of shards) {
      for (const name of shard.tensors.keys()) {
        if (this.where.has(name)) continue;
        const other = extra.get(name);
        if (other)
          fmt.fail(source, `tensor '${name}' is stored in both ${path.basename(other.path)} and ${path.basename(shard.path)}`);
        extra.set(name, shard);
      }
    }
    for (const [name, shard] of extra) this.where.set(name, shard);
  }

  get format(): Checkpoint['format'] {
    return this.fmt.name;
  }

  get files(): string[] {
    return this.shards.map((s) => s.path);
  }

  names(): string[] {
    return [...this.where.keys()].sort();
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  private shard(name: string): Shard {
    const s = this.where.get(name);
    if (!s) this.fmt.fail(this.dir, `no tensor named '${name}' in the checkpoint`);
    return s;
  }

  info(name: string): TensorInfo {
    return this.shard(name).info(name);
  }

  readTensorF32(name: string): Float32Array {
    return this.shard(name).readTensorF32(name);
  }

  readTensorBytes(name: string): Buffer {
    return this.shard(name).readTensorBytes(name);
  }

  close(): void {
    for (const s of this.shards) s.close();
  }
}

function openSingle(dir: string, file: string, fmt: Format): Checkpoint {
  const f = fmt.open(file);
  return new ShardedCheckpoint(dir, [f], { ...f.metadata }, null, file, fmt);
}

function openIndexed(dir: string, indexFile: string, fmt: Format): Checkpoint {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    fmt.fail(indexFile, `cannot read shard index: ${(e as Error).message}`);
  }
  if (!isObject(json)) fmt.fail(indexFile, `shard index must be a JSON object, found ${describeValue(json)}`);
  const wm = json['weight_map'];
  if (!isObject(wm))
    fmt.fail(indexFile, `'weight_map' must be an object of tensor name -> shard file, found ${describeValue(wm)}`);
  const meta = json['metadata'];
  const shardNames: string[] = [];
  for (const [name, f] of Object.entries(wm)) {
    if (typeof f !== 'string' || f.length === 0)
      fmt.fail(indexFile, `weight_map['${name}'] must be a file name, found ${describeValue(f)}`);
    if (path.isAbsolute(f) || f.split(/[\\/]/).includes('..')) {
      fmt.fail(indexFile, `weight_map['${name}'] = '${f}' points outside the checkpoint directory`);
    }
    if (!shardNames.includes(f)) shardNames.push(f);
  }
  if (shardNames.length === 0) fmt.fail(indexFile, `'weight_map' lists no tensors`);
  const shards = new Map<string, Shard>();
  try {
    for (const f of shardNames) {
      const p = path.join(path.dirname(indexFile), f);
      if (!fs.existsSync(p)) fmt.fail(indexFile, `shard '${f}' listed in weight_map is missing (expected at ${p})`);
      shards.set(f, fmt.open(p));
    }
    const weightMap = new Map<string, Shard>();
    for (const [name, f] of Object.entries(wm as Record<string, string>)) {
      const shard = shards.get(f)!;
      if (!shard.has(name))
        fmt.fail(indexFile, `tensor '${name}' is listed in weight_map for shard '${f}' but is absent from that shard`);
      weightMap.set(name, shard);
    }
    return new ShardedCheckpoint(dir, [...shards.values()], isObject(meta) ? meta : {}, weightMap, indexFile, fmt);
  } catch (e) {
    for (const s of shards.values()) s.close();
    throw e;
  }
}

/**
 * Open a checkpoint: a folder holding, in order of preference, `model.safetensors.index.json`
 * (+ shards), `model.safetensors`, `consolidated.safetensors` (Mistral), `pytorch_model.bin.index.json`
 * (+ shards) or `pytorch_model.bin`; or directly one such file (`.bin` / `.pt` / `.pth` files are read
 * as torch.save files, others as safetensors). The caller must close() it.
 */
export function openCheckpoint(dirOrFile: string): Checkpoint {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dirOrFile);
  } catch (e) {
    throw new SimbaError('E_IO', `${dirOrFile}: checkpoint not found`, { cause: e });
  }
  if (!stat.isDirectory()) {
    const fmt = formatOfFile(dirOrFile);
    if (dirOrFile.endsWith('.json')) return openIndexed(path.dirname(dirOrFile), dirOrFile, fmt);
    return openSingle(path.dirname(dirOrFile), dirOrFile, fmt);
  }
  const dir = dirOrFile;
  for (const { file, sharded, format } of FOLDER_LAYOUTS) {
    const p = path.join(dir, file);
    if (!fs.existsSync(p)) continue;
    return sharded ? openIndexed(dir, p, format) : openSingle(dir, p, format);
  }
  const present = fs.readdirSync(dir);
  const st = present.filter((f) => f.endsWith('.safetensors'));
  const bin = present.filter((f) => formatOfFile(f) === TORCH && !f.endsWith('.json'));
  let hint = '';
  if (st.length > 0) hint = ` (found ${st.join(', ')}; sharded checkpoints need ${FOLDER_LAYOUTS[0].file})`;
  else if (bin.length > 0)
    hint = ` (found ${bin.join(', ')}: a torch.save file is read as pytorch_model.bin, sharded ones need pytorch_model.bin.index.json)`;
  const names = FOLDER_LAYOUTS.map((l) => l.file).join(', ');
  throw new SimbaError('E_IO', `${dir}: no checkpoint file (looked for ${names})${hint}`);
}

// ---------------------------------------------------------------------------------------------
// encoding

export interface TensorToEncode {
  dtype: TensorDType;
  shape: number[];
  data: Float32Array;
}

/**
 * Serialise tensors to safetensors bytes. Values are converted from f32 to the requested dtype with
 * round-to-nearest-even. Tensors are written in sorted name order; the header is padded with spaces
 * to a multiple of 8 bytes.
 */
export function encodeSafetensors(tensors: Record<string, TensorToEncode>, metadata?: Record<string, string>): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        throw new SimbaError('E_ARG', `encodeSafetensors: metadata '${k}' must be a string, found ${describeValue(v)}`);
    }
    header['__metadata__'] = metadata;
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new SimbaError('E_ARG', `encodeSafetensors: '__metadata__' is not a valid tensor name`);
    const { dtype, shape, data } = tensors[name];
    const size = SAFETENSORS_DTYPE_SIZES[dtype];
    if (!(READABLE_DTYPES as readonly string[]).includes(dtype)) {
      throw new SimbaError(
        'E_ARG',
        `encodeSafetensors: tensor '${name}': dtype ${describeValue(dtype)} not one of ${READABLE_DTYPES.join(', ')}`,
      );
    }
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SimbaError('E_ARG', `encodeSafetensors: tensor '${name}': bad shape ${describeValue(shape)}`);
    }
    const numel = shape.reduce((a, b) => a * b, 1);
    if (data.length !== numel) {
      throw new SimbaError(
        'E_ARG',
        `encodeSafetensors: tensor '${name}': shape ${describeValue(shape)} needs ${numel} values, found ${data.length}`,
      );
    }
    const bytes = Buffer.alloc(numel * size);
    if (dtype === 'F32') {
      for (let i = 0; i < numel; i++) bytes.writeFloatLE(data[i], i * 4);
    } else {
      const conv = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < numel; i++) bytes.writeUInt16LE(conv(data[i]), i * 2);
    }
    header[name] = { dtype, shape: shape.slice(), data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length), 0);
  return Buffer.concat([len, json, ...parts]);
}
