/**
 * Native sampling (native/cpu/sampling.cc) against the float64 reference (test/reference/sampling_ref.ts)
 * on fresh random logits: greedy = argmax, the chosen token for every seed and every mix of top-k /
 * top-p / min-p (so the support sets and the walk agree exactly), penalties and logit bias,
 * logprobs of the chosen token and the top n to 1e-5, RNG advance, batch independence; then the
 * model-level entry points (step, decodeSample) and generate() at temperature 0.
 */
import fc from 'fast-check';

import { loadAddon } from '../bindings';
import { SimbaError } from '../lib/errors';
import { rngFromSeed, type SamplingParams } from '../lib/engine/lm';
import { loadModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import { packSampling, unpackSampling } from '../lib/engine/sampling';
import { generate } from '../lib/generate/generate';
import { makeRng } from './reference/random_model';
import { refSample, splitmix, type RefParams } from './reference/sampling_ref';
import { repeats } from './helpers/sanitized';

const addon = loadAddon();

function randLogits(rows: number, V: number, seed: number, scale = 4): Float32Array {
  const rng = makeRng(seed);
  const out = new Float32Array(rows * V);
  for (let i = 0; i < out.length; i++) out[i] = (rng.uniform() * 2 - 1) * scale;
  return out;
}

function toParams(p: RefParams, seed: number): SamplingParams {
  return {
    temperature: p.temperature,
    topK: p.topK,
    topP: p.topP,
    minP: p.minP,
    presencePenalty: p.presence,
    frequencyPenalty: p.frequency,
    repetitionPenalty: p.repetition,
    logitBias: p.bias,
    history: p.history,
    logprobs: p.logprobs ?? -1,
    limit: p.limit,
    rng: rngFromSeed(seed),
  };
}

/** Samples row r of logits [rows, V] natively with each params (one job per params). */
function native(logits: Float32Array, V: number, jobs: { row: number; params: SamplingParams }[]) {
  return unpackSampling(
    addon.sampleLogits(logits, V, packSampling(jobs, V)),
    jobs.map((j) => j.params),
  );
}

const stateOf = (p: SamplingParams) => BigInt(p.rng.lo) | (BigInt(p.rng.hi) << 32n);

describe('native sampling vs the float64 reference', () => {
  const V = 2000;

  test('temperature 0 is the argmax (lowest id on ties) and does not draw', () => {
    const lg = randLogits(8, V, 11);
    lg[3 * V + 17] = 50;
    lg[3 * V + 5] = 50; // a tie in row 3
    const jobs = Array.from({ length: 8 }, (_, row) => ({ row, params: toParams({ temperature: 0 }, row) }));
    const got = native(lg, V, jobs);
    for (let r = 0; r < 8; r++) {
      const row = lg.subarray(r * V, (r + 1) * V);
      let best = 0;
      for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
      expect(got[r].token).toBe(best);
      expect(jobs[r].params.rng).toEqual(rngFromSeed(r));
    }
    expect(got[3].token).toBe(5);
  });

  const configs: RefParams[] = [
    { temperature: 1 },
    { temperature: 0.7, topK: 40 },
    { temperature: 1.3, topP: 0.9 },
    { temperature: 0.8, topK: 50, topP: 0.95 },
    { temperature: 1, minP: 0.2 },
    { temperature: 0.5, topK: 100, minP: 0.05, topP: 0.8 },
    { temperature: 2, topP: 0.3 },
    { temperature: 1, topK: 1 },
    { temperature: 0.9, topP: 0.999, limit: 1500 },
  ];

  test.each(configs)('the chosen token equals the reference for 40 seeds: %j', (cfg) => {
    const lg = randLogits(4, V, 23);
    for (let seed = 0; seed < 40; seed++) {
      const row = seed % 4;
      const params = toParams(cfg, 1000 + seed);
      const [got] = native(lg, V, [{ row, params }]);
      const want = refSample(lg.subarray(row * V, (row + 1) * V), cfg, BigInt(1000 + seed));
      expect(want.support).not.toBeNull();
      expect(want.support).toContain(got.token);
      expect(got.token).toBe(want.token);
      expect(stateOf(params)).toBe(want.state); // one draw, splitmix64
    }
  });

  test('the samples follow the support distribution (top-k 5, 4000 draws, chi-square)', () => {
    const lg = randLogits(1, V, 5, 2);
    const cfg: RefParams = { temperature: 1, topK: 5 };
    const counts = new Map<number, number>();
    // 4000 jobs on one row, each with its own seed
    const got = native(
      lg,
      V,
      Array.from({ length: 4000 }, (_, i) => ({ row: 0, params: toParams(cfg, 77 + i) })),
    );
    for (const g of got) counts.set(g.token, (counts.get(g.token) ?? 0) + 1);
    const { support } = refSample(lg, cfg, 0n);
    const w = support!.map((i) => Math.exp(lg[i]));
    const z = w.reduce((a, b) => a + b, 0);
    let chi = 0;
    support!.forEach((id, j) => {
      const e = (4000 * w[j]) / z;
      chi += ((counts.get(id) ?? 0) - e) ** 2 / e;
    });
    expect([...counts.keys()].every((k) => support!.includes(k))).toBe(true);
    expect(chi).toBeLessThan(18.5); // 4 degrees of freedom, p = 0.001
  });

  test('penalties and logit bias match the reference (tokens and logprobs)', () => {
    const lg = randLogits(2, V, 31, 1);
    const history = [3, 3, 3, 7, 9, 9, 1999, 42];
    const bias = new Map([
      [5, 8],
      [3, 2.5],
      [100, -100],
    ]);
    const cfgs: RefParams[] = [
      { temperature: 0, presence: 1.5, history, logprobs: 3 },
      { temperature: 0, frequency: -2, history, logprobs: 3 },
      { temperature: 0, repetition: 1.7, history, logprobs: 3 },
      { temperature: 0, bias, logprobs: 3 },
      { temperature: 0.8, topK: 20, presence: 0.5, frequency: 0.3, repetition: 1.2, bias, history, logprobs: 5 },
    ];
    for (const cfg of cfgs) {
      for (let row = 0; row < 2; row++) {
        const params = toParams(cfg, 9);
        const [got] = native(lg, V, [{ row, params }]);
        const want = refSample(lg.subarray(row * V, (row + 1) * V), cfg, 9n);
        expect(got.token).toBe(want.token);
        expect(Math.abs(got.logprob - want.logprob)).toBeLessThan(1e-5);
        expect(got.top.map((t) => t.token)).toEqual(want.top.map((t) => t.token));
        got.top.forEach((t, i) => expect(Math.abs(t.logprob - want.top[i].logprob)).toBeLessThan(1e-5));
      }
    }
    // a big bias forces the token; frequency penalty removes a dominant token
    const forced = native(lg, V, [{ row: 0, params: toParams({ temperature: 1, bias: new Map([[1234, 100]]) }, 1) }]);
    expect(forced[0].token).toBe(1234);
  });

  test('logprobs of the chosen token and the top 20 to 1e-5, at V = 50280', () => {
    const BV = 50280;
    const lg = randLogits(3, BV, 41, 6);
    for (let row = 0; row < 3; row++) {
      const cfg: RefParams = { temperature: row === 0 ? 0 : 0.9, topP: 0.95, logprobs: 20 };
      const params = toParams(cfg, row);
      const [got] = native(lg, BV, [{ row, params }]);
      const want = refSample(lg.subarray(row * BV, (row + 1) * BV), cfg, BigInt(row));
      expect(got.token).toBe(want.token);
      expect(Math.abs(got.logprob - want.logprob)).toBeLessThan(1e-5);
      expect(got.top.map((t) => t.token)).toEqual(want.top.map((t) => t.token));
      got.top.forEach((t, i) => expect(Math.abs(t.logprob - want.top[i].logprob)).toBeLessThan(1e-5));
    }
  });

  const BIG_V_SEEDS = repeats(12, 4); // (both rows either way)
  // At V = 50280 the sampler takes its fast paths: top-k through block maxima (4 k <= V / 64), top-p
  // through the histogram of weights and the walk through block sums. Rows with many exact ties
  // (logits rounded to 1/4) check the order (x desc, id asc) across block boundaries.
  test.each([
    { temperature: 0.8, topK: 40 },
    { temperature: 0.8, topK: 40, topP: 0.95 },
    { temperature: 1, topP: 0.95 },
    { temperature: 0.7, topP: 0.5, minP: 0.02 },
    { temperature: 1.2, minP: 0.1 },
    { temperature: 1 },
  ] as RefParams[])(`at V = 50280, smooth and tied rows, the token equals the reference for ${BIG_V_SEEDS} seeds: %j`, (cfg) => {
    const BV = 50280;
    const lg = randLogits(2, BV, 61, 5);
    for (let i = BV; i < 2 * BV; i++) lg[i] = Math.round(lg[i] * 4) / 4;
    for (let seed = 0; seed < BIG_V_SEEDS; seed++) {
      const row = seed % 2;
      const params = toParams(cfg, 300 + seed);
      const [got] = native(lg, BV, [{ row, params }]);
      const want = refSample(lg.subarray(row * BV, (row + 1) * BV), cfg, BigInt(300 + seed));
      expect(got.token).toBe(want.token);
      expect(stateOf(params)).toBe(want.state);
    }
  });

  test('a row holding NaN or infinities gives an id in range, never a crash', () => {
    const BV = 5000;
    const lg = randLogits(3, BV, 71);
    for (let i = 0; i < BV; i += 7) lg[i] = NaN;
    lg[BV + 3] = Infinity;
    for (let i = 2 * BV; i < 3 * BV; i++) lg[i] = NaN;
    for (const cfg of [{ temperature: 1 }, { temperature: 1, topK: 10 }, { temperature: 1, topP: 0.9 }, { temperature: 0 }])
      for (let row = 0; row < 3; row++) {
        const [got] = native(lg, BV, [{ row, params: toParams({ ...cfg, logprobs: 3 }, row) }]);
        expect(got.token).toBeGreaterThanOrEqual(0);
        expect(got.token).toBeLessThan(BV);
      }
  });

  test('a row samples the same alone or in a batch of 32, and the RNG advances per draw', () => {
    const lg = randLogits(32, V, 51);
    const cfg: RefParams = { temperature: 1, topP: 0.9 };
    const batch = native(
      lg,
      V,
      Array.from({ length: 32 }, (_, row) => ({ row, params: toParams(cfg, row) })),
    );
    for (const row of [0, 13, 31]) expect(native(lg, V, [{ row, params: toParams(cfg, row) }])[0]).toEqual(batch[row]);
    const p = toParams(cfg, 5);
    const a = [0, 1, 2].map(() => native(lg, V, [{ row: 0, params: p }])[0].token);
    let st = 5n;
    const b = [0, 1, 2].map(() => {
      const r = refSample(lg.subarray(0, V), cfg, st);
      st = r.state;
      return r.token;
    });
    expect(a).toEqual(b);
    expect(splitmix(5n).state).toBe(5n + 0x9e3779b97f4a7c15n);
  });

  test('bad sampling arrays are a clear error', () => {
    const lg = randLogits(1, 10, 1);
    const ok = packSampling([{ row: 0, params: toParams({ temperature: 1 }, 1) }], 10);
    expect(() => addon.sampleLogits(lg, 10, { ...ok, rows: Int32Array.of(1) })).toThrow(/not one of the 1 logits rows/);
    expect(() => addon.sampleLogits(lg, 10, { ...ok, params: new Float64Array(3) })).toThrow(/params: expected 9 values/);
    // a range error names the job, the parameter, its range and the value
    expect(() => addon.sampleLogits(lg, 10, { ...ok, params: Float64Array.of(-1, 0, 1, 0, 0, 0, 1, -1, 0) })).toThrow(
      'sampling job 0: temperature must be a finite number >= 0, got -1',
    );
    expect(() => addon.sampleLogits(lg, 10, { ...ok, params: Float64Array.of(1, 0, NaN, 0, 0, 0, 1, -1, 0) })).toThrow(
      'sampling job 0: topP must be a finite number >= 0 and <= 1, got NaN',
    );
    expect(() => addon.sampleLogits(lg, 10, { ...ok, params: Float64Array.of(1, 2.5, 1, 0, 0, 0, 1, -1, 0) })).toThrow(
      'sampling job 0: topK must be an integer >= 0, got 2.5',
    );
    expect(() => addon.sampleLogits(lg, 10, { ...ok, params: Float64Array.of(1, 0, 1, 0, 0, 0, 0, -1, 0) })).toThrow(
      'sampling job 0: repetitionPenalty must be a finite number > 0, got 0',
    );
    const nanBias = { ...ok, biasIds: Int32Array.of(3), biasValues: Float32Array.of(NaN), biasOffsets: Int32Array.of(0, 1) };
    expect(() => addon.sampleLogits(lg, 10, nanBias)).toThrow('sampling job 0: logit bias of token 3 must be finite, got NaN');
    expect(() =>
      packSampling([{ row: 0, params: { ...toParams({ temperature: 1 }, 1), logitBias: new Map([[10, 1]]) } }], 10),
    ).toThrow(/outside the vocabulary/);
  });
});

describe('native sampling in the engine', () => {
  let model: MambaModel;
  beforeAll(async () => {
    model = await loadModel();
  });
  afterAll(() => model.dispose());

  test('decodeSample at temperature 0 is the argmax of decode() logits; step mixes prompts and decode tokens', async () => {
    const ids = model.tokenizer!.encode('The jury said that the city');
    const [a] = await model.prefill([{ tokens: ids }]);
    const [b] = await model.prefill([{ tokens: ids }]);
    const argmax = (r: Float32Array) => r.indexOf(Math.max(...r));
    let tokA = argmax(a.logits[0]),
      tokB = tokA;
    for (let i = 0; i < 6; i++) {
      const [lg] = await model.decode([a.sequence], [tokA]);
      const [s] = await model.decodeSample([b.sequence], [tokB], [{ temperature: 0, rng: rngFromSeed(0), logprobs: 2 }]);
      expect(s.token).toBe(argmax(lg));
      const m = Math.max(...lg);
      const lse = m + Math.log(lg.reduce((acc, v) => acc + Math.exp(v - m), 0));
      expect(Math.abs(s.logprob - (lg[s.token] - lse))).toBeLessThan(1e-5);
      expect(s.top[0]).toEqual({ token: s.token, logprob: s.logprob });
      tokA = argmax(lg);
      tokB = s.token;
    }
    // a fresh prompt and a decode token in one call
    const c = model.newSequence();
    const r = await model.step([
      {
        sequence: c,
        tokens: ids,
        sample: [
          { temperature: 0, rng: rngFromSeed(0) },
          { temperature: 0, rng: rngFromSeed(1) },
        ],
      },
      { sequence: b.sequence, tokens: [tokB] },
    ]);
    expect(r.samples[0].map((s) => s.token)).toEqual([argmax(a.logits[0]), argmax(a.logits[0])]);
    expect(r.samples[1]).toEqual([]);
    expect(c.position).toBe(ids.length);
  });

  test('generate() at temperature 0 equals a greedy loop over prefill/decode logits', async () => {
    const ids = model.tokenizer!.encode('The jury said');
    const got: number[] = [];
    for await (const p of generate(model, ids, { maxTokens: 12, temperature: 0, stopAtEos: false }))
      if (p.token >= 0) got.push(p.token);
    const [r] = await model.prefill([{ tokens: ids }]);
    const argmax = (row: Float32Array) => row.indexOf(Math.max(...row));
    const want = [argmax(r.logits[0])];
    while (want.length < 12) want.push(argmax((await model.decode([r.sequence], [want[want.length - 1]]))[0]));
    expect(got).toEqual(want);
  });

  test('generate() with a seed is reproducible, different seeds differ, logprobs are reported', async () => {
    const run = async (seed: number) => {
      const out: number[] = [];
      for await (const p of generate(model, 'The jury said', {
        maxTokens: 16,
        temperature: 1,
        topK: 0,
        topP: 1,
        seed,
        stopAtEos: false,
        logprobs: 1,
      })) {
        if (p.token >= 0) {
          out.push(p.token);
          expect(p.logprob).toBeLessThanOrEqual(0);
          expect(p.top).toHaveLength(1);
        }
      }
      return out;
    };
    const a = await run(3);
    expect(await run(3)).toEqual(a);
    expect(await run(4)).not.toEqual(a);
  });
});

test('junk sampling options of generate() give a result or a SimbaError, nothing else', async () => {
  const model = await loadModel();
  try {
    const keys = [
      'minP',
      'presencePenalty',
      'frequencyPenalty',
      'repetitionPenalty',
      'logitBias',
      'logprobs',
      'temperature',
      'topP',
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...keys), fc.anything({ maxDepth: 2 }), async (k, x) => {
        const it = generate(model, [1, 2, 3], { maxTokens: 2, [k]: x });
        try {
          await it.next();
        } catch (e) {
          if (!(e instanceof SimbaError)) throw e;
        } finally {
          await it.return(undefined);
        }
        return true;
      }),
      { seed: 5, numRuns: 80 },
    );
  } finally {
    model.dispose();
  }
});
