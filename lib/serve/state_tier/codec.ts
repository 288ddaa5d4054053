/**
 * The value format of the shared state tier: a 64-byte header, then a sequence snapshot (the bytes of
 * Sequence.snapshotAsync(), which carry their own header and checksum). States are data, never code:
 * decoding reads numbers out of a Buffer and checks them, nothing else.
 *
 * Header (little-endian u32 words): magic "SMBR", format version, the model fingerprint (4 words),
 * the digest of the token prefix the state is for (4 words), the position (tokens the state has
 * seen, low and high words), the payload byte count (low and high), a checksum of the header words
 * before it and of the payload, a reserved word.
 *
 * decodeState() refuses (StateRejected, with the reason) a value that is too short, of another
 * format, for another model or another prefix, of another position, truncated or too long, or whose
 * checksum does not match: a poisoned or damaged value is dropped, never restored.
 *
 * @example
 *   const value = encodeState({ fingerprint, prefix: prefixDigest(tokens, n), position: n, snapshot });
 *   const snapshot = decodeState(value, { fingerprint, prefix: prefixDigest(tokens, n), position: n });
 */
import { createHash } from 'crypto';

import { snapshotChecksum } from '../../engine/sequence';

const MAGIC = 0x52424d53; // "SMBR"
export const STATE_FORMAT_VERSION = 1;
const HEADER_WORDS = 16;
export const STATE_HEADER_BYTES = HEADER_WORDS * 4;
const W = { magic: 0, version: 1, fingerprint: 2, prefix: 6, posLo: 10, posHi: 11, lenLo: 12, lenHi: 13, checksum: 14 } as const;

/** Why a value was refused. */
export type RejectReason = 'short' | 'format' | 'fingerprint' | 'prefix' | 'position' | 'length' | 'checksum';

export class StateRejected extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}

export interface StateIdentity {
  /** The model fingerprint, 32 hex characters. */
  fingerprint: string;
  /** prefixDigest() of the tokens the state is for, 32 hex characters. */
  prefix: string;
  /** Tokens the state has seen. */
  position: number;
}

/** The SHA-256 of token ids (int32 little-endian), 32 hex characters. */
export function prefixDigest(tokens: ArrayLike<number>, length: number): string {
  return createHash('sha256').update(tokenBytes(tokens, length)).digest('hex').slice(0, 32);
}

/** Token ids as int32 little-endian bytes. */
export function tokenBytes(tokens: ArrayLike<number>, length: number): Buffer {
  const b = Buffer.allocUnsafe(length * 4);
  for (let i = 0; i < length; i++) b.writeInt32LE(tokens[i], i * 4);
  return b;
}

const NO_HEAD = new Uint32Array(8);
const hexWords = (hex: string): number[] => [0, 1, 2, 3].map((i) => parseInt(hex.slice(i * 8, i * 8 + 8), 16) >>> 0);

function words(buf: Buffer, count: number): Uint32Array {
  const w = new Uint32Array(count);
  for (let i = 0; i < count; i++) w[i] = buf.readUInt32LE(i * 4);
  return w;
}

/** The checksum of a value's header words (up to the checksum) and payload (a multiple of 4 bytes). */
function checksum(head: Uint32Array, payload: Buffer): number {
  // snapshotChecksum hashes the first 6 words of its header argument and all of its body: the payload
  // with words 0-5 first, then that sum with words 6-13 as a body of their own
  const body = new Uint32Array(payload.buffer, payload.byteOffset, payload.byteLength >>> 2);
  const first = snapshotChecksum(head.subarray(0, 8), body);
  return snapshotChecksum(NO_HEAD, Uint32Array.of(first, ...head.subarray(6, W.checksum)));
}

/** A value for the tier: header + the snapshot (copied). */
export function encodeState(id: StateIdentity & { snapshot: Buffer }): Buffer {
  const payload = id.snapshot;
  if (payload.byteLength % 4 !== 0) throw new Error('encodeState: a snapshot is a whole number of 32-bit words');
  const out = Buffer.allocUnsafe(STATE_HEADER_BYTES + payload.byteLength);
  payload.copy(out, STATE_HEADER_BYTES);
  const head = new Uint32Array(HEADER_WORDS);
  head[W.magic] = MAGIC;
  head[W.version] = STATE_FORMAT_VERSION;
  head.set(hexWords(id.fingerprint), W.fingerprint);
  head.set(hexWords(id.prefix), W.prefix);
  head[W.posLo] = id.position >>> 0;
  head[W.posHi] = Math.floor(id.position / 2 ** 32);
  head[W.lenLo] = payload.byteLength >>> 0;
  head[W.lenHi] = Math.floor(payload.byteLength / 2 ** 32);
  head[W.checksum] = checksum(head, out.subarray(STATE_HEADER_BYTES));
  head.forEach((w, i) => out.writeUInt32LE(w, i * 4));
  return out;
}

/** The position a value's header announces (unchecked: decodeState checks it), -1 for a value too short. */
export function valuePosition(value: Buffer): number {
  if (value.byteLength < STATE_HEADER_BYTES) return -1;
  return value.readUInt32LE(W.posLo * 4) + value.readUInt32LE(W.posHi * 4) * 2 ** 32;
}

/** The snapshot of a value after every check (a view into `value`); StateRejected otherwise. */
export function decodeState(value: Buffer, want: StateIdentity): Buffer {
  if (value.byteLength < STATE_HEADER_BYTES)
    throw new StateRejected('short', `state value of ${value.byteLength} bytes, shorter than its header`);
  const head = words(value, HEADER_WORDS);
  if (head[W.magic] !== MAGIC || head[W.version] !== STATE_FORMAT_VERSION)
    throw new StateRejected('format', `not a simba state value of format ${STATE_FORMAT_VERSION}`);
  const same = (at: number, hex: string) => hexWords(hex).every((w, i) => head[at + i] === w);
  if (!same(W.fingerprint, want.fingerprint)) throw new StateRejected('fingerprint', 'state value of another model');
  if (!same(W.prefix, want.prefix)) throw new StateRejected('prefix', 'state value of another token prefix');
  if (head[W.posLo] + head[W.posHi] * 2 ** 32 !== want.position)
    throw new StateRejected('position', 'state value of another position');
  const len = head[W.lenLo] + head[W.lenHi] * 2 ** 32;
  if (len !== value.byteLength - STATE_HEADER_BYTES || len % 4 !== 0)
    throw new StateRejected(
      'length',
      `state value ${value.byteLength - STATE_HEADER_BYTES < len ? 'truncated' : 'too long'} (${len} payload bytes announced)`,
    );
  // the payload view must be 4-byte aligned for the checksum: copy when the buffer is not
  const payload =
    value.byteOffset % 4 === 0 ? value.subarray(STATE_HEADER_BYTES) : Buffer.from(value.subarray(STATE_HEADER_BYTES));
  if (checksum(head, payload) !== head[W.checksum]) throw new StateRejected('checksum', 'state value checksum mismatch');
  return payload;
}
