/**
 * The whole model against the float64 reference (test/reference/mamba_ref.ts): the shipped
 * brown-mamba-s and random-weight configs covering the shape options, f32 and bf16 weight storage;
 * then the sequence semantics (prefill + decode, batching, snapshots, chunking).
 */
import * as path from 'path';

import { loadModel, tensorTable } from '../lib/engine/load';
import { MAX_CHUNK_TOKENS, type MambaModel } from '../lib/engine/model';
import { loadWeights } from '../lib/checkpoint/weights';
import { loadConfig } from '../lib/checkpoint/config';
import type { EngineTensor, MambaConfig } from '../lib/types';
import { refForward, refWeightsFromEngineTensors, type RefWeights } from './reference/mamba_ref';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { maxRowErr, randTokens, relErr, writeCheckpoint } from './helpers/util';

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');

describe('shipped brown-mamba-s', () => {
  let model: MambaModel;
  let ref: RefWeights;
  let cfg: MambaConfig;
  beforeAll(async () => {
    model = await loadModel(SHIPPED);
    cfg = loadConfig(SHIPPED);
    ref = refWeightsFromEngineTensors(cfg, [...loadWeights(SHIPPED, cfg, tensorTable(cfg))]);
  });
  afterAll(() => model.dispose());

  test('logits at every position match float64 (<= 1e-5 per position)', async () => {
    const ids = model.tokenizer!.encode(
      'The Fulton County Grand Jury said Friday an investigation of recent primary elections produced no evidence.',
    );
    const { logits } = await model.logits(ids, 'all');
    const r = refForward(cfg, ref, ids);
    expect(logits).toHaveLength(ids.length);
    expect(maxRowErr(logits, r.logits)).toBeLessThan(1e-5);
  });

  test('a decode step of many sequences (conv and scan split it by sequence) matches float64', async () => {
    // 6 sequences: at least two per thread, so the conv and scan give each thread whole sequences
    const prompts = [1, 4, 9, 2, 13, 6].map((n, i) => randTokens(n, cfg.vocabSize, 20 + i));
    const seqs = (
      await model.prefill(
        prompts.map((tokens) => ({ tokens })),
        { logits: 'none' },
      )
    ).map((r) => r.sequence);
    const steps = [
      [5, 8, 13, 21, 34, 55],
      [89, 144, 233, 377, 610, 987],
    ];
    let batched: Float32Array[] = [];
    for (const ids of steps) batched = await model.decode(seqs, ids);
    for (let i = 0; i < prompts.length; i++) {
      const r = refForward(cfg, ref, [...prompts[i], steps[0][i], steps[1][i]]);
      expect(maxRowErr([batched[i]], [r.logits[r.logits.length - 1]])).toBeLessThan(1e-5);
    }
    for (const q of seqs) q.dispose();
  });

  test('bf16 weight storage stays within 2e-2 of float64', async () => {
    const m16 = await loadModel(SHIPPED, { weights: 'bf16' });
    try {
      const ids = model.tokenizer!.encode('It was a cold morning in the city, and the men went to work.');
      const { logits } = await m16.logits(ids, 'all');
      const err = maxRowErr(logits, refForward(cfg, ref, ids).logits);
      expect(err).toBeLessThan(2e-2);
      expect(err).toBeGreaterThan(1e-5);
      expect(m16.info().weightBytes).toBeLessThan(model.info().weightBytes * 0.51);
    } finally {
      m16.dispose();
    }
  });
});

// Random-weight configs covering every shape option.
const variants: [string, Partial<MambaConfig>][] = [
  ['d_state 5', { dState: 5 }],
  ['odd d_model 23', { dModel: 23, dInner: 46, dtRank: 2 }],
  ['dt_rank 7 (not ceil(d/16))', { dModel: 32, dtRank: 7 }],
  ['conv kernel 2', { dConv: 2 }],
  ['conv kernel 3', { dConv: 3 }],
  ['untied head', { tieEmbeddings: false }],
  ['projection biases, no conv bias', { projBias: true, convBias: false }],
  ['d_state 16, 3 layers, expand 3', { dModel: 24, dInner: 72, nLayer: 3, dState: 16 }],
];

describe.each(variants)('random config: %s', (_name, over) => {
  const cfg = randomConfig({ vocabSize: 97, nLayer: 2, ...over });
  const tensors: EngineTensor[] = randomEngineTensors(cfg, 11);
  const ref = refWeightsFromEngineTensors(cfg, tensors);
  const dir = writeCheckpoint(cfg, tensors);
  const ids = randTokens(19, cfg.vocabSize, 5);
  const expected = refForward(cfg, ref, ids).logits;

  test('f32 logits match float64 (<= 1e-5 per position)', async () => {
    const m = await loadModel(dir);
    try {
      expect(maxRowErr((await m.logits(ids, 'all')).logits, expected)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  test('bf16 storage within 2e-2', async () => {
    const m = await loadModel(dir, { weights: 'bf16' });
    try {
      expect(maxRowErr((await m.logits(ids, 'all')).logits, expected)).toBeLessThan(2e-2);
    } finally {
      m.dispose();
    }
  });
});

test('bf16 and f16 checkpoints, and the state-spaces layout, load and match float64 of the stored values', async () => {
  const cfg = randomConfig({ vocabSize: 61, dModel: 16 });
  const tensors = randomEngineTensors(cfg, 3);
  const ids = randTokens(9, cfg.vocabSize, 8);
  for (const [layout, dtype] of [
    ['hf', 'BF16'],
    ['hf', 'F16'],
    ['state-spaces', 'F32'],
  ] as const) {
    const dir = writeCheckpoint(cfg, tensors, { layout, dtype });
    const m = await loadModel(dir);
    try {
      // The reference uses the values as stored (rounded to the checkpoint dtype).
      const stored = [...loadWeights(dir, loadConfig(dir), tensorTable(loadConfig(dir)))];
      const expected = refForward(loadConfig(dir), refWeightsFromEngineTensors(loadConfig(dir), stored), ids).logits;
      expect(maxRowErr((await m.logits(ids, 'all')).logits, expected)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  }
});

describe('sequences', () => {
  const cfg = randomConfig({ vocabSize: 101, dModel: 20, nLayer: 3, dState: 6 });
  const tensors = randomEngineTensors(cfg, 21);
  const dir = writeCheckpoint(cfg, tensors);
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(dir);
  });
  afterAll(() => m.dispose());

  test('prefill [0,n) then decode [n,m) gives the logits of prefill [0,m)', async () => {
    const ids = randTokens(30, cfg.vocabSize, 1);
    const full = (await m.logits(ids, 'all')).logits;
    const seq = m.newSequence();
    const [p] = await m.prefill([{ sequence: seq, tokens: ids.slice(0, 12) }]);
    expect(relErr(p.logits[0], full[11])).toBeLessThan(1e-5);
    for (let t = 12; t < 30; t++) {
      const [lg] = await m.decode([seq], [ids[t]]);
      expect(relErr(lg, full[t])).toBeLessThan(1e-5);
    }
    expect(seq.position).toBe(30);
  });

  test('a batch of prompts of different lengths gives what each prompt gives alone', async () => {
    const prompts = [randTokens(1, cfg.vocabSize, 2), randTokens(17, cfg.vocabSize, 3), randTokens(5, cfg.vocabSize, 4)];
    const batch = await m.prefill(
      prompts.map((tokens) => ({ tokens })),
      { logits: 'all' },
    );
    for (let i = 0; i < prompts.length; i++) {
      const alone = (await m.logits(prompts[i], 'all')).logits;
      expect(maxRowErr(batch[i].logits, alone)).toBeLessThan(1e-6);
    }
    // ... and a batched decode step equals single decodes.
    const next = [3, 7, 11];
    const batched = await m.decode(
      batch.map((b) => b.sequence),
      next,
    );
    for (let i = 0; i < prompts.length; i++) {
      const alone = (await m.logits([...prompts[i], next[i]], 'last')).logits[0];
      expect(relErr(batched[i], alone)).toBeLessThan(1e-5);
    }
  });

  test('a restored snapshot continues identically', async () => {
    const ids = randTokens(10, cfg.vocabSize, 9);
    const a = m.newSequence();
    await m.prefill([{ sequence: a, tokens: ids }]);
    const snap = a.snapshot();
    const b = m.newSequence();
    b.restore(snap);
    expect(b.position).toBe(10);
    const [la] = await m.decode([a], [5]);
    const [lb] = await m.decode([b], [5]);
    expect(Array.from(lb)).toEqual(Array.from(la));
    expect(() => b.restore(snap.subarray(0, 100))).toThrow(/truncated|another shape/);
    expect(() => b.restore(Buffer.from('garbage garbage garbage'))).toThrow(/not a simba-ssm sequence snapshot/);
  });

  test('a recycled sequence hands its zeroed state array to the next newSequence(), which runs as a fresh one', async () => {
    const ids = randTokens(8, cfg.vocabSize, 13);
    const a = m.newSequence();
    await m.prefill([{ sequence: a, tokens: ids }]);
    const arr = a.state;
    expect(arr.some((x) => x !== 0)).toBe(true);
    a.recycle();
    expect(() => a.state).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    await expect(m.decode([a], [1])).rejects.toMatchObject({ code: 'E_DISPOSED' });
    a.recycle(); // twice is harmless
    const b = m.newSequence();
    expect(b.state).toBe(arr); // the same memory, zeroed
    expect(arr.every((x) => x === 0)).toBe(true);
    expect(b.position).toBe(0);
    const [rb] = await m.prefill([{ sequence: b, tokens: ids }], { logits: 'all' });
    const fresh = (await m.logits(ids, 'all')).logits;
    expect(maxRowErr(rb.logits, fresh)).toBe(0);
    // a sequence in use by a native call cannot be recycled
    const c = m.newSequence();
    const running = m.prefill([{ sequence: c, tokens: ids }]);
    expect(() => c.recycle()).toThrow(expect.objectContaining({ code: 'E_BUSY' }));
    await running;
    // a disposed (not recycled) sequence keeps its array: the pool does not take it
    const d = m.newSequence();
    const dArr = d.state;
    d.dispose();
    expect(m.newSequence().state).not.toBe(dArr);
  });

  test(`prompts longer than ${MAX_CHUNK_TOKENS} tokens are chunked transparently`, async () => {
    const ids = randTokens(MAX_CHUNK_TOKENS + 300, cfg.vocabSize, 12);
    const [r] = await m.prefill([{ tokens: ids }], { logits: [5, MAX_CHUNK_TOKENS + 299] });
    const seq = m.newSequence();
    await m.prefill([{ sequence: seq, tokens: ids.slice(0, MAX_CHUNK_TOKENS + 299) }], { logits: 'none' });
    const [last] = await m.decode([seq], [ids[MAX_CHUNK_TOKENS + 299]]);
    expect(r.positions).toEqual([5, MAX_CHUNK_TOKENS + 299]);
    expect(relErr(r.logits[1], last)).toBeLessThan(1e-5);
    expect(relErr(r.logits[0], (await m.logits(ids.slice(0, 6), 'last')).logits[0])).toBeLessThan(1e-6);
  });
});
