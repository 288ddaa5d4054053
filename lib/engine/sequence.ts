/**
 * A sequence: one stream of tokens and its recurrent state (per layer, conv [E, K-1] and SSM
 * [E, N], in a Float32Array the native engine reads and updates in place). The state's size is
 * fixed, whatever the context length, so it can be snapshotted, restored and cached.
 *
 * @example
 *   const seq = model.newSequence();
 *   await model.prefill([{ sequence: seq, tokens: ids }]);
 *   const saved = seq.snapshot();          // Buffer
 *   const other = model.newSequence();
 *   other.restore(saved);                  // continues exactly where seq was
 */
import { SimbaError } from '../errors';
import * as v from '../validate';

const MAGIC = 0x53424d53; // "SMBS"
const HEADER_BYTES = 16; // magic, model fingerprint, position, float count (u32 each)

export class Sequence {
  /** Tokens consumed so far (prefill + decode). */
  position = 0;
  /** True while a native call uses the state. */
  busy = false;
  private disposed = false;

  /** @internal created by MambaModel.newSequence() */
  constructor(
    readonly state: Float32Array,
    private readonly fingerprint: number,
  ) {}

  /** @internal marks the sequence in use by a native call; concurrent calls are rejected. */
  acquire(what: string): void {
    if (this.disposed) throw new SimbaError('E_DISPOSED', `${what}: the sequence has been disposed`);
    if (this.busy) throw new SimbaError('E_BUSY', `${what}: the sequence is already in use by another call (await it first)`);
    this.busy = true;
  }

  /** @internal */
  release(): void {
    this.busy = false;
  }

  /** Clears the state (back to an empty context). */
  reset(): void {
    this.acquire('reset');
    this.state.fill(0);
    this.position = 0;
    this.release();
  }

  /** A copy of the state with a header tying it to this model's shape. */
  snapshot(): Buffer {
    this.acquire('snapshot');
    try {
      const buf = Buffer.alloc(HEADER_BYTES + this.state.byteLength);
      buf.writeUInt32LE(MAGIC, 0);
      buf.writeUInt32LE(this.fingerprint, 4);
      buf.writeUInt32LE(this.position >>> 0, 8);
      buf.writeUInt32LE(this.state.length, 12);
      Buffer.from(this.state.buffer, this.state.byteOffset, this.state.byteLength).copy(buf, HEADER_BYTES);
      return buf;
    } finally {
      this.release();
    }
  }

  /** Restores a snapshot taken from a sequence of a model with the same shape. */
  restore(buf: Uint8Array): void {
    if (!(buf instanceof Uint8Array))
      throw v.argError('restore', `the snapshot must be a Buffer or Uint8Array (from snapshot()), got ${v.describeType(buf)}`);
    this.acquire('restore');
    try {
      const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
      if (b.length < HEADER_BYTES || b.readUInt32LE(0) !== MAGIC)
        throw new SimbaError('E_ARG', 'restore: not a simba-ssm sequence snapshot');
      if (b.readUInt32LE(4) !== this.fingerprint || b.readUInt32LE(12) !== this.state.length)
        throw new SimbaError('E_ARG', 'restore: the snapshot was taken from a model of another shape');
      if (b.length !== HEADER_BYTES + this.state.byteLength)
        throw new SimbaError(
          'E_ARG',
          `restore: snapshot truncated (${b.length} bytes, expected ${HEADER_BYTES + this.state.byteLength})`,
        );
      const floats = new Float32Array(this.state.length);
      Buffer.from(floats.buffer).set(b.subarray(HEADER_BYTES));
      this.state.set(floats);
      this.position = b.readUInt32LE(8);
    } finally {
      this.release();
    }
  }

  /** Marks the sequence unusable. */
  dispose(): void {
    this.disposed = true;
  }
}

/** A 32-bit FNV-1a hash of the numbers that define a state's layout. */
export function stateFingerprint(dims: number[]): number {
  let h = 0x811c9dc5;
  for (const d of dims) {
    for (let i = 0; i < 4; i++) {
      h ^= (d >>> (8 * i)) & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}
