/**
 * Property-based tests of Simba pruning: the planner (lib/engine/simba.ts validateSimbaOptions,
 * planSimba) on random schedules, and real pruned prefills of small random models.
 *
 * Invariants of a plan: processed[0] = T, non-increasing, every count in [1, T], keep = processed
 * shifted by one (last entry repeated), relFlops = sum / (L T), explicit counts / ratios honoured
 * (clipped to T), a FLOPs target met to within the staircase step (1 / T) or refused as below the
 * trapezoid's floor.
 * Invariants of a pruned prefill: kept sets nested across layers (each token exits once: the tokens
 * processed by layer l are those with exitLayer > l, and there are processed[l] of them), the count
 * after each layer is the plan's count raised to the protected tokens, the last token and the
 * protected first / last tokens go through every layer, logits finite, a schedule that prunes
 * nothing equals the dense prefill, and a prompt is pruned the same alone or in a batch.
 * Invalid options are E_ARG, whatever their shape.
 */
import fc from 'fast-check';

import { randomModel } from '../../lib/engine/load';
import { planSimba, SIMBA_CRITERIA, trapezoidFloor, validateSimbaOptions, type SimbaOptions } from '../../lib/engine/simba';
import { SimbaError } from '../../lib/errors';
import type { MambaConfig } from '../../lib/types';
import { randomConfig } from '../reference/random_model';
import { maxRowErr } from '../helpers/util';
import { fuzzParams } from './params';

// ------------------------------------------------------------------------------------------
// generators

/** A valid schedule for L layers (one of the four ways to give it) plus the optional knobs. */
function validOptions(L: number): fc.Arbitrary<SimbaOptions> {
  const counts = fc
    .array(fc.integer({ min: 1, max: 400 }), { minLength: Math.max(L - 1, 0), maxLength: L })
    .filter((a) => a.length === L || a.length === L - 1)
    .map((a) => a.sort((x, y) => y - x));
  const ratios = fc
    .array(fc.double({ min: 1e-6, max: 1, noNaN: true }), { minLength: Math.max(L - 1, 0), maxLength: L })
    .filter((a) => a.length === L || a.length === L - 1)
    .map((a) => a.sort((x, y) => y - x));
  const schedule = fc.oneof(
    fc.record({ flops: fc.double({ min: 0.05, max: 1, noNaN: true }) }),
    fc.record({ rLast: fc.double({ min: 0, max: 1, noNaN: true }) }),
    fc.record({ keepCounts: counts }),
    fc.record({ keepRatios: ratios }),
  );
  const knobs = fc.record(
    {
      start: fc.integer({ min: 0, max: L - 1 }),
      criterion: fc.constantFrom(...SIMBA_CRITERIA),
      reduce: fc.constantFrom('max' as const, 'sum' as const),
      protect: fc.record({ first: fc.integer({ min: 0, max: 6 }), last: fc.integer({ min: 0, max: 6 }) }, { requiredKeys: [] }),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    },
    { requiredKeys: [] },
  );
  return fc.tuple(schedule, knobs).map(([s, k]) => ({ ...k, ...s }));
}

/** Tokens the engine keeps after a layer that saw n, for a plan count k (engine/prune.cc select_keep). */
function keptAfter(n: number, k: number, first: number, last: number): number {
  const kk = Math.max(1, Math.min(n, k));
  if (kk >= n) return n;
  const prot = new Set<number>([n - 1]);
  for (let t = 0; t < Math.min(first, n); t++) prot.add(t);
  for (let t = Math.max(0, n - last); t < n; t++) prot.add(t);
  return Math.max(kk, prot.size);
}

// ------------------------------------------------------------------------------------------
// the planner

describe('planSimba on random schedules', () => {
  test('plans satisfy their invariants (or a FLOPs target below the floor is E_ARG)', () => {
    const arb = fc
      .integer({ min: 1, max: 12 })
      .chain((L) => fc.tuple(fc.constant(L), fc.integer({ min: 1, max: 3000 }), validOptions(L)));
    fc.assert(
      fc.property(arb, ([L, T, o]) => {
        const cfg = randomConfig({ nLayer: L });
        validateSimbaOptions(cfg, o);
        let plan;
        try {
          plan = planSimba(cfg, T, o);
        } catch (e) {
          // Only a FLOPs target under what the trapezoid can reach is refused.
          expect(e).toBeInstanceOf(SimbaError);
          expect((e as SimbaError).code).toBe('E_ARG');
          expect(o.flops).toBeDefined();
          expect(o.flops!).toBeLessThan(trapezoidFloor(L, T, o.start ?? 0) + 1e-9);
          return;
        }
        const p = plan.processed;
        expect(plan.T).toBe(T);
        expect(p.length).toBe(L);
        expect(p[0]).toBe(T);
        for (let l = 0; l < L; l++) {
          expect(Number.isInteger(p[l]) && p[l] >= 1 && p[l] <= T).toBe(true);
          if (l > 0) expect(p[l]).toBeLessThanOrEqual(p[l - 1]);
        }
        expect(plan.keep).toEqual([...p.slice(1), p[L - 1]]);
        expect(plan.relFlops).toBeCloseTo(p.reduce((a, b) => a + b, 0) / (L * T), 12);
        if (o.keepCounts) for (let l = 1; l < L; l++) expect(p[l]).toBe(Math.min(T, o.keepCounts[l - 1]));
        if (o.keepRatios)
          for (let l = 1; l < L; l++) expect(p[l]).toBe(Math.min(T, Math.max(1, Math.ceil(T * o.keepRatios[l - 1] - 1e-9))));
        if (o.flops !== undefined) expect(Math.abs(plan.relFlops - o.flops)).toBeLessThanOrEqual(1 / T + 1e-9);
        if (o.rLast !== undefined || o.flops !== undefined) {
          const start = o.start ?? 0;
          for (let l = 0; l <= start; l++) expect(p[l]).toBe(T); // layers 0..start keep everything
        }
      }),
      fuzzParams(400, { offset: 30 }),
    );
  });

  test('any options object at all: valid (and then plannable) or E_ARG, never another error', () => {
    const junk = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom(NaN, Infinity, -1, 0, 1, 0.5, 2 ** 31, 'simba', 'max', null, undefined),
    );
    const opts = fc.oneof(
      fc.record(
        {
          flops: junk,
          rLast: junk,
          keepCounts: junk,
          keepRatios: junk,
          start: junk,
          criterion: junk,
          reduce: junk,
          protect: junk,
          seed: junk,
        },
        { requiredKeys: [] },
      ),
      // one valid schedule with exactly one field broken
      fc
        .tuple(
          validOptions(4),
          fc.constantFrom('flops', 'rLast', 'keepCounts', 'keepRatios', 'start', 'criterion', 'reduce', 'protect', 'seed'),
          junk,
        )
        .map(([o, k, v]) => ({ ...o, [k]: v })),
      junk,
    );
    const cfg = randomConfig({ nLayer: 4 });
    fc.assert(
      fc.property(opts, fc.integer({ min: 1, max: 200 }), (o, T) => {
        try {
          validateSimbaOptions(cfg, o as SimbaOptions);
        } catch (e) {
          if (!(e instanceof SimbaError)) throw new Error(`expected a SimbaError, got ${String(e)}`, { cause: e });
          expect(e.code).toBe('E_ARG');
          expect(e.message).toMatch(/simba/);
          return;
        }
        // Accepted: then it must plan (or refuse a too-low FLOPs target) without any other error.
        try {
          const plan = planSimba(cfg, T, o as SimbaOptions);
          expect(plan.processed.every((n) => Number.isInteger(n) && n >= 1 && n <= T)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(SimbaError);
          expect((e as SimbaError).code).toBe('E_ARG');
        }
      }),
      fuzzParams(500, { offset: 31 }),
    );
  });
});

// ------------------------------------------------------------------------------------------
// real pruned prefills

describe('pruned prefills of small random models', () => {
  const modelArb = fc.record({
    dModel: fc.integer({ min: 4, max: 24 }),
    nLayer: fc.integer({ min: 1, max: 5 }),
    dState: fc.integer({ min: 1, max: 12 }),
    dConv: fc.integer({ min: 2, max: 4 }),
    vocabSize: fc.integer({ min: 8, max: 40 }),
    seed: fc.integer({ min: 0, max: 1000 }),
  });
  const caseArb = modelArb.chain((m) =>
    fc.record({
      m: fc.constant(m),
      prompts: fc.array(fc.array(fc.integer({ min: 0, max: m.vocabSize - 1 }), { minLength: 1, maxLength: 40 }), {
        minLength: 1,
        maxLength: 3,
      }),
      o: validOptions(m.nLayer),
    }),
  );

  test('kept sets nested, counts and protection honoured, last token kept, batch = alone, no-op schedule = dense', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ m, prompts, o }) => {
        const cfg: MambaConfig = randomConfig({
          dModel: m.dModel,
          nLayer: m.nLayer,
          dState: m.dState,
          dConv: m.dConv,
          vocabSize: m.vocabSize,
        });
        const model = await randomModel(cfg, { seed: m.seed });
        try {
          const L = cfg.nLayer;
          const simba =
            o.flops !== undefined
              ? { ...o, flops: Math.max(o.flops, ...prompts.map((t) => trapezoidFloor(L, t.length, o.start ?? 0))) }
              : o;
          const batch = await model.prefill(
            prompts.map((tokens) => ({ tokens })),
            { simba, logits: 'all' },
          );
          const first = simba.protect?.first ?? 0,
            last = simba.protect?.last ?? 0;
          for (let i = 0; i < prompts.length; i++) {
            const T = prompts[i].length,
              r = batch[i];
            const plan = planSimba(cfg, T, simba);
            // counts: the plan's, raised to the protected tokens, layer after layer
            const want = [T];
            for (let l = 1; l < L; l++) want.push(keptAfter(want[l - 1], plan.keep[l - 1], first, last));
            expect(r.processed).toEqual(want);
            // nesting: layer l processed exactly the tokens with exitLayer > l
            expect(r.exitLayer.length).toBe(T);
            for (const e of r.exitLayer) expect(e >= 1 && e <= L).toBe(true);
            for (let l = 0; l < L; l++) expect(r.exitLayer.filter((e) => e > l).length).toBe(r.processed[l]);
            expect(r.exitLayer[T - 1]).toBe(L);
            for (let t = 0; t < T; t++) if (t < first || t >= T - last) expect(r.exitLayer[t]).toBe(L);
            expect(r.logits.length).toBe(T);
            for (const row of r.logits) expect(row.every(Number.isFinite)).toBe(true);
            // a prompt is pruned the same alone as in a batch ('random' mixes the batch index into its hash)
            if (prompts.length > 1 && simba.criterion !== 'random') {
              const alone = await model.logits(prompts[i], 'all', { simba });
              expect(Array.from(alone.exitLayer)).toEqual(Array.from(r.exitLayer));
              expect(maxRowErr(alone.logits, r.logits)).toBeLessThan(1e-5);
            }
            // nothing pruned: the dense result
            if (r.processed.every((n) => n === T)) {
              const dense = await model.logits(prompts[i], 'all');
              expect(maxRowErr(r.logits, dense.logits)).toBeLessThan(1e-5);
            }
          }
          // decoding continues from the pruned states
          const next = await model.decode(
            batch.map((r) => r.sequence),
            prompts.map(() => 0),
          );
          for (const row of next) expect(row.every(Number.isFinite)).toBe(true);
        } finally {
          model.dispose();
        }
      }),
      fuzzParams(60, { heavy: true, offset: 32 }),
    );
  });

  test('invalid simba options to prefill are E_ARG (nothing reaches the engine)', async () => {
    const model = await randomModel(randomConfig({ nLayer: 3 }), { seed: 3 });
    try {
      const bad = fc.oneof(
        fc.constantFrom<unknown>(
          null,
          0,
          'fast',
          [],
          {},
          { flops: 0 },
          { flops: 0.5, rLast: 0.5 },
          { keepCounts: [1] },
          { keepCounts: [2, 3] },
          { rLast: 0.5, protect: 5 },
          { rLast: 0.5, protect: { first: -1 } },
          { rLast: 0.5, start: 3 },
          { rLast: 0.5, seed: 1.5 },
          { rLast: 0.5, criterion: 'constructor' },
          { keepRatios: [0, 0] },
          { keepRatios: [NaN, 0.5] },
        ),
        fc.record({ rLast: fc.double({ min: 1.0000001, noNaN: true }) }),
      );
      await fc.assert(
        fc.asyncProperty(bad, async (simba) => {
          let err: unknown = null;
          try {
            await model.prefill([{ tokens: [1, 2, 3, 4, 5] }], { simba: simba as SimbaOptions });
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(SimbaError);
          expect((err as SimbaError).code).toBe('E_ARG');
        }),
        fuzzParams(40, { offset: 33 }),
      );
    } finally {
      model.dispose();
    }
  });
});
