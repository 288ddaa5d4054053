/**
 * A writer of torch.save files for tests, without Python or torch: a ZIP of stored entries
 * (`<archive>/data.pkl`, `<archive>/data/<key>`, `byteorder`, `version`) whose pickle (protocol 2)
 * holds an OrderedDict of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
 * OrderedDict())` with persistent ids ('storage', torch.<Type>Storage, key, 'cpu', numel), the
 * records torch.save writes for a state dict. Entry data is aligned to 64 bytes as torch aligns it.
 *
 * @example
 *   fs.writeFileSync('pytorch_model.bin', encodeTorchSave({ w: { dtype: 'F32', shape: [2], data } }));
 */
import type { TensorDType } from '../../lib/types';
import { encodeDtype } from '../reference/random_model';

export interface TorchTensor {
  dtype: TensorDType;
  shape: number[];
  data: Float32Array;
}

export interface TorchSaveOptions {
  /** The folder name of the entries in the ZIP (torch: the file's stem, or 'archive'). */
  archive?: string;
  /** Write the ZIP64 records (end record and locator, 64-bit sizes and offsets) a file past 4 GiB has. */
  zip64?: boolean;
  /** name -> name of an earlier tensor whose storage it is (a tied head: lm_head.weight -> the embedding). */
  shared?: Record<string, string>;
}

const STORAGE: Record<TensorDType, string> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' };

/** The bytes of a torch.save file of the tensors, in the order given. */
export function encodeTorchSave(tensors: Record<string, TorchTensor>, opts: TorchSaveOptions = {}): Buffer {
  const archive = opts.archive ?? 'archive';
  const storages: { key: string; bytes: Uint8Array }[] = [];
  const keyOf = new Map<string, { key: string; numel: number; dtype: TensorDType }>();
  const p = new PickleWriter();
  p.op(0x80, 2); // PROTO 2
  p.orderedDict();
  p.op(0x28); // MARK
  for (const [name, t] of Object.entries(tensors)) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== numel) throw new Error(`${name}: ${t.data.length} values for shape [${t.shape}]`);
    const sharedWith = opts.shared?.[name];
    let st = sharedWith === undefined ? undefined : keyOf.get(sharedWith);
    if (sharedWith !== undefined && !st)
      throw new Error(`${name} shares the storage of ${sharedWith}, which comes later or not at all`);
    if (!st) {
      st = { key: String(storages.length), numel, dtype: t.dtype };
      storages.push({ key: st.key, bytes: encodeDtype(t.data, t.dtype).bytes });
    }
    keyOf.set(name, st);
    p.unicode(name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28);
    p.op(0x28); // the persistent id
    p.unicode('storage');
    p.global('torch', STORAGE[st.dtype]);
    p.unicode(st.key);
    p.unicode('cpu');
    p.int(st.numel);
    p.op(0x74); // TUPLE
    p.op(0x51); // BINPERSID
    p.int(0); // storage offset
    p.intTuple(t.shape);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.intTuple(stride);
    p.op(0x89); // NEWFALSE: requires_grad
    p.orderedDict(); // backward hooks
    p.op(0x74); // TUPLE
    p.op(0x52); // REDUCE
  }
  p.op(0x75); // SETITEMS
  p.op(0x2e); // STOP
  const entries = [
    { name: `${archive}/data.pkl`, data: p.bytes() },
    { name: `${archive}/byteorder`, data: Buffer.from('little') },
    ...storages.map((s) => ({ name: `${archive}/data/${s.key}`, data: s.bytes })),
    { name: `${archive}/version`, data: Buffer.from('3\n') },
  ];
  return writeZip(entries, opts.zip64 ?? false);
}

class PickleWriter {
  private readonly parts: Buffer[] = [];

  op(...bytes: number[]): void {
    this.parts.push(Buffer.from(bytes));
  }

  unicode(s: string): void {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.parts.push(Buffer.from([0x58]), len, b); // BINUNICODE
  }

  int(v: number): void {
    const b = Buffer.alloc(5);
    b[0] = 0x4a; // BININT
    b.writeInt32LE(v, 1);
    this.parts.push(b);
  }

  intTuple(values: number[]): void {
    if (values.length === 0) return this.op(0x29); // EMPTY_TUPLE
    this.op(0x28);
    for (const v of values) this.int(v);
    this.op(0x74);
  }

  global(module: string, name: string): void {
    this.parts.push(Buffer.from([0x63]), Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }

  /** collections.OrderedDict() */
  orderedDict(): void {
    this.global('collections', 'OrderedDict');
    this.op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A ZIP of stored entries; with zip64, every size and offset lives in the ZIP64 records. */
function writeZip(entries: { name: string; data: Uint8Array }[], zip64: boolean): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer) => {
    out.push(b);
    offset += b.length;
  };
  const central: Buffer[] = [];
  const version = zip64 ? 45 : 20;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const crc = crc32(e.data);
    const headerAt = offset;
    const z64Local = zip64 ? 20 : 0; // id, length, size, compressed size
    // torch pads the local extra field so that the data starts on a 64-byte boundary
    const pad = (64 - ((headerAt + 30 + name.length + z64Local + 4) % 64)) % 64;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(version, 4);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(zip64 ? 0xffffffff : e.data.length, 18);
    local.writeUInt32LE(zip64 ? 0xffffffff : e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(z64Local + 4 + pad, 28);
    const extra = Buffer.alloc(z64Local + 4 + pad);
    if (zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(16, 2);
      extra.writeBigUInt64LE(BigInt(e.data.length), 4);
      extra.writeBigUInt64LE(BigInt(e.data.length), 12);
    }
    extra.writeUInt16LE(0x4246, z64Local); // 'FB': padding
    extra.writeUInt16LE(pad, z64Local + 2);
    push(Buffer.concat([local, name, extra, Buffer.from(e.data)]));

    const cextra = Buffer.alloc(zip64 ? 28 : 0);
    if (zip64) {
      cextra.writeUInt16LE(1, 0);
      cextra.writeUInt16LE(24, 2);
      cextra.writeBigUInt64LE(BigInt(e.data.length), 4);
      cextra.writeBigUInt64LE(BigInt(e.data.length), 12);
      cextra.writeBigUInt64LE(BigInt(headerAt), 20);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(version, 4);
    c.writeUInt16LE(version, 6);
    c.writeUInt16LE(0x21, 14);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(zip64 ? 0xffffffff : e.data.length, 20);
    c.writeUInt32LE(zip64 ? 0xffffffff : e.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(cextra.length, 30);
    c.writeUInt32LE(zip64 ? 0xffffffff : headerAt, 42);
    central.push(Buffer.concat([c, name, cextra]));
  }
  const cdAt = offset;
  const cd = Buffer.concat(central);
  push(cd);
  if (zip64) {
    const z = Buffer.alloc(56);
    z.writeUInt32LE(0x06064b50, 0);
    z.writeBigUInt64LE(44n, 4); // size of the rest of this record
    z.writeUInt16LE(45, 12);
    z.writeUInt16LE(45, 14);
    z.writeBigUInt64LE(BigInt(entries.length), 24);
    z.writeBigUInt64LE(BigInt(entries.length), 32);
    z.writeBigUInt64LE(BigInt(cd.length), 40);
    z.writeBigUInt64LE(BigInt(cdAt), 48);
    const zAt = offset;
    push(z);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(zAt), 8);
    loc.writeUInt32LE(1, 16);
    push(loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cdAt, 16);
  push(eocd);
  return Buffer.concat(out);
}
