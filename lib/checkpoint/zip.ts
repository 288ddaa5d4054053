/**
 * The central directory of a ZIP file (with ZIP64), read with positioned reads, and where each
 * stored (uncompressed) entry's bytes lie. PyTorch's `torch.save` writes such a file: every entry
 * stored, the tensor data in place, so a tensor can be read straight from its offset.
 *
 * @example
 *   const zip = openZip('pytorch_model.bin', fd, size);
 *   const e = zip.entries.get('archive/data.pkl');   // { size, ... }
 *   const at = zip.dataOffset(e);                     // absolute offset of its first byte
 *
 * Every offset and size is checked against the file size; anything malformed, encrypted or
 * compressed (where the caller needs stored data) is an E_WEIGHTS naming the file.
 */
import * as fs from 'fs';

import { SimbaError } from '../errors';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate, ... */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  flags: number;
}

export interface ZipDirectory {
  entries: ReadonlyMap<string, ZipEntry>;
  /** Absolute offset of a stored entry's data (after its local header), checked against the file size. */
  dataOffset(e: ZipEntry): number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
/** End of central directory record (22 bytes) plus the longest comment. */
const EOCD_SEARCH = 22 + 0xffff;
/** More entries than any checkpoint holds: bounds the work a hostile directory can ask for. */
const MAX_ENTRIES = 1_000_000;

export function zipError(file: string, msg: string): never {
  throw new SimbaError('E_WEIGHTS', `${file}: ${msg}`);
}

function readAt(fd: number, file: string, position: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, b, done, length - done, position + done);
    if (n <= 0) zipError(file, `unexpected end of file reading ${length} bytes at ${position}`);
    done += n;
  }
  return b;
}

function u64(b: Buffer, at: number, file: string, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) zipError(file, `ZIP64 ${what} ${v} is out of range`);
  return Number(v);
}

/** Reads and checks the central directory of the ZIP file open as fd (size bytes). */
export function openZip(file: string, fd: number, size: number): ZipDirectory {
  if (size < 22) zipError(file, `too short (${size} bytes) to be a ZIP file`);
  const tailLen = Math.min(size, EOCD_SEARCH);
  const tail = readAt(fd, file, size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + 22 + tail.readUInt16LE(i + 20) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) zipError(file, 'no ZIP end-of-central-directory record: not a ZIP file (or truncated)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdAbs = size - tailLen + eocd;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocdAbs < 20) zipError(file, 'ZIP64 fields set but no ZIP64 locator');
    const loc = readAt(fd, file, eocdAbs - 20, 20);
    if (loc.readUInt32LE(0) !== ZIP64_LOCATOR_SIG) zipError(file, 'ZIP64 fields set but no ZIP64 locator');
    const z64at = u64(loc, 8, file, 'end record offset');
    if (z64at + 56 > eocdAbs) zipError(file, `ZIP64 end record offset ${z64at} is out of range`);
    const z = readAt(fd, file, z64at, 56);
    if (z.readUInt32LE(0) !== ZIP64_EOCD_SIG) zipError(file, `no ZIP64 end record at ${z64at}`);
    count = u64(z, 32, file, 'entry count');
    cdSize = u64(z, 40, file, 'directory size');
    cdOffset = u64(z, 48, file, 'directory offset');
  }
  if (count > MAX_ENTRIES) zipError(file, `${count} entries (more than ${MAX_ENTRIES})`);
  if (cdOffset + cdSize > size) zipError(file, `central directory [${cdOffset}, +${cdSize}) runs past the end (${size} bytes)`);
  const cd = readAt(fd, file, cdOffset, cdSize);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) zipError(file, `central directory entry ${i} is malformed`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    let compressedSize = cd.readUInt32LE(p + 20);
    let entrySize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length) zipError(file, `central directory entry ${i} runs past the directory`);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // ZIP64 extra field (id 1): the 64-bit values of the fields set to 0xffffffff, in this order
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = cd.readUInt16LE(q);
      const len = cd.readUInt16LE(q + 2);
      if (q + 4 + len > extraEnd) zipError(file, `entry '${name}': extra field runs past its end`);
      if (id === 1) {
        let r = q + 4;
        const take = (what: string): number => {
          if (r + 8 > q + 4 + len) zipError(file, `entry '${name}': ZIP64 extra field lacks the ${what}`);
          const v = u64(cd, r, file, what);
          r += 8;
          return v;
        };
        if (entrySize === 0xffffffff) entrySize = take('size');
        if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('header offset');
      }
      q += 4 + len;
    }
    if (entries.has(name)) zipError(file, `entry '${name}' appears twice`);
    if (localHeaderOffset + 30 > cdOffset || localHeaderOffset + compressedSize > cdOffset)
      zipError(file, `entry '${name}' at ${localHeaderOffset} (+${compressedSize}) overlaps the central directory`);
    entries.set(name, { name, method, compressedSize, size: entrySize, localHeaderOffset, flags });
    p = end;
  }
  return {
    entries,
    dataOffset(e: ZipEntry): number {
      if (e.flags & 1) zipError(file, `entry '${e.name}' is encrypted`);
      if (e.method !== 0 || e.compressedSize !== e.size)
        zipError(file, `entry '${e.name}' is compressed (method ${e.method}); only stored entries can be read in place`);
      const h = readAt(fd, file, e.localHeaderOffset, 30);
      if (h.readUInt32LE(0) !== LOCAL_SIG) zipError(file, `entry '${e.name}': no local header at ${e.localHeaderOffset}`);
      const at = e.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
      if (at + e.size > cdOffset) zipError(file, `entry '${e.name}': data [${at}, +${e.size}) overlaps the central directory`);
      return at;
    },
  };
}
