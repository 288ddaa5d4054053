/**
 * PyTorch's `torch.save` files (`pytorch_model.bin`, `*.pt`): a ZIP holding `<dir>/data.pkl` (a
 * pickle of the state dict) and one stored entry per tensor storage, `<dir>/data/<key>`. The pickle
 * is read by the restricted reader (lib/checkpoint/pickle.ts) with the handful of globals a state
 * dict uses; nothing in the file is ever executed. Tensors are then read in place, like safetensors.
 *
 * @example
 *   const f = openTorchBin('state-spaces-mamba-130m/pytorch_model.bin');
 *   f.names();                                  // ['backbone.embedding.weight', ...]
 *   f.readTensorF32('backbone.norm_f.weight');  // Float32Array
 *   f.close();
 *
 * What it understands (the globals): collections.OrderedDict (the state dict and the per-tensor
 * hooks), torch._utils._rebuild_tensor_v2 and _rebuild_parameter, and the typed storage classes
 * (torch.FloatStorage, ...) of the persistent ids ('storage', type, key, location, numel). Tensors
 * must be C-contiguous (as state dicts are); the legacy pre-1.6 (non-ZIP) format is refused.
 */
import * as fs from 'fs';

import { SimbaError } from '../errors';
import { PickleGlobal, describe, readPickle, type AllowedGlobal } from './pickle';
import { TensorFileReader, readFully, type TensorInfo, type TensorSource } from './tensor_file';
import { openZip, zipError, type ZipDirectory } from './zip';

/** torch storage class -> safetensors dtype name and element size. */
const STORAGE_TYPES: Readonly<Record<string, { dtype: string; size: number }>> = {
  FloatStorage: { dtype: 'F32', size: 4 },
  HalfStorage: { dtype: 'F16', size: 2 },
  BFloat16Storage: { dtype: 'BF16', size: 2 },
  DoubleStorage: { dtype: 'F64', size: 8 },
  LongStorage: { dtype: 'I64', size: 8 },
  IntStorage: { dtype: 'I32', size: 4 },
  ShortStorage: { dtype: 'I16', size: 2 },
  CharStorage: { dtype: 'I8', size: 1 },
  ByteStorage: { dtype: 'U8', size: 1 },
  BoolStorage: { dtype: 'BOOL', size: 1 },
};

/** Largest data.pkl read (a 7B model's state dict pickle is well under 1 MB). */
const MAX_PICKLE_BYTES = 64 << 20;

/** A storage record: which entry holds it, its dtype and element count. */
interface StorageRef {
  key: string;
  dtype: string;
  elementSize: number;
  numel: number;
  /** Absolute offset of the entry's data, and its length in bytes. */
  offset: number;
  bytes: number;
}

/** A tensor as _rebuild_tensor_v2 describes it. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

function isIntList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && (d as number) >= 0);
}

export interface TorchBinFile extends TensorSource {
  path: string;
  /** The ZIP folder name the entries live under (torch uses the file's stem, or 'archive'). */
  archive: string;
  tensors: ReadonlyMap<string, TensorInfo>;
}

/** Open and validate a torch.save ZIP file; the caller must close() it. */
export function openTorchBin(file: string): TorchBinFile {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new SimbaError('E_IO', `${file}: cannot open PyTorch checkpoint (${(e as Error).message})`, { cause: e });
  }
  try {
    const size = fs.fstatSync(fd).size;
    const magic = Buffer.alloc(Math.min(size, 4));
    readFully(fd, magic, 0, file, 'the file magic', zipError);
    if (magic.length >= 2 && magic[0] === 0x80 && magic[1] <= 5)
      zipError(file, 'this is the legacy (pre-1.6, non-ZIP) torch.save format: re-save it with torch >= 1.6 or as safetensors');
    if (magic.length < 4 || magic.readUInt32LE(0) !== 0x04034b50)
      zipError(file, 'not a PyTorch checkpoint: no ZIP header (torch.save files are ZIP archives)');
    const zip = openZip(file, fd, size);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1)
      zipError(file, `expected one '<dir>/data.pkl' entry, found ${pkls.length === 0 ? 'none' : pkls.join(', ')}`);
    const archive = pkls[0].slice(0, -'/data.pkl'.length);
    const order = zip.entries.get(`${archive}/byteorder`);
    if (order) {
      const b = Buffer.alloc(Math.min(order.size, 16));
      readFully(fd, b, zip.dataOffset(order), file, 'byteorder', zipError);
      if (b.toString('latin1') !== 'little') zipError(file, `byte order '${b.toString('latin1')}' (only little-endian is read)`);
    }
    const pklEntry = zip.entries.get(pkls[0])!;
    if (pklEntry.size > MAX_PICKLE_BYTES) zipError(file, `data.pkl is ${pklEntry.size} bytes (more than ${MAX_PICKLE_BYTES})`);
    const pkl = Buffer.alloc(pklEntry.size);
    readFully(fd, pkl, zip.dataOffset(pklEntry), file, 'data.pkl', zipError);
    const root = readPickle(pkl, {
      source: `${file} (${pkls[0]})`,
      globals: torchGlobals(),
      persistentLoad: (pid) => loadStorage(file, archive, zip, pid),
    });
    return new TorchBinReader(file, fd, archive, tensorTable(file, root));
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** The globals a state dict pickle uses, and what each builds. */
function torchGlobals(): Record<string, AllowedGlobal> {
  const g: Record<string, AllowedGlobal> = {
    'collections.OrderedDict': {
      call: (args) => {
        if (args.length !== 0) throw new Error('expected no arguments');
        return new Map();
      },
      // a state dict's `_metadata` attribute (module versions): not needed to read tensors
      build: (obj) => obj,
    },
    'torch._utils._rebuild_tensor_v2': {
      call: (args) => {
        if (args.length < 6 || args.length > 7) throw new Error(`expected 6 or 7 arguments, got ${args.length}`);
        const [storage, offset, shape, stride] = args;
        if (!(storage instanceof StorageRefBox)) throw new Error(`storage is a ${describe(storage)}, not a persistent storage`);
        if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new Error(`storage offset ${describe(offset)}`);
        if (!isIntList(shape) || !isIntList(stride) || shape.length !== stride.length)
          throw new Error(`size ${describe(shape)} and stride ${describe(stride)} must be equal-length lists of integers`);
        return new TensorRef(storage.ref, offset as number, shape, stride);
      },
    },
    'torch._utils._rebuild_parameter': {
      call: (args) => {
        if (args.length !== 3 || !(args[0] instanceof TensorRef)) throw new Error('expected (tensor, requires_grad, hooks)');
        return args[0];
      },
    },
  };
  for (const name of Object.keys(STORAGE_TYPES)) g[`torch.${name}`] = {};
  return g;
}

/** Boxes a storage so _rebuild_tensor_v2 can tell it from anything else the pickle holds. */
class StorageRefBox {
  constructor(readonly ref: StorageRef) {}
}

/** A persistent id ('storage', torch.XStorage, key, location, numel) -> the entry `<archive>/data/<key>`. */
function loadStorage(file: string, archive: string, zip: ZipDirectory, pid: unknown): StorageRefBox {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage')
    throw new Error(`persistent id ${describe(pid)} is not ('storage', type, key, location, numel)`);
  const [, type, key, , numel] = pid;
  if (!(type instanceof PickleGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGE_TYPES, type.name))
    zipError(file, `storage type ${describe(type)} (known: ${Object.keys(STORAGE_TYPES).join(', ')})`);
  if (typeof key !== 'string' || !/^[A-Za-z0-9_]+$/.test(key)) zipError(file, `storage key ${describe(key)} is not a plain name`);
  if (!Number.isSafeInteger(numel) || (numel as number) < 0) zipError(file, `storage '${key}': element count ${describe(numel)}`);
  const entry = zip.entries.get(`${archive}/data/${key}`);
  if (!entry) zipError(file, `storage '${key}' has no entry '${archive}/data/${key}'`);
  const { dtype, size } = STORAGE_TYPES[(type as PickleGlobal).name];
  const need = (numel as number) * size;
  if (entry.size < need) zipError(file, `storage '${key}' holds ${entry.size} bytes, ${numel} x ${dtype} needs ${need}`);
  return new StorageRefBox({ key, dtype, elementSize: size, numel: numel as number, offset: zip.dataOffset(entry), bytes: need });
}

/** The state dict (name -> tensor) as TensorInfo records; refuses anything that is not one. */
function tensorTable(file: string, root: unknown): Map<string, TensorInfo> {
  if (!(root instanceof Map)) zipError(file, `the pickle holds a ${describe(root)}, not a state dict (a dict of tensors)`);
  const out = new Map<string, TensorInfo>();
  for (const [name, v] of root as Map<unknown, unknown>) {
    if (typeof name !== 'string') zipError(file, `state dict key ${describe(name)} is not a string`);
    if (!(v instanceof TensorRef)) zipError(file, `state dict entry '${name}' is a ${describe(v)}, not a tensor`);
    const t = v as TensorRef;
    let numel = 1;
    for (const d of t.shape) numel *= d;
    // C-contiguous: stride[i] = prod(shape[i+1:]) wherever shape[i] > 1
    let want = 1;
    for (let i = t.shape.length - 1; i >= 0; i--) {
      if (t.shape[i] > 1 && t.stride[i] !== want)
        zipError(
          file,
          `tensor '${name}' is not contiguous (size [${t.shape}], stride [${t.stride}]): save it after .contiguous()`,
        );
      want *= t.shape[i];
    }
    const s = t.storage;
    if (!Number.isSafeInteger(numel) || t.storageOffset + numel > s.numel)
      zipError(
        file,
        `tensor '${name}' [${t.shape}] at offset ${t.storageOffset} runs past its storage '${s.key}' (${s.numel} elements)`,
      );
    const begin = t.storageOffset * s.elementSize;
    out.set(name, {
      name,
      dtype: s.dtype,
      shape: t.shape.slice(),
      numel,
      dataOffsets: [begin, begin + numel * s.elementSize],
      byteOffset: s.offset + begin,
      byteLength: numel * s.elementSize,
      file,
    });
  }
  return out;
}

class TorchBinReader extends TensorFileReader implements TorchBinFile {
  constructor(
    path: string,
    fd: number,
    readonly archive: string,
    tensors: Map<string, TensorInfo>,
  ) {
    super(path, fd, tensors, zipError);
  }
}
