/**
 * Simba pruning end to end: schedules and the budget solver, the kept sets' invariants, and pruned
 * prefill (+ dense decode afterwards) against the float64 reference with the same semantics.
 */
import { loadModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import {
  checkSimba,
  planSimba,
  solveRLast,
  trapezoidFloor,
  validateSimbaOptions,
  type SimbaCriterion,
} from '../lib/engine/simba';
import { LIMITS } from '../lib/limits';
import { NATIVE_CRITERION } from '../bindings';
import type { MambaConfig } from '../lib/types';
import { refForward, refWeightsFromEngineTensors, type RefWeights } from './reference/mamba_ref';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { maxRowErr, randTokens, relErr, writeCheckpoint } from './helpers/util';

describe('schedules', () => {
  const cfg = randomConfig({ nLayer: 12 });

  test('trapezoid: full up to the start layer, then linear down to rLast', () => {
    const p = planSimba(cfg, 100, { rLast: 0.1, start: 2 });
    expect(p.processed.slice(0, 3)).toEqual([100, 100, 100]);
    expect(p.processed[11]).toBe(10);
    for (let l = 1; l < 12; l++) expect(p.processed[l]).toBeLessThanOrEqual(p.processed[l - 1]);
    // linear: r_l = 1 - 0.9 (l - 2) / 9
    for (let l = 3; l < 12; l++) expect(p.processed[l]).toBe(Math.ceil(100 * (1 - (0.9 * (l - 2)) / 9) - 1e-9));
    expect(p.keep).toEqual([...p.processed.slice(1), p.processed[11]]);
  });

  test.each([
    [12, 2048, 0.75],
    [12, 2048, 0.6],
    [24, 512, 0.55],
    [6, 100, 0.9],
    [48, 2048, 0.51],
    [12, 97, 0.7],
  ])('budget solver (L=%i, T=%i, target %f) lands within one token per layer', (L, T, target) => {
    const c = randomConfig({ nLayer: L });
    const p = planSimba(c, T, { flops: target });
    const tokens = p.processed.reduce((a, b) => a + b, 0);
    expect(Math.abs(tokens - target * L * T)).toBeLessThanOrEqual(L);
    expect(p.relFlops).toBeCloseTo(tokens / (L * T), 12);
  });

  test('budgets below the trapezoid floor are refused with the reason', () => {
    const floor = trapezoidFloor(12, 2048, 0);
    expect(floor).toBeGreaterThan(0.45);
    expect(floor).toBeLessThan(0.55);
    expect(() => solveRLast(12, 2048, 0.3)).toThrow(/below what the trapezoid can reach.*keepCounts/);
  });

  test('explicit keep counts and ratios', () => {
    const p = planSimba(cfg, 50, { keepCounts: [40, 30, 30, 20, 20, 10, 10, 5, 5, 5, 2] });
    expect(p.processed).toEqual([50, 40, 30, 30, 20, 20, 10, 10, 5, 5, 5, 2]);
    const q = planSimba(cfg, 50, { keepRatios: Array(11).fill(0.5) });
    expect(q.processed).toEqual([50, ...Array(11).fill(25)]);
  });

  test('bad options are clear errors', () => {
    expect(() => validateSimbaOptions(cfg, {})).toThrow(/exactly one of flops, rLast, keepCounts/);
    expect(() => validateSimbaOptions(cfg, { flops: 0.5, rLast: 0.2 })).toThrow(/exactly one/);
    expect(() => validateSimbaOptions(cfg, { flops: 1.5 })).toThrow(/simba.flops must be a number in \(0, 1\]/);
    expect(() => validateSimbaOptions(cfg, { keepCounts: [3, 2] })).toThrow(/needs 11 or 12 entries/);
    expect(() =>
      validateSimbaOptions(cfg, {
        keepCounts: Array(11)
          .fill(5)
          .map((v, i) => (i === 3 ? 9 : v)),
      }),
    ).toThrow(/must not increase/);
    expect(() => validateSimbaOptions(cfg, { rLast: 0.5, criterion: 'bogus' as SimbaCriterion })).toThrow(
      /criterion must be one of/,
    );
  });
});

describe('pruned prefill', () => {
  const cfg: MambaConfig = randomConfig({ vocabSize: 89, dModel: 24, nLayer: 4, dState: 8 });
  const tensors = randomEngineTensors(cfg, 31);
  const ref: RefWeights = refWeightsFromEngineTensors(cfg, tensors);
  const dir = writeCheckpoint(cfg, tensors);
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(dir);
  });
  afterAll(() => m.dispose());
  const ids = randTokens(26, cfg.vocabSize, 77);

  test('keep ratio 1.0 gives exactly the dense logits', async () => {
    const dense = await m.logits(ids, 'all');
    const full = await m.logits(ids, 'all', { simba: { rLast: 1 } });
    expect(full.processed).toEqual([26, 26, 26, 26]);
    full.logits.forEach((row, i) => expect(Array.from(row)).toEqual(Array.from(dense.logits[i])));
  });

  test.each(['simba', 'local', 'norm', 'uniform'] as const)(
    'criterion %s: kept sets and logits at every position (early exit) match float64',
    async (criterion) => {
      for (const reduce of criterion === 'simba' || criterion === 'local' ? (['max', 'sum'] as const) : (['max'] as const)) {
        const simba = { keepCounts: [20, 13, 7, 7], criterion, reduce };
        const got = await m.logits(ids, 'all', { simba });
        const want = refForward(cfg, ref, ids, undefined, { simba: { keepCounts: [20, 13, 7, 7], criterion, reduce } });
        // exitLayer[t] = layers token t went through: processed by layer l <=> exitLayer > l,
        // and the reference's kept[l - 1] is what layer l processes.
        for (let l = 1; l < cfg.nLayer; l++) {
          const processed = ids.map((_, t) => t).filter((t) => got.exitLayer[t] > l);
          expect(processed).toEqual(want.kept[l - 1]);
        }
        expect(got.processed).toEqual([26, 20, 13, 7]);
        expect(maxRowErr(got.logits, want.logits)).toBeLessThan(1e-5);
      }
    },
  );

  test('kept sets are nested, ordered, hold the last token and the protected ones (every criterion)', async () => {
    for (const criterion of ['simba', 'local', 'norm', 'uniform', 'random'] as const) {
      const r = await m.logits(ids, 'last', {
        simba: { keepCounts: [15, 9, 4], criterion, protect: { first: 2, last: 3 }, seed: 5 },
      });
      const L = cfg.nLayer,
        T = ids.length;
      let prev = ids.map((_, t) => t);
      for (let l = 0; l < L - 1; l++) {
        const kept = prev.filter((t) => r.exitLayer[t] > l + 1); // kept after layer l = processed by layer l+1
        expect(kept.every((t) => prev.includes(t))).toBe(true);
        expect(kept).toEqual([...kept].sort((a, b) => a - b));
        for (const t of [0, 1, T - 3, T - 2, T - 1]) expect(kept).toContain(t);
        expect(kept.length).toBe(Math.max([15, 9, 4][l], 5)); // 5 protected tokens outrank a smaller count
        prev = kept;
      }
      expect(r.processed).toEqual([26, 15, 9, 5]);
    }
  });

  test('random criterion is reproducible by seed and differs across seeds', async () => {
    const a = await m.logits(ids, 'last', { simba: { keepCounts: [10, 6, 3], criterion: 'random', seed: 1 } });
    const b = await m.logits(ids, 'last', { simba: { keepCounts: [10, 6, 3], criterion: 'random', seed: 1 } });
    const c = await m.logits(ids, 'last', { simba: { keepCounts: [10, 6, 3], criterion: 'random', seed: 2 } });
    expect(Array.from(a.exitLayer)).toEqual(Array.from(b.exitLayer));
    expect(Array.from(a.exitLayer)).not.toEqual(Array.from(c.exitLayer));
  });

  test('decode after a pruned prefill continues densely from the pruned states (vs float64)', async () => {
    const simba = { keepCounts: [18, 11, 6, 6], criterion: 'simba' as const, reduce: 'max' as const };
    const seq = m.newSequence();
    const [p] = await m.prefill([{ sequence: seq, tokens: ids }], { simba });
    const want = refForward(cfg, ref, ids, undefined, { simba });
    expect(relErr(p.logits[0], want.logits[ids.length - 1])).toBeLessThan(1e-5);
    let state = want.state;
    for (const next of [4, 40, 80]) {
      const [lg] = await m.decode([seq], [next]);
      const r = refForward(cfg, ref, [next], state);
      expect(relErr(lg, r.logits[0])).toBeLessThan(1e-5);
      state = r.state;
    }
  });

  test('a batch with Simba gives what each prompt gives alone', async () => {
    const prompts = [ids, ids.slice(0, 11), ids.slice(5)];
    const simba = { flops: 0.7 };
    const batch = await m.prefill(
      prompts.map((tokens) => ({ tokens })),
      { simba, logits: 'all' },
    );
    for (let i = 0; i < prompts.length; i++) {
      const alone = await m.logits(prompts[i], 'all', { simba });
      expect(batch[i].processed).toEqual(alone.processed);
      expect(maxRowErr(batch[i].logits, alone.logits)).toBeLessThan(1e-6);
    }
  });

  test('a plan from checkSimba runs as it is: the same prefill and step as its options, checked against the prompt', async () => {
    const simba = { keepCounts: [17, 9, 5], criterion: 'norm' as const, protect: { first: 1 } };
    const plan = checkSimba(cfg, ids.length, simba, 'test');
    expect(Object.isFrozen(plan) && Object.isFrozen(plan.keep) && Object.isFrozen(plan.options.protect)).toBe(true);
    expect(plan.options).toEqual(simba);
    expect(plan.options).not.toBe(simba); // a copy: changing the caller's options later changes no plan
    const byOptions = await m.logits(ids, 'all', { simba });
    const byPlan = await m.logits(ids, 'all', { simba: plan });
    expect(byPlan.processed).toEqual([26, 17, 9, 5]);
    expect(Array.from(byPlan.exitLayer)).toEqual(Array.from(byOptions.exitLayer));
    byPlan.logits.forEach((row, i) => expect(Array.from(row)).toEqual(Array.from(byOptions.logits[i])));
    const step = async (o: { simba: typeof simba | typeof plan }) =>
      (
        await m.step(
          [{ sequence: m.newSequence(), tokens: ids, sample: [{ temperature: 0, logprobs: 0, rng: { lo: 1, hi: 0 } }] }],
          o,
        )
      ).samples[0][0];
    expect(await step({ simba: plan })).toEqual(await step({ simba }));
    await expect(m.logits(ids.slice(1), 'last', { simba: plan })).rejects.toMatchObject({
      code: 'E_ARG',
      param: 'simba',
      message: 'prefill: the Simba plan is for a prompt of 26 tokens, this one has 25',
    });
    const other = checkSimba(randomConfig({ nLayer: 6 }), ids.length, { rLast: 0.5 });
    await expect(m.step([{ sequence: m.newSequence(), tokens: ids }], { simba: other })).rejects.toMatchObject({
      code: 'E_ARG',
      message: 'step: the Simba plan is for 6 layers, this model has 4',
    });
    // a plan made by planSimba (not checked for the engine) is options to check, and not options
    await expect(m.logits(ids, 'last', { simba: planSimba(cfg, ids.length, simba) as never })).rejects.toMatchObject({
      code: 'E_ARG',
      message: expect.stringMatching(/^prefill: unknown simba option 'T'/),
    });
  });

  test('checkSimba: the prompt limit, and the criterion names in the native enum order', () => {
    expect(() => checkSimba(cfg, LIMITS.simbaTokens + 1, { rLast: 0.5 }, 'generate')).toThrow(
      `generate: a Simba prefill takes at most ${LIMITS.simbaTokens} tokens per prompt (got ${LIMITS.simbaTokens + 1})`,
    );
    expect(checkSimba(cfg, LIMITS.simbaTokens, { rLast: 0.5 }).T).toBe(LIMITS.simbaTokens);
    expect(NATIVE_CRITERION).toEqual({ simba: 0, local: 1, norm: 2, uniform: 3, random: 4 });
  });

  test('results report FLOPs: relative and absolute', async () => {
    const r = await m.logits(ids, 'last', { simba: { flops: 0.75 } });
    const info = m.info();
    expect(r.relFlops).toBeCloseTo(r.processed.reduce((a, b) => a + b, 0) / (cfg.nLayer * ids.length), 12);
    expect(Math.abs(r.relFlops - 0.75) * cfg.nLayer * ids.length).toBeLessThanOrEqual(cfg.nLayer);
    expect(r.flops).toBe(r.processed.reduce((a, b) => a + b, 0) * info.layerFlops);
  });
});
