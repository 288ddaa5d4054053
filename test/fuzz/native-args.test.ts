/**
 * Property-based tests of the native addon's argument checks (bindings.ts surface): the kernel
 * test hooks and the engine's forward() called with random sizes (zero, negative, past the kernels'
 * fixed limits), arrays of the wrong length or type, and out-of-range ids / positions / Simba keep
 * counts. Every call either throws (rejects) a JS Error, or returns outputs of the documented sizes.
 * Memory safety of what is accepted is what `npm run test:sanitize` checks, with this file in the run.
 */
import fc from 'fast-check';
import { types } from 'util';

import { loadAddon, type NativeEngine } from '../../bindings';
import { randomConfig } from '../reference/random_model';
import { fuzzParams } from './params';

const addon = loadAddon();

/** An Error with a message (the addon's errors come from node's realm, not jest's: no instanceof). */
function expectNativeError(e: unknown): void {
  expect(types.isNativeError(e)).toBe(true);
  expect((e as Error).message.length).toBeGreaterThan(0);
}

/** Runs fn; returns the value, or null after checking that what it threw is an Error with a message. */
function outcome<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (e) {
    expectNativeError(e);
    return null;
  }
}

/** A size: mostly small and valid, sometimes zero, negative, fractional or past a kernel's limit. */
const size = (max: number) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max }) },
    { weight: 1, arbitrary: fc.constantFrom(0, -1, -7, 2.5, 2 ** 31, NaN) },
  );
/** A Float32Array of n values give or take (wrong lengths and types included). */
const array = (n: number) =>
  fc
    .oneof(
      { weight: 8, arbitrary: fc.constant(n) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: Math.max(0, Math.min(n + 3, 4096)) }) },
    )
    .chain((len) =>
      fc.oneof(
        { weight: 9, arbitrary: fc.constant(new Float32Array(Math.max(0, Number.isFinite(len) ? len : 0)).fill(0.25)) },
        { weight: 1, arbitrary: fc.constantFrom<unknown>(new Float64Array(4), [1, 2, 3], null, undefined, 'x') },
      ),
    );
/** The length a size implies for the arrays built here (a bad size: arrays for 1). */
const ok = (n: number) => (Number.isSafeInteger(n) && n > 0 && n <= 4096 ? n : 1);

describe('kernel test hooks under random arguments', () => {
  test('conv1d (K up to past the fixed kConv limit)', () => {
    fc.assert(
      fc.property(size(6), size(40), size(12), (T, E, K) => {
        const t = ok(T),
          e = ok(E),
          k = ok(K);
        const r = outcome(() =>
          addon.kernels.conv1d({
            x: new Float32Array(t * e).fill(0.5),
            w: new Float32Array(e * k).fill(0.1),
            bias: null,
            state: new Float32Array(Math.max(0, e * (k - 1))),
            T,
            E,
            K,
          }),
        );
        if (r) {
          expect(r.out.length).toBe(t * e);
          expect(r.state.length).toBe(e * (k - 1));
        }
      }),
      fuzzParams(200, { offset: 70 }),
    );
  });

  test('scan and score (N up to past the fixed kMaxState limit)', () => {
    const n = fc.oneof(size(20), fc.integer({ min: 250, max: 300 }));
    fc.assert(
      fc.property(size(5), size(24), n, fc.boolean(), (T, E, N, local) => {
        const t = ok(T),
          e = ok(E),
          s = ok(N);
        const base = {
          x: new Float32Array(t * e).fill(0.5),
          dt: new Float32Array(t * e).fill(0.1),
          A_log: new Float32Array(e * s),
          B: new Float32Array(t * s).fill(0.2),
          C: new Float32Array(t * s).fill(0.3),
          T,
          E,
          N,
        };
        const y = outcome(() =>
          addon.kernels.scan({ ...base, D: new Float32Array(e), z: new Float32Array(t * e), state: new Float32Array(e * s) }),
        );
        if (y) expect([y.y.length, y.dt.length, y.state.length]).toEqual([t * e, t * e, e * s]);
        const sc = outcome(() => addon.kernels.score({ ...base, local, reduceSum: !local }));
        if (sc) expect(sc.length).toBe(t);
      }),
      fuzzParams(150, { offset: 71 }),
    );
  });

  test('gemm and rmsnorm with mismatched arrays', () => {
    const arb = fc
      .tuple(size(9), size(70), size(40), fc.boolean())
      .chain(([M, N, K, bf16]) => fc.tuple(fc.constant({ M, N, K, bf16 }), array(ok(M) * ok(K)), array(ok(N) * ok(K))));
    fc.assert(
      fc.property(arb, ([{ M, N, K, bf16 }, A, W]) => {
        const C = outcome(() => addon.kernels.gemm({ A: A as Float32Array, W: W as Float32Array, M, N, K, bf16 }));
        if (C) expect(C.length).toBe(ok(M) * ok(N));
        const y = outcome(() =>
          addon.kernels.rmsnorm({ x: A as Float32Array, w: new Float32Array(ok(K)).fill(1), rows: M, d: K, eps: 1e-5 }),
        );
        if (y) expect(y.length).toBe(ok(M) * ok(K));
      }),
      fuzzParams(300, { offset: 72 }),
    );
  });
});

describe('engine forward() under random arguments', () => {
  const cfg = randomConfig({ dModel: 16, nLayer: 3, vocabSize: 40, dState: 4 });
  let engine: NativeEngine;
  let stateFloats: number;
  beforeAll(async () => {
    engine = new addon.Engine(cfg, { bf16: false });
    await engine.randomize(3);
    stateFloats = engine.info().stateFloats;
  });
  afterAll(() => engine.dispose());

  /** Mostly `good`, sometimes one of `bad`: each knob is usually valid, so whole requests sometimes are. */
  const mostly = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 12, arbitrary: good }, { weight: 1, arbitrary: bad });
  const id = fc.oneof(
    { weight: 99, arbitrary: fc.integer({ min: 0, max: cfg.vocabSize - 1 }) },
    { weight: 1, arbitrary: fc.constantFrom(-1, cfg.vocabSize, 2 ** 31 - 1, -(2 ** 31)) },
  );
  const stateFloatsGuess = 3 * 32 * (3 + 4); // nLayer x dInner x (dConv - 1 + dState): a state of zero floats
  const request = fc.record({
    lengths: fc.array(mostly(fc.integer({ min: 1, max: 12 }), fc.constantFrom(0, -3, 2 ** 31 - 1)), {
      minLength: 0,
      maxLength: 3,
    }),
    extraTokens: mostly(fc.constant(0), fc.constantFrom(-2, -1, 1, 2)),
    states: mostly(fc.constant(0), fc.constantFrom(-1, 1)),
    stateDelta: mostly(fc.constant(0), fc.constantFrom(-1, 1, -stateFloatsGuess)),
    /** Positions as fractions of the token count (valid), or raw (often outside). */
    want: fc.array(mostly(fc.double({ min: 0, max: 0.999, noNaN: true }), fc.integer({ min: -2, max: 40 })), { maxLength: 6 }),
    simba: fc.option(
      fc.record({
        keepLength: mostly(fc.constant(-1), fc.integer({ min: 0, max: 10 })),
        keep: fc.array(fc.integer({ min: -3, max: 20 }), { minLength: 15, maxLength: 15 }),
        criterion: mostly(fc.integer({ min: 0, max: 4 }), fc.constantFrom(-1, 5)),
        reduceSum: fc.boolean(),
        protectFirst: fc.integer({ min: -3, max: 30 }),
        protectLast: fc.integer({ min: -3, max: 30 }),
        seed: fc.oneof(fc.nat(), fc.constantFrom(-1, 2 ** 53)),
      }),
    ),
    ids: fc.array(id, { minLength: 40, maxLength: 40 }),
  });

  test('rejects with an Error or returns logits / processed / exitLayer of the right sizes', async () => {
    const seen = { rejected: 0, resolved: 0 };
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const total = r.lengths.reduce((a, b) => a + Math.max(0, Math.min(b, 12)), 0);
        const tokens = Int32Array.from({ length: Math.max(0, total + r.extraTokens) }, (_, i) => r.ids[i % r.ids.length]);
        const nStates = Math.max(0, r.lengths.length + r.states);
        const states = Array.from({ length: nStates }, () => new Float32Array(Math.max(0, stateFloats + r.stateDelta)));
        const nKeep = r.simba && r.simba.keepLength >= 0 ? r.simba.keepLength : r.lengths.length * cfg.nLayer;
        const simba = r.simba
          ? { ...r.simba, keep: Int32Array.from({ length: nKeep }, (_, i) => r.simba!.keep[i % 15]) }
          : undefined;
        const want = r.want.map((w) => (Number.isInteger(w) ? w : Math.floor(w * tokens.length)));
        let res;
        try {
          res = await engine.forward(tokens, Int32Array.from(r.lengths), states, Int32Array.from(want), simba);
        } catch (e) {
          expectNativeError(e);
          seen.rejected++;
          return;
        }
        seen.resolved++;
        const L = cfg.nLayer;
        expect(res.logits.length).toBe(want.length * cfg.vocabSize);
        expect(res.processed.length).toBe(r.lengths.length * L);
        expect(res.exitLayer.length).toBe(tokens.length);
        for (const e of res.exitLayer) expect(e >= 1 && e <= L).toBe(true);
      }),
      fuzzParams(250, { offset: 73 }),
    );
    expect(seen.rejected).toBeGreaterThan(0);
    expect(seen.resolved).toBeGreaterThan(0);
  });
});

describe('regressions found by the fuzzer', () => {
  // conv1d K > 8 and scan / score N > 256 overflowed the kernels' fixed-size stack arrays (SIGSEGV) before
  // main's kernel preconditions (SIMBA_ASSERT, test/native_errors.test.ts); the properties above cover them.
  test('negative sizes are errors (M = N = K = -1 wrapped to a 1-element length check and ran)', () => {
    expect(() =>
      addon.kernels.gemm({ A: new Float32Array(1), W: new Float32Array(1), M: -1, N: -1, K: -1, bf16: false }),
    ).toThrow('must be a non-negative integer');
    expect(() => addon.kernels.rmsnorm({ x: new Float32Array(1), w: new Float32Array(1), rows: -1, d: -1, eps: 1e-5 })).toThrow(
      'must be a non-negative integer',
    );
  });
});
