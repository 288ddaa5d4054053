/**
 * The native boundary: errors raised by native code carry their class as `err.code` (set by the
 * addon, not guessed from the message), and the engine's tensor table (addon.tensorTable) agrees
 * with an independent list of Mamba tensors (test/reference/random_model.ts) for every config
 * variant. The addon's Engine is called directly here, bypassing the TypeScript checks.
 *
 * Runs on the CPU engine, and also on the CUDA engine when a GPU is available.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadAddon, type NativeConfig, type NativeEngine } from '../bindings';
import { fromNative, SimbaError, SIMBA_ERROR_CODES } from '../lib/errors';
import { tensorTable } from '../lib/engine/load';
import type { MambaConfig } from '../lib/types';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { SANITIZED } from './helpers/sanitized';

const addon = loadAddon();
const devices: Array<'cpu' | 'cuda'> = addon.cudaAvailable().available ? ['cpu', 'cuda'] : ['cpu'];

function nativeConfig(c: MambaConfig): NativeConfig {
  const { vocabSize, dModel, nLayer, dInner, dState, dtRank, dConv, convBias, projBias, tieEmbeddings, eps } = c;
  return { vocabSize, dModel, nLayer, dInner, dState, dtRank, dConv, convBias, projBias, tieEmbeddings, eps };
}

/** What `f` throws or rejects with (fails the test when it does neither). */
async function caught(f: () => unknown): Promise<Error & { code?: unknown }> {
  try {
    await f();
  } catch (e) {
    return e as Error & { code?: unknown };
  }
  throw new Error('expected an error, none was thrown');
}

async function expectCode(f: () => unknown, code: string, msg: RegExp): Promise<void> {
  const e = await caught(f);
  // a plain Error of the addon (jest's sandbox has its own Error class, so no instanceof Error here)
  expect(Object.prototype.toString.call(e)).toBe('[object Error]');
  expect(e).not.toBeInstanceOf(SimbaError); // the code comes from native code, not from TypeScript
  expect(e.message).toMatch(msg);
  expect(e.code).toBe(code);
}

describe.each(devices)('native errors carry a code (device %s)', (device) => {
  const cfg = randomConfig({ vocabSize: 50 });
  let engine: NativeEngine;
  const states = (n: number): Float32Array[] => Array.from({ length: n }, () => new Float32Array(engine.info().stateFloats));

  beforeAll(async () => {
    engine = new addon.Engine(nativeConfig(cfg), { bf16: false, device });
    await engine.randomize(3);
  });
  afterAll(() => engine.dispose());

  test('a token id outside the vocabulary is E_TOKEN', async () => {
    await expectCode(
      () => engine.forward(Int32Array.of(1, 50, 2), Int32Array.of(3), states(1), Int32Array.of(2)),
      'E_TOKEN',
      /token id 50 at index 1 is outside the vocabulary \[0, 50\)/,
    );
    await expectCode(
      () => engine.forward(Int32Array.of(-1), Int32Array.of(1), states(1), Int32Array.of(0)),
      'E_TOKEN',
      /token id -1 at index 0/,
    );
  });

  test('a bad request layout is E_ARG', async () => {
    await expectCode(
      () => engine.forward(Int32Array.of(1, 2), Int32Array.of(3), states(1), Int32Array.of(0)),
      'E_ARG',
      /token count does not match/,
    );
    await expectCode(
      () => engine.forward(Int32Array.of(1, 2), Int32Array.of(2), states(1), Int32Array.of(2)),
      'E_ARG',
      /logits position 2 is outside the 2 tokens/,
    );
    await expectCode(
      () => engine.forward(Int32Array.of(1, 2), Int32Array.of(1, 1), states(1), Int32Array.of(0)),
      'E_ARG',
      /one state per sequence/,
    );
    await expectCode(
      () =>
        engine.forward(Int32Array.of(1, 2), Int32Array.of(2), states(1), Int32Array.of(1), {
          keep: Int32Array.of(1),
          criterion: 0,
          reduceSum: false,
          protectFirst: 0,
          protectLast: 0,
          seed: 0,
        }),
      'E_ARG',
      /simba keep counts: expected 2/,
    );
    await expectCode(
      () => engine.forward(Int32Array.of(1), Int32Array.of(1), [new Float32Array(3)], Int32Array.of(0)),
      'E_ARG',
      /state 0 has 3 floats/,
    );
    await expectCode(
      () => engine.forward([1, 2] as unknown as Int32Array, Int32Array.of(2), states(1), Int32Array.of(0)),
      'E_ARG',
      /tokens must be an Int32Array/,
    );
  });

  test('a finalized model takes no more tensors (E_ARG)', async () => {
    await expectCode(() => engine.setTensor('norm_f', -1, new Float32Array(cfg.dModel)), 'E_ARG', /finalized/);
  });

  test('wrong size is E_SHAPE; unknown, misplaced or absent tensors are E_WEIGHTS; missing ones at finalize too', async () => {
    const fresh = new addon.Engine(nativeConfig(cfg), { bf16: false, device });
    try {
      const E = cfg.dInner,
        N = cfg.dState;
      await expectCode(
        () => fresh.setTensor('A_log', 1, new Float32Array(E * N + 1)),
        'E_SHAPE',
        new RegExp(`tensor 'A_log' of layer 1: expected \\[${E}, ${N}\\] = ${E * N} values, got ${E * N + 1}`),
      );
      await expectCode(
        () => fresh.setTensor('embedding', -1, new Float32Array(7)),
        'E_SHAPE',
        /tensor 'embedding': expected \[50, 16\]/,
      );
      await expectCode(
        () => fresh.setTensor('in_projection', 0, new Float32Array(1)),
        'E_WEIGHTS',
        /unknown layer tensor 'in_projection'/,
      );
      await expectCode(
        () => fresh.setTensor('norm', -1, new Float32Array(cfg.dModel)),
        'E_WEIGHTS',
        /unknown global tensor 'norm'/,
      );
      await expectCode(
        () => fresh.setTensor('norm', cfg.nLayer, new Float32Array(cfg.dModel)),
        'E_WEIGHTS',
        /layer 2 out of range/,
      );
      await expectCode(() => fresh.setTensor('in_proj_bias', 0, new Float32Array(2 * E)), 'E_WEIGHTS', /no projection biases/);
      await expectCode(() => fresh.setTensor('lm_head', -1, new Float32Array(50 * cfg.dModel)), 'E_WEIGHTS', /ties the head/);
      await expectCode(
        () => fresh.forward(Int32Array.of(1), Int32Array.of(1), [new Float32Array(fresh.info().stateFloats)], Int32Array.of(0)),
        'E_WEIGHTS',
        /not finalized/,
      );
      await fresh.setTensor('embedding', -1, new Float32Array(50 * cfg.dModel));
      await expectCode(() => fresh.finalize(), 'E_WEIGHTS', /missing tensor 'norm' of layer 0/);
    } finally {
      fresh.dispose();
    }
  });

  test('a config the engine cannot run is E_CONFIG; wrong argument types are E_ARG', async () => {
    await expectCode(
      () => new addon.Engine(nativeConfig({ ...cfg, dState: 0 }), { bf16: false, device }),
      'E_CONFIG',
      /dState must be a positive integer, got 0/,
    );
    await expectCode(
      () => new addon.Engine(nativeConfig({ ...cfg, dConv: 9 }), { bf16: false, device }),
      'E_CONFIG',
      /dConv 9 is larger than the supported 8/,
    );
    await expectCode(
      () => new addon.Engine({ ...nativeConfig(cfg), nLayer: 1.5 }, { bf16: false, device }),
      'E_ARG',
      /config.nLayer must be an integer/,
    );
    await expectCode(
      () => addon.tensorTable(nativeConfig({ ...cfg, dModel: -4 })),
      'E_CONFIG',
      /dModel must be a positive integer/,
    );
  });

  test('a disposed engine is E_DISPOSED', async () => {
    const e = new addon.Engine(nativeConfig(cfg), { bf16: false, device });
    e.dispose();
    await expectCode(() => e.info(), 'E_DISPOSED', /disposed/);
  });
});

// Under ASan (npm run test:sanitize) an allocation of 2^58 bytes is a sanitizer error, not a bad_alloc.
const oomTest = SANITIZED ? test.skip : test;

describe('memory exhaustion is E_OOM', () => {
  oomTest(
    'random weights for an embedding of 2^58 bytes: the allocation fails on the worker thread, the promise rejects E_OOM',
    async () => {
      // 2^28 x 2^28 floats: beyond any 48-bit address space, so the allocation fails at once (never pages in).
      const huge = randomConfig({ vocabSize: 2 ** 28, dModel: 2 ** 28, dInner: 2 ** 29, dtRank: 1, nLayer: 1 });
      const e = new addon.Engine(nativeConfig(huge), { bf16: false });
      try {
        await expectCode(() => e.randomize(1), 'E_OOM', /alloc/);
      } finally {
        e.dispose();
      }
    },
  );
});

describe('the C ABI status codes (backend_api.h) and SIMBA_ERROR_CODES', () => {
  test('every simba_status_t but SIMBA_OK names a SimbaError code', () => {
    const header = fs.readFileSync(path.join(__dirname, '..', 'native', 'common', 'backend_api.h'), 'utf8');
    const names = [...header.matchAll(/^\s*SIMBA_(E_[A-Z]+) = \d+/gm)].map((m) => m[1]);
    expect(names).toEqual(expect.arrayContaining(['E_ARG', 'E_TOKEN', 'E_SHAPE', 'E_WEIGHTS', 'E_OOM', 'E_CUDA', 'E_NATIVE']));
    for (const n of names) expect(SIMBA_ERROR_CODES).toContain(n);
  });
});

describe('kernel preconditions (SIMBA_ASSERT) fail as E_NATIVE errors, not crashes', () => {
  test('a conv wider than the kernels hold, a state larger than they hold', async () => {
    const T = 2,
      E = 4;
    await expectCode(
      () =>
        addon.kernels.conv1d({
          x: new Float32Array(T * E),
          w: new Float32Array(E * 9),
          bias: null,
          state: new Float32Array(E * 8),
          T,
          E,
          K: 9,
        }),
      'E_NATIVE',
      /precondition failed: .*a\.K <= kMaxConv/,
    );
    const N = 300,
      f = (n: number): Float32Array => new Float32Array(n);
    await expectCode(
      () =>
        addon.kernels.scan({
          x: f(T * E),
          dt: f(T * E),
          A_log: f(E * N),
          B: f(T * N),
          C: f(T * N),
          D: f(E),
          z: f(T * E),
          state: f(E * N),
          T,
          E,
          N,
        }),
      'E_NATIVE',
      /dispatch\.cc:\d+: precondition failed: .*a\.N <= kMaxState/,
    );
  });
});

describe('fromNative keeps the native code and never reads the message', () => {
  test('a coded native error keeps its code and the original as cause', () => {
    const orig = Object.assign(new Error('tensor x: expected [2] = 2 values, got 3'), { code: 'E_SHAPE' });
    const e = fromNative(orig);
    expect(e).toBeInstanceOf(SimbaError);
    expect(e.code).toBe('E_SHAPE');
    expect(e.cause).toBe(orig);
  });

  test('an error without a known code is E_NATIVE, whatever its message says', () => {
    expect(fromNative(new Error('token id 9 is outside the vocabulary [0, 5)')).code).toBe('E_NATIVE');
    expect(fromNative(Object.assign(new Error('x'), { code: 'E_BOGUS' })).code).toBe('E_NATIVE');
    expect(fromNative('a string').code).toBe('E_NATIVE');
  });

  test('every code the addon can set is a SimbaError code', () => {
    for (const c of ['E_ARG', 'E_TOKEN', 'E_SHAPE', 'E_WEIGHTS', 'E_CONFIG', 'E_OOM', 'E_CUDA', 'E_DISPOSED', 'E_NATIVE'])
      expect(SIMBA_ERROR_CODES).toContain(c);
  });
});

describe('the tensor table', () => {
  const variants: Array<[string, Partial<MambaConfig>]> = [
    ['default', {}],
    ['projection biases', { projBias: true }],
    ['no conv bias', { convBias: false }],
    ['untied head', { tieEmbeddings: false }],
    ['all options', { projBias: true, convBias: false, tieEmbeddings: false, nLayer: 3, dModel: 24, dState: 5, dConv: 3 }],
  ];

  test.each(variants)('required tensors = the reference list of a Mamba model (%s)', (_label, over) => {
    const cfg = randomConfig(over);
    const table = tensorTable(cfg);
    const key = (t: { name: string; layer: number; shape: number[] }): string => `${t.layer}:${t.name}:[${t.shape.join(',')}]`;
    const want = randomEngineTensors(cfg, 1).map(key).sort();
    expect(
      table
        .filter((t) => t.required)
        .map(key)
        .sort(),
    ).toEqual(want);
    // every tensor a config of any family can have is listed, the ones it lacks as not required
    // (Mamba-2's dt_bias and gate_norm, for this Mamba-1 config)
    expect(table).toHaveLength(3 + 14 * cfg.nLayer);
    expect(table.filter((t) => t.name === 'dt_bias' || t.name === 'gate_norm').every((t) => !t.required)).toBe(true);
    expect(table.find((t) => t.name === 'lm_head')!.required).toBe(!cfg.tieEmbeddings);
    expect(table.filter((t) => t.name === 'conv_b').every((t) => t.required === cfg.convBias)).toBe(true);
  });

  test('order and layouts: embedding, layers in checkpoint order, norm_f, lm_head; conv_w and A_log transformed', () => {
    const cfg = randomConfig({ nLayer: 2 });
    const table = tensorTable(cfg);
    expect(table[0].name).toBe('embedding');
    expect(table.slice(-2).map((t) => t.name)).toEqual(['norm_f', 'lm_head']);
    expect(table.slice(1, 15).map((t) => t.name)).toEqual([
      'norm',
      'in_proj',
      'in_proj_bias',
      'conv_w',
      'conv_b',
      'x_proj',
      'dt_proj_w',
      'dt_proj_b',
      'A_log',
      'D',
      'out_proj',
      'out_proj_bias',
      'dt_bias',
      'gate_norm',
    ]);
    expect(table.slice(1, 29).map((t) => t.layer)).toEqual([...Array(14).fill(0), ...Array(14).fill(1)]);
    const layouts = Object.fromEntries(table.filter((t) => t.layer === 0).map((t) => [t.name, t.layout]));
    expect(layouts).toMatchObject({ conv_w: 'transposed', A_log: 'neg_exp_transposed', in_proj: 'plain', D: 'plain' });
  });

  test('an engine loaded tensor by tensor from the table finalizes; one tensor short, it names the missing one', async () => {
    const cfg = randomConfig({ projBias: true, tieEmbeddings: false });
    const tensors = randomEngineTensors(cfg, 2);
    const byKey = new Map(tensors.map((t) => [`${t.layer}:${t.name}`, t]));
    const required = tensorTable(cfg).filter((t) => t.required);
    const e = new addon.Engine(nativeConfig(cfg), { bf16: false });
    try {
      for (const t of required.slice(0, -1)) await e.setTensor(t.name, t.layer, byKey.get(`${t.layer}:${t.name}`)!.data);
      await expectCode(() => e.finalize(), 'E_WEIGHTS', /missing tensor 'lm_head'/);
      const last = required[required.length - 1];
      await e.setTensor(last.name, last.layer, byKey.get(`${last.layer}:${last.name}`)!.data);
      e.finalize();
      expect(e.info().paramCount).toBe(required.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0));
    } finally {
      e.dispose();
    }
  });
});
