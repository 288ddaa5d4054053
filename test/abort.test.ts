/**
 * Abort and dispose semantics. An aborted prefill or decode rejects with E_ABORTED (the signal's
 * reason as `cause`) even while its native call runs, and leaves the sequence exactly as before the
 * call: continuing it gives bitwise the logits of a sequence that never saw the aborted call. The
 * abort also stops the native work itself (at its next layer), so the engine is free for the next call.
 * dispose() during a chunked prefill rejects it with E_DISPOSED (never E_NATIVE) and leaves its
 * sequence as before; a prefill that is one native call finishes normally.
 */
import * as path from 'path';

import { loadModel, randomModel } from '../lib/engine/load';
import { MAX_CHUNK_TOKENS, type MambaModel } from '../lib/engine/model';
import type { Sequence } from '../lib/engine/sequence';
import { SimbaError } from '../lib/errors';
import { randomConfig } from './reference/random_model';
import { randTokens, rejection } from './helpers/util';

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const sameBits = (a: Float32Array, b: Float32Array) => a.length === b.length && bytes(a).equals(bytes(b));

/** Aborts `ac` once the native call has started (the next turn of the event loop). */
function abortSoon(ac: AbortController, reason: unknown): void {
  setImmediate(() => ac.abort(reason));
}

describe('abort', () => {
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(SHIPPED);
  });
  afterAll(() => m.dispose());

  const prefix = randTokens(40, 4096, 1),
    prompt = randTokens(3000, 4096, 2),
    next = randTokens(5, 4096, 3);

  /** A sequence after `prefix`, and its state and position. */
  async function started(): Promise<{ seq: Sequence; state: Float32Array; position: number }> {
    const [r] = await m.prefill([{ tokens: prefix }], { logits: 'none' });
    return { seq: r.sequence, state: r.sequence.state.slice(), position: r.sequence.position };
  }

  test('a single-chunk prefill aborted mid-way rejects E_ABORTED and the sequence continues exactly', async () => {
    const ref = await started(),
      hit = await started();
    const ac = new AbortController(),
      reason = new Error('user pressed stop');
    const call = m.prefill([{ sequence: hit.seq, tokens: prompt }], { logits: 'all', signal: ac.signal });
    abortSoon(ac, reason);
    const e = await rejection(call);
    expect(e.code).toBe('E_ABORTED');
    expect(e.cause).toBe(reason);
    // left exactly as before the call
    expect(hit.seq.position).toBe(hit.position);
    expect(sameBits(hit.seq.state, hit.state)).toBe(true);
    expect(hit.seq.busy).toBe(false);
    // continues bitwise like the sequence that never saw the aborted call
    const [a] = await m.prefill([{ sequence: ref.seq, tokens: next }], { logits: 'all' });
    const [b] = await m.prefill([{ sequence: hit.seq, tokens: next }], { logits: 'all' });
    expect(a.logits.length).toBe(next.length);
    a.logits.forEach((row, i) => expect(sameBits(b.logits[i], row)).toBe(true));
    expect(sameBits(hit.seq.state, ref.seq.state)).toBe(true);
    expect(hit.seq.position).toBe(ref.seq.position);
  });

  test('the native call of an aborted prefill stops in the background without touching the sequence', async () => {
    const hit = await started();
    const ac = new AbortController();
    const call = m.prefill([{ sequence: hit.seq, tokens: prompt }], { signal: ac.signal });
    abortSoon(ac, 'stop');
    expect((await rejection(call)).cause).toBe('stop');
    // the model serialises native calls: this one runs after the abandoned one has stopped
    await m.prefill([{ tokens: [1] }]);
    expect(sameBits(hit.seq.state, hit.state)).toBe(true);
  });

  test('an aborted decode rejects E_ABORTED and leaves the sequence as it was', async () => {
    const ref = await started(),
      hit = await started();
    const ac = new AbortController();
    const call = m.decode([hit.seq], [7], { signal: ac.signal });
    ac.abort('now'); // after the native call was queued
    const e = await rejection(call);
    expect([e.code, e.cause]).toEqual(['E_ABORTED', 'now']);
    expect(hit.seq.position).toBe(hit.position);
    expect(sameBits(hit.seq.state, hit.state)).toBe(true);
    const [a] = await m.decode([ref.seq], [9]);
    const [b] = await m.decode([hit.seq], [9]);
    expect(sameBits(b, a)).toBe(true);
  });

  test('a signal that never fires changes nothing (bitwise)', async () => {
    const ref = await started(),
      hit = await started();
    const ac = new AbortController();
    const [a] = await m.prefill([{ sequence: ref.seq, tokens: next }], { logits: 'all' });
    const [b] = await m.prefill([{ sequence: hit.seq, tokens: next }], { logits: 'all', signal: ac.signal });
    a.logits.forEach((row, i) => expect(sameBits(b.logits[i], row)).toBe(true));
    const [da] = await m.decode([ref.seq], [3]);
    const [db] = await m.decode([hit.seq], [3], { signal: ac.signal });
    expect(sameBits(db, da)).toBe(true);
    expect(sameBits(hit.seq.state, ref.seq.state)).toBe(true);
  });

  test('an already aborted signal rejects before any work', async () => {
    const hit = await started();
    const reason = { why: 'early' };
    const e = await rejection(m.prefill([{ sequence: hit.seq, tokens: next }], { signal: AbortSignal.abort(reason) }));
    expect([e.code, e.cause]).toEqual(['E_ABORTED', reason]);
    expect(hit.seq.position).toBe(hit.position);
  });
});

describe('chunked prefill (more than MAX_CHUNK_TOKENS)', () => {
  const cfg = randomConfig({ dModel: 64, nLayer: 4, vocabSize: 256 });
  const long = randTokens(2 * MAX_CHUNK_TOKENS + 100, cfg.vocabSize, 4);
  const prefix = randTokens(30, cfg.vocabSize, 5);

  test.each([0, 1, 5, 20, 60])('aborted after %i ms: rejected with the state untouched, or completed', async (ms) => {
    const m = await randomModel(cfg, { seed: 3 });
    try {
      const [p] = await m.prefill([{ tokens: prefix }], { logits: 'none' });
      const seq = p.sequence,
        before = seq.state.slice(),
        pos = seq.position;
      const ac = new AbortController();
      const call = m.prefill([{ sequence: seq, tokens: long }], { logits: 'last', signal: ac.signal });
      setTimeout(() => ac.abort('late'), ms);
      let res;
      try {
        res = await call;
      } catch (e) {
        expect(e).toBeInstanceOf(SimbaError);
        expect([(e as SimbaError).code, (e as SimbaError).cause]).toEqual(['E_ABORTED', 'late']);
      }
      if (res) {
        expect(seq.position).toBe(pos + long.length);
      } else {
        expect(seq.position).toBe(pos);
        expect(sameBits(seq.state, before)).toBe(true);
      }
    } finally {
      m.dispose();
    }
  });

  test('an abort between chunks restores the original state: it then continues bitwise like a fresh run', async () => {
    const m = await randomModel(cfg, { seed: 3 });
    try {
      const [p] = await m.prefill([{ tokens: prefix }], { logits: 'none' });
      const [q] = await m.prefill([{ tokens: prefix }], { logits: 'none' });
      const ac = new AbortController();
      const call = m.prefill([{ sequence: p.sequence, tokens: long }], { signal: ac.signal });
      abortSoon(ac, 'x');
      expect((await rejection(call)).code).toBe('E_ABORTED');
      const [a] = await m.prefill([{ sequence: p.sequence, tokens: long }], { logits: [0, long.length - 1] });
      const [b] = await m.prefill([{ sequence: q.sequence, tokens: long }], { logits: [0, long.length - 1] });
      a.logits.forEach((row, i) => expect(sameBits(row, b.logits[i])).toBe(true));
      expect(a.relFlops).toBe(1);
    } finally {
      m.dispose();
    }
  });

  test('dispose() during a chunked prefill rejects it with E_DISPOSED and leaves its sequence as before', async () => {
    const m = await randomModel(cfg, { seed: 3 });
    const [p] = await m.prefill([{ tokens: prefix }], { logits: 'none' });
    const seq = p.sequence,
      before = seq.state.slice(),
      pos = seq.position;
    const call = m.prefill([{ sequence: seq, tokens: long }]);
    setImmediate(() => m.dispose());
    const e = await rejection(call);
    expect(e.code).toBe('E_DISPOSED');
    expect(e.message).toMatch(/disposed during a chunked prefill/);
    expect(seq.position).toBe(pos);
    expect(sameBits(seq.state, before)).toBe(true);
    expect(seq.busy).toBe(false);
    expect((await rejection(m.prefill([{ tokens: [1] }]))).code).toBe('E_DISPOSED');
  });

  test('dispose() during a single-call prefill lets it finish (it resolves)', async () => {
    const m = await randomModel(cfg, { seed: 3 });
    const call = m.prefill([{ tokens: long.slice(0, MAX_CHUNK_TOKENS) }]);
    m.dispose();
    const [r] = await call;
    expect(r.sequence.position).toBe(MAX_CHUNK_TOKENS);
    expect(r.logits[0].every(Number.isFinite)).toBe(true);
  });
});

describe('an abort stops the native work', () => {
  // 16 layers: the native forward checks its cancel flag between layers, so an abort frees the
  // engine within about 1/16 of a long prefill.
  const cfg = randomConfig({ dModel: 128, nLayer: 16, vocabSize: 256 });
  const long = randTokens(MAX_CHUNK_TOKENS, cfg.vocabSize, 6);

  test('after four aborted long prefills, a 2-token prefill does not wait for their native work', async () => {
    const m = await randomModel(cfg, { seed: 1 });
    try {
      await m.prefill([{ tokens: [1, 2] }]);
      let t0 = performance.now();
      await m.prefill([{ tokens: long }], { logits: 'none' }); // one native call
      const full = performance.now() - t0;
      const acs = Array.from({ length: 4 }, () => new AbortController());
      const calls = acs.map((ac) => m.prefill([{ tokens: long }], { logits: 'none', signal: ac.signal }));
      await new Promise((res) => setTimeout(res, Math.min(50, full / 8))); // the first is running, three wait
      for (const ac of acs) ac.abort('stop');
      for (const c of calls) {
        const e = await rejection(c);
        expect([e.code, e.cause]).toEqual(['E_ABORTED', 'stop']);
      }
      t0 = performance.now();
      const [r] = await m.prefill([{ tokens: [1, 2] }]);
      const small = performance.now() - t0;
      expect(r.logits[0].every(Number.isFinite)).toBe(true);
      // Without cancellation it waits for the running prefill and the three queued ones (~3-4x full).
      expect(small).toBeLessThan(full / 2);
    } finally {
      m.dispose();
    }
  });

  test('an aborted generation step (decode with native sampling) stops too, and the model stays usable', async () => {
    const m = await randomModel(cfg, { seed: 1 });
    try {
      const seq = m.newSequence();
      const ac = new AbortController();
      const call = m.step([{ sequence: seq, tokens: long, sample: [{ temperature: 0, rng: { lo: 1, hi: 0 } }] }], {
        signal: ac.signal,
      });
      setImmediate(() => ac.abort('bye'));
      const e = await rejection(call);
      expect([e.code, e.cause]).toEqual(['E_ABORTED', 'bye']);
      expect(seq.position).toBe(0);
      expect(seq.state.every((x) => x === 0)).toBe(true);
      const r = await m.step([{ sequence: seq, tokens: [1, 2, 3], sample: [{ temperature: 0, rng: { lo: 1, hi: 0 } }] }]);
      expect(r.samples[0][0].token).toBeGreaterThanOrEqual(0);
    } finally {
      m.dispose();
    }
  });
});
