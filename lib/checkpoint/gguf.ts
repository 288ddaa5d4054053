/**
 * GGUF files (llama.cpp's container): the header parsed by @huggingface/gguf, then every count,
 * length, offset, dimension, type and the alignment checked here against the file, so that a
 * truncated or lying header is an E_WEIGHTS naming the problem before any tensor is read.
 *
 * Layout (little-endian): "GGUF", u32 version (2, 3), u64 tensor count, u64 key/value count, the
 * key/value pairs, the tensor infos (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 type, u64
 * offset relative to the data section), padding to `general.alignment` (default 32), the data.
 * A row-major [rows, cols] matrix is stored with ne = [cols, rows]; block types (Q8_0, Q4_K, ...)
 * quantize runs of ne[0] in blocks of 32 or 256.
 *
 * @example
 *   const g = await openGguf('falcon-mamba-7b-Q4_0.gguf');
 *   g.metadata['general.architecture'];          // 'mamba'
 *   g.tensors.get('blk.0.ssm_in.weight')?.type;  // 'Q4_0'
 */
import * as fs from 'fs';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';

import { SimbaError } from '../errors';

/** The tensor types we read: plain elements or llama.cpp's blocks. */
export type GgufTensorType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q4_K' | 'Q5_K' | 'Q6_K';

/** Each readable type: its GGML type id, elements per block and bytes per block. */
export const GGUF_TENSOR_TYPES: Readonly<Record<GgufTensorType, { id: number; blockElems: number; blockBytes: number }>> = {
  F32: { id: 0, blockElems: 1, blockBytes: 4 },
  F16: { id: 1, blockElems: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockElems: 32, blockBytes: 18 },
  Q4_1: { id: 3, blockElems: 32, blockBytes: 20 },
  Q8_0: { id: 8, blockElems: 32, blockBytes: 34 },
  Q4_K: { id: 12, blockElems: 256, blockBytes: 144 },
  Q5_K: { id: 13, blockElems: 256, blockBytes: 176 },
  Q6_K: { id: 14, blockElems: 256, blockBytes: 210 },
  BF16: { id: 30, blockElems: 1, blockBytes: 2 },
};

const TYPE_BY_ID = new Map(Object.entries(GGUF_TENSOR_TYPES).map(([name, t]) => [t.id, name as GgufTensorType]));

/** A metadata value as the parser returns it (u64 / i64 as bigint). */
export type GgufValue = number | bigint | string | boolean | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  type: GgufTensorType;
  /** ggml's ne: innermost (contiguous) dimension first. */
  dims: number[];
  /** Row-major shape (dims reversed), as a PyTorch checkpoint would hold it. */
  shape: number[];
  numel: number;
  /** Absolute offset of the tensor's bytes in the file. */
  byteOffset: number;
  byteLength: number;
  file: string;
}

export interface GgufFile {
  path: string;
  size: number;
  version: number;
  metadata: Readonly<Record<string, GgufValue>>;
  tensors: ReadonlyMap<string, GgufTensorInfo>;
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
}

/** llama.cpp's limit on tensor dimensions (GGML_MAX_DIMS). */
const MAX_DIMS = 4;
const MAX_ALIGNMENT = 1 << 30;

function bad(file: string, msg: string): never {
  throw new SimbaError('E_WEIGHTS', `${file}: ${msg}`);
}

/** Whether the file starts with GGUF's magic (false for folders and unreadable paths). */
export function isGgufFile(file: string): boolean {
  let fd: number;
  try {
    if (!fs.statSync(file).isFile()) return false;
    fd = fs.openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.toString('latin1') === 'GGUF';
  } finally {
    fs.closeSync(fd);
  }
}

/** The name of a GGML type id, for messages ('Q5_0', 'IQ2_XS', or 'type 99'). */
function typeName(id: number): string {
  const n = (GGMLQuantizationType as unknown as Record<number, string | undefined>)[id];
  return typeof n === 'string' ? n : `type ${id}`;
}

function toSafe(file: string, v: bigint | number, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (!Number.isSafeInteger(n) || BigInt(n) !== BigInt(v)) bad(file, `${what} ${String(v)} is too large`);
  return n;
}

function checkTensor(
  file: string,
  t: { name: string; n_dims: number; shape: bigint[]; dtype: number; offset: bigint },
  g: { dataOffset: number; size: number; alignment: number },
): GgufTensorInfo {
  const what = `tensor '${t.name}'`;
  if (t.name.length === 0) bad(file, 'a tensor has an empty name');
  if (t.n_dims < 1 || t.n_dims > MAX_DIMS) bad(file, `${what} has ${t.n_dims} dimensions (1 to ${MAX_DIMS} allowed)`);
  const dims = t.shape.map((d, i) => toSafe(file, d, `${what} dimension ${i}`));
  if (dims.some((d) => d < 1)) bad(file, `${what} has an empty dimension (ne = [${dims.join(', ')}])`);
  const type = TYPE_BY_ID.get(t.dtype);
  if (type === undefined)
    bad(
      file,
      `${what} has tensor type ${typeName(t.dtype)}, which is not supported (supported: ${Object.keys(GGUF_TENSOR_TYPES).join(', ')})`,
    );
  const { blockElems, blockBytes } = GGUF_TENSOR_TYPES[type];
  let numel = 1;
  for (const d of dims) numel *= d;
  if (!Number.isSafeInteger(numel)) bad(file, `${what}: ne = [${dims.join(', ')}] is too large`);
  if (dims[0] % blockElems !== 0)
    bad(file, `${what}: its rows of ${dims[0]} elements are not whole ${type} blocks of ${blockElems}`);
  const byteLength = (numel / blockElems) * blockBytes;
  const rel = toSafe(file, t.offset, `${what} offset`);
  if (rel % g.alignment !== 0) bad(file, `${what}: offset ${rel} is not a multiple of the alignment ${g.alignment}`);
  const end = g.dataOffset + rel + byteLength;
  if (end > g.size)
    bad(
      file,
      `${what}: ${byteLength} bytes of ${type} at data offset ${rel} run past the end of the file (${g.size} bytes, data from ${g.dataOffset}); the file is truncated or its header is wrong`,
    );
  return {
    name: t.name,
    type,
    dims,
    shape: dims.slice().reverse(),
    numel,
    byteOffset: g.dataOffset + rel,
    byteLength,
    file,
  };
}

/**
 * Reads and checks a GGUF file's header: metadata, tensor infos, alignment, that every tensor lies
 * in the file without overlapping another and is of a readable type. Tensor data is not read.
 * E_IO when the file cannot be opened; E_WEIGHTS for anything wrong with its contents.
 */
export async function openGguf(file: string): Promise<GgufFile> {
  let size: number;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new SimbaError('E_IO', `${file}: is not a regular file, not a GGUF file`);
    size = st.size;
  } catch (e) {
    if (e instanceof SimbaError) throw e;
    throw new SimbaError('E_IO', `${file}: cannot open GGUF file (${(e as Error).message})`, { cause: e });
  }
  if (size < 24) bad(file, `file too short (${size} bytes) for a GGUF header`);
  let parsed;
  try {
    parsed = await gguf(file, { allowLocalFile: true });
  } catch (e) {
    bad(file, `not a readable GGUF file: ${(e as Error).message}`);
  }
  if (!parsed.littleEndian) bad(file, 'big-endian GGUF files are not supported');
  const meta = parsed.metadata as unknown as Record<string, GgufValue>;
  const version = Number(meta['version']);
  if (version !== 2 && version !== 3) bad(file, `GGUF version ${version} is not supported (2 and 3 are)`);
  // Reads past the end of the file come back as zeros from the parser: the header's end tells.
  const headerEnd = parsed.tensorInfoByteRange[1];
  if (headerEnd > size)
    bad(file, `the header (${headerEnd} bytes as its counts and lengths say) runs past the end of the file (${size} bytes)`);
  const rawAlign = meta['general.alignment'] ?? 32;
  const alignment = typeof rawAlign === 'number' || typeof rawAlign === 'bigint' ? Number(rawAlign) : NaN;
  if (!Number.isSafeInteger(alignment) || alignment < 1 || alignment > MAX_ALIGNMENT || (alignment & (alignment - 1)) !== 0)
    bad(file, `general.alignment ${String(rawAlign)} is not a power of two up to ${MAX_ALIGNMENT}`);
  const dataOffset = Math.ceil(headerEnd / alignment) * alignment;
  if (dataOffset > size) bad(file, `the data section (from ${dataOffset}) starts past the end of the file (${size} bytes)`);
  const tensors = new Map<string, GgufTensorInfo>();
  for (const t of parsed.tensorInfos) {
    if (tensors.has(t.name)) bad(file, `tensor '${t.name}' is listed twice`);
    tensors.set(t.name, checkTensor(file, t, { dataOffset, size, alignment }));
  }
  const byStart = [...tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1];
    if (byStart[i].byteOffset < prev.byteOffset + prev.byteLength)
      bad(file, `tensors '${prev.name}' and '${byStart[i].name}' overlap`);
  }
  const metadata: Record<string, GgufValue> = Object.create(null) as Record<string, GgufValue>;
  for (const [k, v] of Object.entries(meta)) if (k !== 'version' && k !== 'tensor_count' && k !== 'kv_count') metadata[k] = v;
  return { path: file, size, version, metadata, tensors, alignment, dataOffset };
}
