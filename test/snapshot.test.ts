/**
 * Sequence snapshots carry a versioned header and a checksum: a snapshot damaged after it was taken
 * (a byte, the whole body, the position), truncated, extended, from another model or of an older
 * format is an E_ARG on restore, never a state that decodes NaN. A sequence's position and busy flag
 * are read-only from outside.
 */
import { randomModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import { snapshotChecksum, type Sequence } from '../lib/engine/sequence';
import { randomConfig } from './reference/random_model';
import { expectArgError, randTokens } from './helpers/util';

const HEADER = 32;

const refused = expectArgError;

describe('snapshots', () => {
  const cfg = randomConfig({ dModel: 32, nLayer: 3, vocabSize: 128 });
  let m: MambaModel, seq: Sequence, snap: Buffer;
  const ids = randTokens(20, cfg.vocabSize, 1);
  beforeAll(async () => {
    m = await randomModel(cfg, { seed: 2 });
    [{ sequence: seq }] = await m.prefill([{ tokens: ids }], { logits: 'none' });
    snap = seq.snapshot();
  });
  afterAll(() => m.dispose());

  test('a snapshot restores exactly (state, position) and continues like the original', async () => {
    expect(snap.length).toBe(HEADER + m.info().stateBytes);
    expect(snap.readUInt32LE(4)).toBe(2); // format version
    const copy = m.newSequence();
    copy.restore(snap);
    expect(copy.position).toBe(20);
    const [a] = await m.decode([seq], [5]);
    const [b] = await m.decode([copy], [5]);
    expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(
      true,
    );
    seq.restore(snap); // back to where it was
    expect(seq.position).toBe(20);
  });

  test('a body overwritten with 0xff is refused (it used to restore, then decode NaN)', async () => {
    const bad = Buffer.from(snap);
    bad.fill(0xff, HEADER);
    const s = m.newSequence();
    refused(() => s.restore(bad), /^restore: the snapshot is corrupt \(checksum 0x[0-9a-f]{8} stored, 0x[0-9a-f]{8} computed\)/);
    await expect(s.restoreAsync(bad)).rejects.toThrow(/restore: the snapshot is corrupt/);
    expect(s.position).toBe(0);
    expect(s.state.every((x) => x === 0)).toBe(true);
  });

  test.each([HEADER, HEADER + 1, 1000, -1])('one changed byte at offset %i is refused', (at) => {
    const bad = Buffer.from(snap);
    const i = at < 0 ? bad.length + at : at;
    bad[i] ^= 0x01;
    refused(() => m.newSequence().restore(bad), /the snapshot is corrupt/);
  });

  test('a changed position in the header is refused', () => {
    const bad = Buffer.from(snap);
    bad.writeUInt32LE(21, 16);
    refused(() => m.newSequence().restore(bad), /the snapshot is corrupt/);
  });

  test('truncated or extended snapshots are refused', () => {
    refused(() => m.newSequence().restore(snap.subarray(0, snap.length - 4)), /snapshot truncated \(\d+ bytes, expected \d+\)/);
    refused(
      () => m.newSequence().restore(snap.subarray(0, 20)),
      /snapshot truncated \(20 bytes, shorter than its 32-byte header\)/,
    );
    refused(() => m.newSequence().restore(Buffer.concat([snap, Buffer.alloc(4)])), /snapshot too long/);
    refused(() => m.newSequence().restore(snap.subarray(0, 3)), /not a simba-ssm sequence snapshot/);
  });

  test("another model's snapshot is refused", async () => {
    const other = await randomModel(randomConfig({ dModel: 48, nLayer: 3, vocabSize: 128 }));
    try {
      refused(() => m.newSequence().restore(other.newSequence().snapshot()), /taken from a model of another shape/);
      refused(() => other.newSequence().restore(snap), /taken from a model of another shape/);
    } finally {
      other.dispose();
    }
  });

  test('a Mamba-1 snapshot does not restore into a Falcon-Mamba model of the same shape, nor back', async () => {
    const falcon = await randomModel({ ...cfg, mixerRmsEps: 1e-6 });
    try {
      refused(() => falcon.newSequence().restore(snap), /taken from a model of another shape/);
      refused(() => m.newSequence().restore(falcon.newSequence().snapshot()), /taken from a model of another shape/);
      const f = falcon.newSequence();
      f.restore(falcon.newSequence().snapshot()); // its own family restores
    } finally {
      falcon.dispose();
    }
  });

  test('a snapshot of the old format (no version, no checksum) is refused with the reason', () => {
    const old = Buffer.alloc(16 + m.info().stateBytes);
    old.writeUInt32LE(0x53424d53, 0);
    old.writeUInt32LE(snap.readUInt32LE(8), 4); // v1: the fingerprint where the version is now
    refused(() => m.newSequence().restore(old), /snapshot format version \d+ is not supported .*take them again/);
  });

  test('the checksum sees any one changed word, in every lane and in the tail', () => {
    const body = Uint32Array.from({ length: 11 }, (_, i) => i * 2654435761);
    const head = Uint32Array.of(1, 2, 3, 4, 5, 6, 0, 0);
    const ref = snapshotChecksum(head, body);
    for (let i = 0; i < body.length; i++) {
      const b = body.slice();
      b[i] ^= 0x80000000;
      expect(snapshotChecksum(head, b)).not.toBe(ref);
    }
    for (let i = 0; i < 6; i++) {
      const h = head.slice();
      h[i] ^= 1;
      expect(snapshotChecksum(h, body)).not.toBe(ref);
    }
    expect(snapshotChecksum(head, body.subarray(0, 10))).not.toBe(ref);
  });

  test('position and busy cannot be written from outside', () => {
    const s = m.newSequence();
    s.restore(snap);
    expect(() => {
      // @ts-expect-error position is read-only
      s.position = 5;
    }).toThrow(TypeError);
    expect(() => {
      // @ts-expect-error busy is read-only
      s.busy = true;
    }).toThrow(TypeError);
    expect([s.position, s.busy]).toEqual([20, false]);
    // the model itself still advances them
    const p = m.decode([s], [1]);
    expect(s.busy).toBe(true);
    return p.then(() => expect([s.position, s.busy]).toEqual([21, false]));
  });
});
