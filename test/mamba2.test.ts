/**
 * Mamba-2 (SSD) on the CPU engine against the float64 reference (test/reference/mamba2_ref.ts, itself
 * checked in test/mamba2_ref.test.ts): every position of prompts that end inside and exactly on the
 * engine's 64-token chunks, prefill then decode, batched decode, Simba-pruned prefills (keep counts,
 * criteria simba and local, max and sum) and decode after them, bf16 and int8 weight storage; models
 * with G = 1 and G > 1, head_dim != d_state, tied and untied heads, dt clamped, BF16 and sharded
 * checkpoints, HF and state-spaces folders. Tolerance: 1e-5 relative per position.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import type { NativeConfig } from '../bindings';
import { openCheckpoint } from '../lib/checkpoint/safetensors';
import { createServer } from '../lib/serve/server';

import { loadModel, randomModel, shapeInfo, SHAPES, tensorTable } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import {
  mamba2WeightsFromHf,
  mamba2ZeroState,
  refMamba2Forward,
  refMamba2PrunedForward,
  type Mamba2RefConfig,
  type Mamba2RefLayerState,
  type Mamba2RefWeights,
} from './reference/mamba2_ref';
import { refSelectKeep } from './reference/mamba_ref';
import { randomMamba2Weights, roundToBf16, writeMamba2Folder, type Mamba2FolderOptions } from './helpers/mamba2_folder';
import { engineError, expectStorageFormats, maxRowErr, randTokens, rejection } from './helpers/util';

const TOL = 1e-5;
// bf16 / int8 storage: the GEMMs' inputs are rounded too (bf16 pairs, int8 rows), and the gated norm
// divides by a group's RMS, which random weights make small at some positions: these random models
// move by up to 7.4e-2 (bf16) and 1.1e-1 (int8) relative per position; the trained brown-mamba2-s's
// perplexity moves far less (bench/RESULTS.md, "Mamba-2 on the CPU").
const INT8_TOL = 2e-1;
const BF16_TOL = 1.5e-1;
const CHUNK = 64; // the CPU engine's SSD chunk (native/engine/mixer_mamba2.cc)

/** Rows [T][V] of a flat [T * V] reference result. */
const rows = (flat: Float64Array, V: number): Float64Array[] =>
  Array.from({ length: flat.length / V }, (_, t) => flat.subarray(t * V, (t + 1) * V));

interface Variant {
  name: string;
  cfg: Mamba2RefConfig;
  tied: boolean;
  folder: Mamba2FolderOptions;
}

const base: Mamba2RefConfig = {
  d: 24,
  L: 3,
  V: 61,
  H: 4,
  P: 6,
  G: 2,
  N: 5,
  K: 4,
  eps: 1e-5,
  dtLimit: [0, Infinity],
  chunk: 16,
  convBias: true,
};

const variants: Variant[] = [
  { name: 'G=2, P=6 != N=5, tied, HF folder', cfg: base, tied: true, folder: {} },
  {
    name: 'G=1, P=16, N=16, untied, no conv bias, dt clamped to [0.01, 0.05], state-spaces folder with pytorch_model.bin',
    cfg: { ...base, d: 16, H: 2, P: 16, G: 1, N: 16, convBias: false, dtLimit: [0.01, 0.05] },
    tied: false,
    folder: { layout: 'state-spaces', format: 'torch' },
  },
  {
    name: 'G=4 (a group per head), P=8, N=40, BF16 checkpoint in 3 shards',
    cfg: { ...base, d: 16, H: 4, P: 8, G: 4, N: 40 },
    tied: true,
    folder: { dtype: 'BF16', shards: 3 },
  },
];

describe.each(variants)('Mamba-2 on the CPU: $name', ({ cfg, tied, folder }) => {
  const raw = randomMamba2Weights(cfg, 31, tied);
  const w: Mamba2RefWeights = folder.dtype === 'BF16' ? roundToBf16(raw) : raw;
  const dir = writeMamba2Folder(cfg, raw, folder);
  const ids = randTokens(2 * CHUNK + 7, cfg.V, 5); // ends inside the third chunk
  const ref = (tokens: number[], state: Mamba2RefLayerState[] = mamba2ZeroState(cfg)) =>
    rows(refMamba2Forward(cfg, w, tokens, state), cfg.V);
  const expected = ref(ids);
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(dir);
  });
  afterAll(() => m.dispose());

  test('loads as Mamba-2: heads, groups, dt limit and no dtRank', () => {
    const c = m.info().config;
    expect(c.mamba2).toEqual({ nHeads: cfg.H, headDim: cfg.P, nGroups: cfg.G, chunkSize: cfg.chunk, dtLimit: cfg.dtLimit });
    expect(c.dtRank).toBe(0);
    expect(c.dInner).toBe(cfg.H * cfg.P);
    // the state: conv over x, B, C ([E + 2GN, K-1]) and [H, P, N], per layer
    const E = cfg.H * cfg.P;
    expect(m.info().stateBytes).toBe(4 * cfg.L * ((E + 2 * cfg.G * cfg.N) * (cfg.K - 1) + E * cfg.N));
  });

  test('logits at every position within 1e-5 of float64 (prompts ending inside and on chunk boundaries)', async () => {
    expect(maxRowErr((await m.logits(ids, 'all')).logits, expected)).toBeLessThan(TOL);
    for (const T of [1, CHUNK - 1, CHUNK, 2 * CHUNK]) {
      const got = (await m.logits(ids.slice(0, T), 'all')).logits;
      expect(maxRowErr(got, expected.slice(0, T))).toBeLessThan(TOL);
    }
  });

  test('prefill then token-by-token decode, and a batched decode of several sequences, within 1e-5', async () => {
    const seq = m.newSequence();
    const [p] = await m.prefill([{ sequence: seq, tokens: ids.slice(0, CHUNK + 3) }], { logits: 'all' });
    const got = [...p.logits];
    for (let t = CHUNK + 3; t < CHUNK + 12; t++) got.push((await m.decode([seq], [ids[t]]))[0]);
    expect(maxRowErr(got, expected.slice(0, CHUNK + 12))).toBeLessThan(TOL);
    // a prompt continued in pieces (continued prefill) gives the rest
    const [q] = await m.prefill([{ sequence: seq, tokens: ids.slice(CHUNK + 12) }], { logits: 'all' });
    expect(maxRowErr(q.logits, expected.slice(CHUNK + 12))).toBeLessThan(TOL);
    seq.dispose();

    const prompts = [1, 5, 70, 3].map((n, i) => randTokens(n, cfg.V, 40 + i));
    const seqs = (
      await m.prefill(
        prompts.map((tokens) => ({ tokens })),
        { logits: 'none' },
      )
    ).map((r) => r.sequence);
    const next = [7, 19, 31, 43].map((t) => t % cfg.V);
    const batched = await m.decode(seqs, next);
    for (let i = 0; i < prompts.length; i++) {
      const r = ref([...prompts[i], next[i]]);
      expect(maxRowErr([batched[i]], [r[r.length - 1]])).toBeLessThan(TOL);
    }
    for (const s of seqs) s.dispose();
  });

  test.each(['simba', 'local'] as const)(
    'Simba-pruned prefill (criterion %s, keep counts, max and sum): kept sets and logits match float64',
    async (criterion) => {
      const T = 40;
      const keepCounts = Array.from({ length: cfg.L }, (_, l) => Math.max(4, 30 - 11 * l));
      for (const reduce of ['max', 'sum'] as const) {
        const got = await m.logits(ids.slice(0, T), 'all', { simba: { keepCounts, criterion, reduce } });
        const want = refMamba2PrunedForward(
          cfg,
          w,
          ids.slice(0, T),
          mamba2ZeroState(cfg),
          { keepCounts, criterion, reduce },
          (s, k) => refSelectKeep(s, k),
        );
        for (let l = 1; l < cfg.L; l++) {
          const processed = ids
            .slice(0, T)
            .map((_, t) => t)
            .filter((t) => got.exitLayer[t] > l);
          expect(processed).toEqual(want.kept[l - 1]);
        }
        expect(got.processed).toEqual([T, ...keepCounts.slice(0, cfg.L - 1)]);
        expect(maxRowErr(got.logits, want.logits)).toBeLessThan(TOL);
      }
    },
  );

  test('decode after a Simba-pruned prefill continues from the pruned states (within 1e-5)', async () => {
    const keepCounts = Array.from({ length: cfg.L }, (_, l) => Math.max(2, 15 - 5 * l));
    const simba = { keepCounts, criterion: 'simba' as const, reduce: 'max' as const };
    const seq = m.newSequence();
    await m.prefill([{ sequence: seq, tokens: ids.slice(0, 20) }], { simba });
    const state = mamba2ZeroState(cfg);
    refMamba2PrunedForward(cfg, w, ids.slice(0, 20), state, simba, (s, k) => refSelectKeep(s, k));
    const after = ref([ids[20]], state);
    expect(maxRowErr(await m.decode([seq], [ids[20]]), after)).toBeLessThan(TOL);
    seq.dispose();
  });

  test('a snapshot restores the state exactly; a Mamba-1 model of the same widths refuses it', async () => {
    const seq = m.newSequence();
    await m.prefill([{ sequence: seq, tokens: ids.slice(0, 30) }], { logits: 'none' });
    const snap = seq.snapshot();
    const a = await m.decode([seq], [ids[30]]);
    const copy = m.newSequence();
    copy.restore(snap);
    expect(await m.decode([copy], [ids[30]])).toEqual(a);
    expect(maxRowErr(a, [expected[30]])).toBeLessThan(TOL);
    seq.dispose();
    copy.dispose();
    // Mamba-1 with the same d, layers, d_inner, d_state, d_conv and vocabulary: another state, refused
    const { mamba2: _shape, ...mamba1 } = m.info().config;
    const m1 = await randomModel({ ...mamba1, dtRank: 2 }, { seed: 1 });
    try {
      const other = m1.newSequence();
      expect(() => other.restore(snap)).toThrow(expect.objectContaining({ code: 'E_ARG' }));
      other.dispose();
    } finally {
      m1.dispose();
    }
  });

  test('bf16 and int8 weight storage within their stated tolerances', async () => {
    await expectStorageFormats(dir, async (q) => (await q.logits(ids.slice(0, 70), 'all')).logits, expected.slice(0, 70), {
      bf16: BF16_TOL,
      int8: INT8_TOL,
    });
  });
});

describe('Mamba-2 shapes and configs', () => {
  /** Parameters of a Mamba-2 config, counted from the architecture (mamba2.py), not from the engine. */
  function mamba2Params(name: string): number {
    const c = SHAPES[name];
    const m = c.mamba2!;
    const E = c.dInner,
      GN = m.nGroups * c.dState,
      H = m.nHeads;
    const layer = c.dModel + (2 * E + 2 * GN + H) * c.dModel + (E + 2 * GN) * (c.dConv + 1) + 3 * H + E + c.dModel * E;
    return c.vocabSize * c.dModel * (c.tieEmbeddings ? 1 : 2) + c.dModel + c.nLayer * layer;
  }

  test.each(['mamba2-130m', 'mamba2-370m', 'mamba2-780m', 'mamba2-1.3b', 'mamba2-2.7b', 'codestral-7b'])(
    "the '%s' shape: its parameter count and state size",
    (name) => {
      const info = shapeInfo(name);
      expect(info.paramCount).toBe(mamba2Params(name));
      const c = SHAPES[name];
      const GN = c.mamba2!.nGroups * c.dState;
      expect(info.stateBytes).toBe(4 * c.nLayer * ((c.dInner + 2 * GN) * (c.dConv - 1) + c.dInner * c.dState));
    },
  );

  test('info() and `simba info` name the family', () => {
    expect(shapeInfo('mamba2-130m').family).toBe('mamba2');
    expect(shapeInfo('falcon-mamba-7b').family).toBe('falcon-mamba');
    expect(shapeInfo('mamba-130m').family).toBe('mamba');
    const r = spawnSync(
      process.execPath,
      [path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js'), 'info', '--shape', 'codestral-7b'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^family {6}Mamba-2 \(SSD\): 128 heads of 64, 8 group\(s\) of B and C, dt limit \[0, Infinity\]$/m);
    expect(r.stdout).toMatch(/^parameters {2}7,285,403,648$/m);
    expect(r.stdout).not.toMatch(/dt_rank/);
  });

  test('mamba2-130m has the 130m checkpoint sizes; Codestral 7.3e9 parameters', () => {
    expect(shapeInfo('mamba2-130m').paramCount).toBe(128_989_632); // the tensors of state-spaces/mamba2-130m, summed
    expect(Math.round(shapeInfo('codestral-7b').paramCount / 1e8) / 10).toBe(7.3);
  });

  test('the tensor table: Mamba-2 has dt_bias and gate_norm and no x_proj or dt_proj; A_log is per head', () => {
    const t = tensorTable(SHAPES['mamba2-130m']).filter((s) => s.layer === 0);
    const req = Object.fromEntries(t.filter((s) => s.required).map((s) => [s.name, s.shape]));
    expect(req).toEqual({
      norm: [768],
      in_proj: [2 * 1536 + 2 * 128 + 24, 768],
      conv_w: [1536 + 2 * 128, 4],
      conv_b: [1536 + 2 * 128],
      A_log: [24],
      D: [24],
      dt_bias: [24],
      gate_norm: [1536],
      out_proj: [768, 1536],
    });
    expect(t.find((s) => s.name === 'A_log')!.layout).toBe('neg_exp');
  });

  test('randomModel runs a Mamba-2 shape given in code, and refuses a bad one with E_ARG', async () => {
    const cfg = {
      ...SHAPES['mamba2-130m'],
      nLayer: 2,
      vocabSize: 100,
      dModel: 64,
      dInner: 128,
      mamba2: { ...SHAPES['mamba2-130m'].mamba2!, nHeads: 2 },
    };
    const m = await randomModel(cfg, { seed: 3 });
    try {
      const r = await m.logits([1, 2, 3], 'all');
      expect(r.logits).toHaveLength(3);
      expect(r.logits[2].every(Number.isFinite)).toBe(true);
    } finally {
      m.dispose();
    }
    const bad = (over: object) => rejection(randomModel({ ...cfg, ...over }));
    expect((await bad({ mamba2: { ...cfg.mamba2, nGroups: 3 } })).message).toMatch(
      /nHeads 2 must be a multiple of config\.mamba2\.nGroups 3/,
    );
    expect((await bad({ dInner: 100 })).message).toMatch(/dInner 100 must be mamba2\.nHeads \* mamba2\.headDim \(128\)/);
    expect((await bad({ dtRank: 4 })).message).toMatch(/dtRank/);
    expect((await bad({ mamba2: { ...cfg.mamba2, dtLimit: [1, 0] } })).message).toMatch(/dtLimit must be \[low, high\]/);
    expect((await bad({ mamba2: { ...cfg.mamba2, heads: 2 } })).message).toMatch(/unknown config\.mamba2 option 'heads'/);
  });
});

describe('the shipped brown-mamba2-s (trained weights, G = 2)', () => {
  const dir = path.join(__dirname, '..', 'models', 'brown-mamba2-s');
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(dir);
  });
  afterAll(() => m.dispose());

  test('every position of 150 held-out tokens within 1e-5 of the float64 reference on its own weights', async () => {
    const c = m.info().config;
    const cfg: Mamba2RefConfig = {
      d: c.dModel,
      L: c.nLayer,
      V: c.vocabSize,
      H: c.mamba2!.nHeads,
      P: c.mamba2!.headDim,
      G: c.mamba2!.nGroups,
      N: c.dState,
      K: c.dConv,
      eps: c.eps,
      dtLimit: c.mamba2!.dtLimit,
      chunk: c.mamba2!.chunkSize,
      convBias: c.convBias,
    };
    expect(cfg.G).toBe(2);
    const ck = openCheckpoint(dir);
    let w: Mamba2RefWeights;
    try {
      w = mamba2WeightsFromHf(cfg, (name) => (ck.has(name) ? ck.readTensorF32(name) : undefined));
    } finally {
      ck.close();
    }
    const text = fs.readFileSync(path.join(__dirname, 'fixtures', 'brown-heldout-slice.txt'), 'utf8').slice(0, 3000);
    const ids = m.tokenizer!.encode(text).slice(0, 150);
    expect(ids).toHaveLength(150);
    const want = rows(refMamba2Forward(cfg, w, ids, mamba2ZeroState(cfg)), cfg.V);
    expect(maxRowErr((await m.logits(ids, 'all')).logits, want)).toBeLessThan(TOL);
  });

  test('serves chat completions (its tokenizer_config.json, the same server as every family)', async () => {
    const server = createServer({ model: m, modelName: 'brown-mamba2-s' });
    const url = await server.listen(0, '127.0.0.1');
    try {
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'brown-mamba2-s',
          messages: [{ role: 'user', content: 'The jury said' }],
          max_tokens: 8,
          seed: 1,
        }),
        signal: AbortSignal.timeout(20000),
      });
      expect(r.status).toBe(200);
      const j = (await r.json()) as {
        choices: { message: { content: string }; finish_reason: string }[];
        usage: { completion_tokens: number };
      };
      expect(j.usage.completion_tokens).toBe(8);
      expect(j.choices[0].finish_reason).toBe('length');
      expect(j.choices[0].message.content.length).toBeGreaterThan(0);
    } finally {
      await server.shutdown(0);
    }
  });
});

test('the addon checks the Mamba-2 fields once, naming each (E_CONFIG; E_ARG for a wrong type)', () => {
  const c: NativeConfig = {
    vocabSize: 16,
    dModel: 8,
    nLayer: 1,
    dInner: 16,
    dState: 4,
    dtRank: 0,
    dConv: 4,
    convBias: true,
    projBias: false,
    tieEmbeddings: true,
    eps: 1e-5,
    mamba2: { nHeads: 4, nGroups: 2, dtLimit: [0, Infinity] },
  };
  const m2 = c.mamba2!;
  expect(engineError(c)).toEqual({});
  for (const [bad, why] of [
    [{ ...c, mamba2: { ...m2, nGroups: 3 } }, /nHeads 4 do not split into nGroups 3/],
    [{ ...c, mamba2: { ...m2, nHeads: 3 } }, /dInner 16 is not a multiple of nHeads 3/],
    [{ ...c, mamba2: { ...m2, nHeads: 0 } }, /nHeads must be a positive integer/],
    [{ ...c, dtRank: 2 }, /dtRank is Mamba-1's/],
    [{ ...c, mixerRmsEps: 1e-6 }, /mixerRmsEps is Falcon-Mamba's/],
    [{ ...c, mamba2: { ...m2, dtLimit: [0.5, 0.1] } }, /dtLimit must be \[low, high\]/],
    [{ ...c, mamba2: { ...m2, dtLimit: [NaN, 1] } }, /dtLimit/],
  ] as const)
    expect(engineError(bad as NativeConfig)).toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(why) });
  for (const lim of [[0, '1'], [0], 0.1, undefined])
    expect(engineError({ ...c, mamba2: { ...m2, dtLimit: lim as never } })).toMatchObject({
      code: 'E_ARG',
      message: expect.stringMatching(/config\.mamba2\.dtLimit must be an array of two numbers/),
    });
});
