/**
 * The CPU thread pool (native/cpu/threadpool.h): a job completes without a worker that the OS does
 * not schedule (its chunks are taken over, not waited for), fixed ranges keep their ids whichever
 * thread runs them, and the model's results are the same bits for 1, 2, 3 and 4 threads (a child
 * process per SIMBA_THREADS value). None of it depends on timing.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

import { loadAddon } from '../bindings';

const addon = loadAddon();

/** The range of item i when `items` are cut into `n` contiguous ranges, the first items % n one longer. */
function fixedRange(i: number, items: number, n: number): number {
  const q = Math.floor(items / n),
    r = items % n;
  return i < r * (q + 1) ? Math.floor(i / (q + 1)) : r + Math.floor((i - r * (q + 1)) / q);
}

describe('thread pool', () => {
  const sizes = [1, 2, 3, 5, 10, 100, 1000];

  test.each([1, 2, 3, 4])('fixed split, %i threads: item i gets its range id whichever thread runs it', (threads) => {
    for (const items of sizes) {
      const { ids, runs } = addon.kernels.poolCheck({ threads, items, dynamic: false, hold: false });
      expect(runs.every((k) => k === 4)).toBe(true);
      const n = Math.min(items, threads);
      expect(Array.from(ids)).toEqual(Array.from({ length: items }, (_, i) => fixedRange(i, items, n)));
    }
  });

  test.each([1, 2, 3, 4])('dynamic split, %i threads: every item runs once, on a thread of the pool', (threads) => {
    for (const items of sizes) {
      const { ids, runs } = addon.kernels.poolCheck({ threads, items, dynamic: true, hold: false });
      expect(ids.every((id) => id >= 0 && id < threads)).toBe(true);
      expect(runs.every((n) => n === 4)).toBe(true);
    }
  });

  test.each([
    [2, false],
    [2, true],
    [3, false],
    [4, true],
  ])('%i threads (dynamic %s): a job returns while a worker is held before its first chunk', (threads, dynamic) => {
    // The old pool gave each worker its range and waited for all: the held worker's range (or its
    // "done") kept the job until the hold ended (5 s), so returnedWhileHeld was false.
    for (const items of [threads, 64]) {
      const r = addon.kernels.poolCheck({ threads, items, dynamic, hold: true });
      expect(r.returnedWhileHeld).toBe(true);
      expect(r.runs.every((k) => k === 4)).toBe(true);
      if (!dynamic) {
        const n = Math.min(items, threads);
        expect(Array.from(r.ids)).toEqual(Array.from({ length: items }, (_, i) => fixedRange(i, items, n)));
      } else {
        expect(r.ids.every((id) => id >= 0 && id < threads)).toBe(true);
      }
    }
  });

  test('poolCheck refuses a bad thread count with E_ARG', () => {
    expect(() => addon.kernels.poolCheck({ threads: 0, items: 4, dynamic: true, hold: false })).toThrow(
      expect.objectContaining({ code: 'E_ARG' }),
    );
  });
});

describe('results do not depend on the thread count', () => {
  // A model big enough that GEMMs, conv, scan and norms run on every thread (prefill of 2 prompts,
  // decode B=1 with >= 128 KB weights, and B=8 split by sequence), hashed per SIMBA_THREADS.
  const script = `
    const crypto = require('crypto');
    const { randomModel } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'lib', 'index.js'))});
    (async () => {
      const m = await randomModel({ vocabSize: 512, dModel: 256, nLayer: 2, dInner: 512, dState: 16, dtRank: 16,
        dConv: 4, convBias: true, projBias: false, eps: 1e-5, tieEmbeddings: true, bosTokenId: 0, eosTokenId: 0,
        padTokenId: null }, { seed: 7 });
      const h = crypto.createHash('sha256');
      const add = (a) => h.update(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
      const tok = (n, s) => Array.from({ length: n }, (_, i) => (i * 31 + s * 17) % 512);
      const pre = await m.prefill([{ tokens: tok(300, 1) }, { tokens: tok(170, 2) }], { logits: 'all' });
      for (const r of pre) r.logits.forEach(add);
      const seqs = [];
      for (let i = 0; i < 8; i++) seqs.push((await m.prefill([{ tokens: tok(5 + i, i) }], { logits: 'none' }))[0].sequence);
      for (let step = 0; step < 3; step++) {
        (await m.decode(seqs, seqs.map((_, i) => (step * 7 + i) % 512))).forEach(add);
        (await m.decode([seqs[0]], [step + 1])).forEach(add);
      }
      m.dispose();
      console.log(h.digest('hex'));
    })().catch((e) => { console.error(e); process.exit(1); });`;

  test('prefill and decode logits are the same bits for SIMBA_THREADS = 1, 2, 3, 4', () => {
    const hashes = [1, 2, 3, 4].map((t) =>
      execFileSync(process.execPath, ['-e', script], {
        env: { ...process.env, SIMBA_THREADS: String(t) },
        timeout: 60_000,
      })
        .toString()
        .trim(),
    );
    expect(hashes[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(hashes).toEqual([hashes[0], hashes[0], hashes[0], hashes[0]]);
  }, 120_000);
});
