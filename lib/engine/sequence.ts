/**
 * A sequence: one stream of tokens and its recurrent state (per layer, conv [E, K-1] and SSM
 * [E, N]). The state's size is fixed, whatever the context length, so it can be snapshotted,
 * restored and cached.
 *
 * Where the state lives follows the model's device. On the CPU it is a Float32Array (`state`) the
 * native engine reads and updates in place. On device 'cuda' it is a slot of the model's pool in
 * GPU memory (allocated at the sequence's first call, freed by dispose() or with the model), so
 * decode steps copy no state between host and device; only `snapshotAsync()` / `restoreAsync()`
 * copy it, this sequence's alone. The synchronous `snapshot()` / `restore()` (and `state`) work on
 * CPU sequences only; the async forms work on both.
 *
 * @example
 *   const seq = model.newSequence();
 *   await model.prefill([{ sequence: seq, tokens: ids }]);
 *   const saved = await seq.snapshotAsync();   // Buffer (any device; seq.snapshot() on the CPU only)
 *   const other = model.newSequence();
 *   await other.restoreAsync(saved);           // continues exactly where seq was
 */
import { SimbaError } from '../errors';
import * as v from '../validate';

/**
 * Snapshot layout (little-endian u32 words): magic "SMBS", format version, the model's state
 * fingerprint, the float count, the position (low and high words), a checksum of the header words
 * before it and of the state, and a reserved word; then the state's floats. The checksum makes a
 * snapshot damaged in storage or in transit (a Redis tier, a file) an error on restore instead of a
 * state that decodes NaN.
 */
const MAGIC = 0x53424d53; // "SMBS"
const VERSION = 2;
const HEADER_WORDS = 8;
const HEADER_BYTES = HEADER_WORDS * 4;
const H = { magic: 0, version: 1, fingerprint: 2, floats: 3, posLo: 4, posHi: 5, checksum: 6, reserved: 7 } as const;

/** @internal How a device sequence reaches its model's state slots (MambaModel on device 'cuda'). */
export interface SlotStore {
  /** A zeroed slot. */
  alloc(): Promise<number>;
  /** Frees a slot (in the background; nothing when the model is gone, its pool with it). */
  free(slot: number): void;
  /** Copies one slot to / from the host (src null: zeros). */
  read(slot: number, out: Float32Array, what: string): Promise<void>;
  write(slot: number, src: Float32Array | null, what: string): Promise<void>;
}

/** @internal host state arrays kept by the model for reuse (MambaModel's pool). */
export interface StatePool {
  give(state: Float32Array): void;
}

export class Sequence {
  #position = 0;
  #busy = false;
  /** Floats in the state (the model's stateBytes / 4). */
  readonly stateFloats: number;
  private disposed = false;
  private recycled = false;
  private readonly host: Float32Array | null;
  /** @internal the model's slot pool (device 'cuda'), null for a host state */
  readonly slots: SlotStore | null;
  private slot: number | null = null;

  /** @internal created by MambaModel.newSequence(): a host state, or (device) null and the model's slots */
  constructor(
    state: Float32Array | null,
    private readonly fingerprint: number,
    device?: { floats: number; slots: SlotStore },
    private readonly pool: StatePool | null = null,
  ) {
    this.host = state;
    this.slots = state ? null : (device?.slots ?? null);
    this.stateFloats = state ? state.length : (device?.floats ?? 0);
    if (!state && !device) throw new SimbaError('E_ARG', 'Sequence: a host state or a device slot store is required');
  }

  /** Tokens consumed so far (prefill + decode); read-only (the model advances it, restore sets it). */
  get position(): number {
    return this.#position;
  }

  /** True while a native call uses the state; read-only. */
  get busy(): boolean {
    return this.#busy;
  }

  /** @internal the model has fed `n` more tokens to the state */
  advance(n: number): void {
    this.#position += n;
  }

  /** Where the state lives: 'cpu' (host memory, `state`) or 'cuda' (a device slot). */
  get device(): 'cpu' | 'cuda' {
    return this.host ? 'cpu' : 'cuda';
  }

  /**
   * The state itself (CPU sequences): the engine reads and updates it in place. A device sequence's
   * state lives on the GPU: this throws E_ARG there (read a copy with `await seq.snapshotAsync()`).
   */
  get state(): Float32Array {
    if (!this.host) throw this.onDevice('state', 'snapshotAsync()');
    if (this.recycled)
      throw new SimbaError('E_DISPOSED', 'state: the sequence has been recycled (its array now serves another one)');
    return this.host;
  }

  /** @internal marks the sequence in use by a native call; concurrent calls are rejected. */
  acquire(what: string): void {
    if (this.disposed) throw new SimbaError('E_DISPOSED', `${what}: the sequence has been disposed`);
    if (this.#busy) throw new SimbaError('E_BUSY', `${what}: the sequence is already in use by another call (await it first)`);
    this.#busy = true;
  }

  /** @internal */
  release(): void {
    this.#busy = false;
    if (this.disposed) this.freeSlot();
  }

  /** @internal (device, while acquired) this sequence's slot, allocated (zeroed) on first use. */
  async deviceSlot(): Promise<number> {
    if (!this.slots) throw new SimbaError('E_NATIVE', 'deviceSlot: a CPU sequence has no device slot');
    if (this.slot === null) this.slot = await this.slots.alloc();
    return this.slot;
  }

  /** Clears the state (back to an empty context). On a device, the slot is given back; the next call takes a zeroed one. */
  reset(): void {
    this.acquire('reset');
    if (this.host) this.host.fill(0);
    else this.freeSlot();
    this.#position = 0;
    this.release();
  }

  /** A copy of the state with a header tying it to this model's shape (CPU sequences; any device: snapshotAsync). */
  snapshot(): Buffer {
    if (!this.host) throw this.onDevice('snapshot', 'snapshotAsync()');
    this.acquire('snapshot');
    try {
      return this.pack(this.host);
    } finally {
      this.release();
    }
  }

  /** Restores a snapshot taken from a sequence of a model with the same shape (CPU sequences; any device: restoreAsync). */
  restore(buf: Uint8Array): void {
    if (!this.host) throw this.onDevice('restore', 'restoreAsync(buf)');
    checkSnapshotType(buf, 'restore');
    this.acquire('restore');
    try {
      const { floats, position } = this.unpack(buf, 'restore');
      this.host.set(floats);
      this.#position = position;
    } finally {
      this.release();
    }
  }

  /**
   * snapshot() on any device: a copy of the state with a header tying it to this model's shape.
   * A device sequence copies its own slot only (stateBytes) to the host.
   * @example
   *   const saved = await seq.snapshotAsync();
   *   await model.decode([seq], [7]);
   *   await seq.restoreAsync(saved);   // back to where it was, position included
   */
  async snapshotAsync(): Promise<Buffer> {
    if (this.host) return this.snapshot();
    this.acquire('snapshotAsync');
    try {
      const floats = new Float32Array(this.stateFloats);
      if (this.slot !== null) await this.slots!.read(this.slot, floats, 'snapshotAsync');
      return this.pack(floats);
    } finally {
      this.release();
    }
  }

  /**
   * restore() on any device: the state and position of a snapshot (from snapshot() or snapshotAsync()
   * of a sequence of a model with the same shape, on any device). A device sequence writes its own slot only.
   * @example
   *   const copy = model.newSequence();
   *   await copy.restoreAsync(await seq.snapshotAsync());
   */
  async restoreAsync(buf: Uint8Array): Promise<void> {
    if (this.host) return this.restore(buf);
    checkSnapshotType(buf, 'restoreAsync');
    this.acquire('restoreAsync');
    try {
      const { floats, position } = this.unpack(buf, 'restoreAsync');
      await this.slots!.write(await this.deviceSlot(), floats, 'restoreAsync');
      this.#position = position;
    } finally {
      this.release();
    }
  }

  /** Marks the sequence unusable (a device sequence's slot is freed, once no call uses it). */
  dispose(): void {
    this.disposed = true;
    if (!this.#busy) this.freeSlot();
  }

  /**
   * Disposes the sequence and hands its state array back to the model, which reuses it (zeroed) for a
   * later newSequence(): a new sequence then costs no allocation and no page faults (2.8 MB for the
   * 130m shape; allocating 32 fresh ones cost about 250 ms on a 2-core machine). Use it only when
   * nothing else holds `seq.state`: the array will serve another sequence. A device sequence frees
   * its slot, as dispose() does. The server's scheduler recycles the sequences it creates.
   * @example
   *   const seq = model.newSequence();
   *   await model.prefill([{ sequence: seq, tokens: ids }]);
   *   seq.recycle();                     // the next model.newSequence() reuses its memory
   */
  recycle(): void {
    if (this.disposed) return;
    if (this.#busy) throw new SimbaError('E_BUSY', 'recycle: the sequence is in use by a native call (await it first)');
    this.dispose();
    if (this.host && this.pool) {
      this.recycled = true;
      this.pool.give(this.host);
    }
  }

  private freeSlot(): void {
    if (this.slot === null) return;
    const s = this.slot;
    this.slot = null;
    this.slots!.free(s);
  }

  private onDevice(what: string, instead: string): SimbaError {
    return new SimbaError(
      'E_ARG',
      `${what}: this sequence's state lives on the GPU (device 'cuda'); use await seq.${instead} instead`,
    );
  }

  private pack(state: Float32Array): Buffer {
    const buf = Buffer.alloc(HEADER_BYTES + state.byteLength);
    const head = new Uint32Array(HEADER_WORDS);
    head[H.magic] = MAGIC;
    head[H.version] = VERSION;
    head[H.fingerprint] = this.fingerprint;
    head[H.floats] = state.length;
    head[H.posLo] = this.#position >>> 0;
    head[H.posHi] = Math.floor(this.#position / 2 ** 32);
    head[H.checksum] = snapshotChecksum(head, new Uint32Array(state.buffer, state.byteOffset, state.length));
    head.forEach((w, i) => buf.writeUInt32LE(w, 4 * i));
    Buffer.from(state.buffer, state.byteOffset, state.byteLength).copy(buf, HEADER_BYTES);
    return buf;
  }

  /** The state and position of a snapshot, after checking its header, its length and its checksum (E_ARG). */
  private unpack(buf: Uint8Array, what: string): { floats: Float32Array; position: number } {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length < 8 || b.readUInt32LE(0) !== MAGIC)
      throw new SimbaError('E_ARG', `${what}: not a simba-ssm sequence snapshot (no SMBS header)`);
    const version = b.readUInt32LE(4);
    if (version !== VERSION)
      throw new SimbaError(
        'E_ARG',
        `${what}: snapshot format version ${version} is not supported (this simba-ssm reads version ${VERSION}; ` +
          'snapshots taken before version 2 have no checksum: take them again)',
      );
    if (b.length < HEADER_BYTES)
      throw new SimbaError(
        'E_ARG',
        `${what}: snapshot truncated (${b.length} bytes, shorter than its ${HEADER_BYTES}-byte header)`,
      );
    const head = Uint32Array.from({ length: HEADER_WORDS }, (_, i) => b.readUInt32LE(4 * i));
    if (head[H.fingerprint] !== this.fingerprint || head[H.floats] !== this.stateFloats)
      throw new SimbaError(
        'E_ARG',
        `${what}: the snapshot was taken from a model of another shape or family (${head[H.floats]} state floats, ` +
          `this model's state has ${this.stateFloats})`,
      );
    const expected = HEADER_BYTES + this.stateFloats * 4;
    if (b.length !== expected)
      throw new SimbaError(
        'E_ARG',
        `${what}: snapshot ${b.length < expected ? 'truncated' : 'too long'} (${b.length} bytes, expected ${expected})`,
      );
    const floats = new Float32Array(this.stateFloats);
    Buffer.from(floats.buffer).set(b.subarray(HEADER_BYTES));
    const sum = snapshotChecksum(head, new Uint32Array(floats.buffer));
    if (sum !== head[H.checksum])
      throw new SimbaError(
        'E_ARG',
        `${what}: the snapshot is corrupt (checksum ${hex(head[H.checksum])} stored, ${hex(sum)} computed): ` +
          'its header or state was changed after it was taken',
      );
    return { floats, position: head[H.posLo] + head[H.posHi] * 2 ** 32 };
  }
}

/** The position (tokens seen) a snapshot's header records; -1 when `buf` is no snapshot of this format. */
export function snapshotPosition(buf: Uint8Array): number {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER_BYTES || b.readUInt32LE(0) !== MAGIC || b.readUInt32LE(4) !== VERSION) return -1;
  return b.readUInt32LE(4 * H.posLo) + b.readUInt32LE(4 * H.posHi) * 2 ** 32;
}

const hex = (x: number) => `0x${x.toString(16).padStart(8, '0')}`;

/**
 * The checksum of a snapshot: the header words before the checksum, then the state's words, through
 * four interleaved 32-bit FNV-1a-style lanes (xor a word, multiply by the FNV prime: a bijection, so
 * any one changed word changes the result), folded together: a 25 MB state (mamba-2.8b) in about 3 ms.
 */
export function snapshotChecksum(head: Uint32Array, body: Uint32Array): number {
  const P = 0x01000193;
  let a = 0x811c9dc5,
    b = 0x050c5d1f,
    c = 0x1b873593,
    d = 0x2c1b3c6d;
  for (let i = 0; i < H.checksum; i++) a = Math.imul(a ^ head[i], P);
  const n = body.length,
    n4 = n - (n % 4);
  let i = 0;
  for (; i < n4; i += 4) {
    a = Math.imul(a ^ body[i], P);
    b = Math.imul(b ^ body[i + 1], P);
    c = Math.imul(c ^ body[i + 2], P);
    d = Math.imul(d ^ body[i + 3], P);
  }
  for (; i < n; i++) a = Math.imul(a ^ body[i], P);
  let h = Math.imul(a ^ (n >>> 0), P);
  h = Math.imul(h ^ b, P);
  h = Math.imul(h ^ c, P);
  h = Math.imul(h ^ d, P);
  h ^= h >>> 15;
  return h >>> 0;
}

function checkSnapshotType(buf: unknown, what: string): asserts buf is Uint8Array {
  if (!(buf instanceof Uint8Array))
    throw v.argError(what, `the snapshot must be a Buffer or Uint8Array (from snapshot()), got ${v.describeType(buf)}`);
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
