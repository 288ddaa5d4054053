/**
 * The mask in the native sampler: only allowed ids are picked (greedy and sampled, with top-k /
 * top-p / min-p), logprobs are over the allowed ids, a job without a matcher in the same batch is
 * untouched, and a matcher that allows nothing gives token -1.
 */
import * as path from 'path';

import { loadAddon } from '../../bindings';
import { loadTokenizer } from '../../lib/checkpoint/tokenizer';
import { compileFor } from '../../lib/constrain/grammar';
import { rngFromSeed, type SamplingParams } from '../../lib/engine/lm';
import { packSampling, unpackSampling } from '../../lib/engine/sampling';

const tok = loadTokenizer(path.join(__dirname, '..', '..', 'models', 'brown-mamba-s'));
const V = tok.vocabSize;
const digits = compileFor('test', 'root ::= [0-9]+', tok, 0);

function logits(seed: number): Float32Array {
  const x = new Float32Array(V);
  let s = seed;
  for (let i = 0; i < V; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    x[i] = (s / 2 ** 31) * 8;
  }
  return x;
}

test('greedy and sampled picks stay in the mask; the unconstrained job beside them is unchanged', () => {
  const allowed = new Set(digits.matcher().allowed());
  expect(allowed.size).toBeGreaterThan(5);
  const x = logits(3);
  let best = -1;
  for (const t of allowed) if (best < 0 || x[t] > x[best]) best = t;
  const argmax = x.indexOf(Math.max(...x));
  expect(allowed.has(argmax)).toBe(false);
  const jobs: { row: number; params: SamplingParams }[] = [
    { row: 0, params: { temperature: 0, rng: rngFromSeed(1), matcher: digits.matcher(), logprobs: 3 } },
    { row: 0, params: { temperature: 0, rng: rngFromSeed(1) } },
    ...[{}, { topK: 3 }, { topP: 0.3 }, { minP: 0.5 }].map((o, k) => ({
      row: 0,
      params: { temperature: 1, rng: rngFromSeed(k), matcher: digits.matcher(), ...o },
    })),
  ];
  const r = loadAddon().sampleLogits(x, V, packSampling(jobs, V));
  const out = unpackSampling(
    r,
    jobs.map((j) => j.params),
  );
  expect(out[0].token).toBe(best);
  expect(out[1].token).toBe(argmax);
  for (const o of out.slice(2)) expect(allowed.has(o.token)).toBe(true);
  // logprobs over the allowed ids only: the top 3 are allowed and the chosen one's is log p among them
  let z = 0;
  for (const t of allowed) z += Math.exp(x[t] - x[best]);
  expect(out[0].logprob).toBeCloseTo(-Math.log(z), 4);
  for (const t of out[0].top) expect(allowed.has(t.token)).toBe(true);
});

test('many samples at temperature 1 over several rows: all allowed, and the matchers advance', () => {
  for (let seed = 0; seed < 20; seed++) {
    const m = digits.matcher();
    const p: SamplingParams = { temperature: 1, rng: rngFromSeed(seed), matcher: m };
    const [t] = unpackSampling(loadAddon().sampleLogits(logits(seed), V, packSampling([{ row: 0, params: p }], V)), [p]);
    expect(/^[0-9]+$/.test(tok.decode([t.token]))).toBe(true);
    expect(m.complete()).toBe(true); // advanced past the digits
  }
});

test('a matcher that allows nothing gives token -1', () => {
  const g = compileFor('test', 'root ::= []', tok, -1); // an empty class: nothing can follow
  const p: SamplingParams = { temperature: 1, rng: rngFromSeed(1), matcher: g.matcher() };
  const [t] = unpackSampling(loadAddon().sampleLogits(logits(1), V, packSampling([{ row: 0, params: p }], V)), [p]);
  expect(t.token).toBe(-1);
});

test('the sampler refuses a matcher that is not one', () => {
  const packed = packSampling([{ row: 0, params: { temperature: 0, rng: rngFromSeed(1) } }], V);
  packed.matchers = [{} as never];
  expect(() => loadAddon().sampleLogits(logits(1), V, packed)).toThrow(/sampling.matchers\[0\] must be a GrammarMatcher/);
});
