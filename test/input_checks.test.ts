/**
 * Inputs the API used to accept, hang on or crash on with a TypeError: each is now a SimbaError
 * with its code and a message naming the place, the parameter and what was given. Also a tokenizer
 * with ids past the model's vocabulary (another model's tokenizer) is refused at load.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadModel, randomModel } from '../lib/engine/load';
import { rngFromSeed, type SamplingParams } from '../lib/engine/lm';
import type { MambaModel } from '../lib/engine/model';
import { solveRLast } from '../lib/engine/simba';
import { SimbaError } from '../lib/errors';
import { generate } from '../lib/generate/generate';
import { perplexity } from '../lib/measure/eval';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { copyShipped, tmpDir, writeCheckpoint } from './helpers/util';

const ROOT = path.resolve(__dirname, '..');
const SHIPPED = path.join(ROOT, 'models', 'brown-mamba-s');
const NEOX = path.join(ROOT, 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json');

/** The SimbaError `f` throws or rejects with: its code and message. */
async function failure(f: () => unknown): Promise<{ code: string; message: string }> {
  try {
    await f();
  } catch (e) {
    if (!(e instanceof SimbaError)) throw new Error(`expected a SimbaError, got ${String(e)}`, { cause: e });
    return { code: e.code, message: e.message };
  }
  throw new Error('expected a failure');
}

describe('a tokenizer of another model', () => {
  test('brown-mamba-s (4096 ids) with the 50k GPT-NeoX tokenizer.json is E_TOKENIZER at load', async () => {
    const dir = copyShipped();
    fs.copyFileSync(NEOX, path.join(dir, 'tokenizer.json'));
    const f = await failure(() => loadModel(dir));
    expect(f.code).toBe('E_TOKENIZER');
    expect(f.message).toMatch(
      /^loadModel: the tokenizer .*tokenizer\.json has 50277 token ids but the model's vocabulary has 4096 \(ids 4096\.\.50276 have no embedding\)/,
    );
  });

  test('a vocabulary padded beyond the tokenizer (50280 rows for its 50277 ids) loads', async () => {
    const cfg = randomConfig({ vocabSize: 50280, dModel: 8, dInner: 16, nLayer: 1 });
    const dir = writeCheckpoint(cfg, randomEngineTensors(cfg, 1));
    fs.copyFileSync(NEOX, path.join(dir, 'tokenizer.json'));
    const m = await loadModel(dir);
    try {
      expect(m.tokenizer!.vocabSize).toBe(50277);
      expect(m.config.vocabSize).toBe(50280);
    } finally {
      m.dispose();
    }
  });
});

describe('loading: paths that are not a checkpoint folder', () => {
  test("config.json given instead of its folder: 'not a folder'", async () => {
    const f = await failure(() => loadModel(path.join(SHIPPED, 'config.json')));
    expect(f).toEqual({
      code: 'E_IO',
      message: expect.stringMatching(/^loadModel: '.*config\.json' is not a folder/) as unknown,
    });
  });

  test('model.safetensors that is a directory: E_IO, not a plain EISDIR Error', async () => {
    const dir = tmpDir();
    fs.copyFileSync(path.join(SHIPPED, 'config.json'), path.join(dir, 'config.json'));
    fs.mkdirSync(path.join(dir, 'model.safetensors'));
    const f = await failure(() => loadModel(dir, { tokenizer: false }));
    expect(f).toEqual({
      code: 'E_IO',
      message: expect.stringMatching(/model\.safetensors: is a directory, not a safetensors file/) as unknown,
    });
  });
});

describe('calls', () => {
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(SHIPPED);
  });
  afterAll(() => m.dispose());

  const params = (over: Record<string, unknown> = {}) => ({ temperature: 0, rng: rngFromSeed(1), ...over }) as SamplingParams;

  test('decodeSample with a fake history of length 1e9 is refused at once (it used to hang)', async () => {
    const [r] = await m.prefill([{ tokens: [1, 2, 3] }]);
    const t0 = performance.now();
    const f = await failure(() =>
      m.decodeSample([r.sequence], [4], [params({ history: { length: 1e9 }, repetitionPenalty: 1.2 })]),
    );
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(f).toEqual({ code: 'E_ARG', message: 'decodeSample: params[0].history must be an array of token ids, got an object' });
    const big = await failure(() =>
      m.decodeSample([r.sequence], [4], [params({ history: new Int32Array(3_000_000), repetitionPenalty: 1.2 })]),
    );
    expect(big.message).toMatch(/^decodeSample: params\[0\]\.history has 3000000 ids, more than the \d+ a request can generate/);
    const id = await failure(() => m.decodeSample([r.sequence], [4], [params({ history: [1, 99999], repetitionPenalty: 1.2 })]));
    expect(id).toEqual({ code: 'E_TOKEN', message: 'decodeSample: params[0].history[1] = 99999 is not a token id in [0, 4096)' });
    expect(r.sequence.position).toBe(3); // nothing ran
  });

  test('NaN in a logit bias or the RNG, and other params out of range, name the parameter', async () => {
    const seq = m.newSequence();
    const cases: [Record<string, unknown>, string][] = [
      [{ logitBias: new Map([[5, NaN]]) }, 'step: params[0].logitBias.get(5) must be a number'],
      [{ rng: { lo: NaN, hi: 0 } }, 'step: params[0].rng.lo must be an integer in [0, 4294967295], got the number NaN'],
      [{ rng: { lo: 1, hi: 2 ** 32 } }, 'step: params[0].rng.hi must be an integer in [0, 4294967295]'],
      [{ rng: null }, 'step: params[0].rng must be {lo, hi} (from rngFromSeed()), got null'],
      [{ temperature: NaN }, 'step: params[0].temperature must be a number in [0, 100], got the number NaN'],
      [{ topP: 2 }, 'step: params[0].topP must be a number in [0, 1], got the number 2'],
      [{ topK: 1.5 }, 'step: params[0].topK must be an integer >= 0, got the number 1.5'],
      [{ repetitionPenalty: 0 }, 'step: params[0].repetitionPenalty must be a number in (0,'],
      [{ logprobs: -2 }, 'step: params[0].logprobs must be an integer in [-1, 1000], got the number -2'],
      [{ logitBias: { 5: 1 } }, 'step: params[0].logitBias must be a Map of token id -> bias, got an object'],
    ];
    for (const [over, msg] of cases) {
      const f = await failure(() => m.step([{ sequence: seq, tokens: [1], sample: [params(over)] }]));
      expect(f.code).toBe('E_ARG');
      expect(f.message.startsWith(msg)).toBe(true);
    }
    expect(seq.position).toBe(0);
  });

  test('generate: a non-model is E_ARG (was a TypeError); its errors say generate, not step', async () => {
    for (const bad of [{}, null, 'model', 42]) {
      const f = await failure(() => generate(bad as MambaModel, 'x').next());
      expect(f.code).toBe('E_ARG');
      expect(f.message).toMatch(/^generate: model must be a loaded model \(from loadModel\(\) or randomModel\(\)\), got /);
    }
    expect(await failure(() => generate(m, [1, 99999]).next())).toEqual({
      code: 'E_TOKEN',
      message: 'generate: token id 99999 at index 1 is outside the vocabulary [0, 4096)',
    });
    expect(await failure(() => generate(m, []).next())).toEqual({
      code: 'E_ARG',
      message: 'generate: empty prompt (at least one token is needed)',
    });
    const simba = await failure(() => generate(m, [1, 2], { simba: { flops: 0.5, rLast: 0.5 } }).next());
    expect(simba.code).toBe('E_ARG');
    expect(simba.message).not.toMatch(/^step:/);
    const unknown = await failure(() => generate(m, [1, 2], { simba: { flop: 0.5 } as object }).next());
    expect(unknown.message).toMatch(/^generate: unknown simba option 'flop'/);
  });

  test('perplexity without options is E_ARG naming ctx (was a TypeError); a non-model is E_ARG', async () => {
    const ids = m.tokenizer!.encode('The jury said it did not find any evidence.');
    expect(await failure(() => perplexity(m, ids, undefined as never))).toEqual({
      code: 'E_ARG',
      message: 'perplexity: ctx (the window length, e.g. 256) is required',
    });
    const f = await failure(() => perplexity(null as never, ids, { ctx: 8 }));
    expect(f.code).toBe('E_ARG');
    expect(f.message).toMatch(/^perplexity: model must be a loaded model/);
  });
});

test('solveRLast refuses NaN and other non-numbers instead of returning a plan', () => {
  expect(() => solveRLast(6, 19, NaN)).toThrow(
    'solveRLast: the target (relative FLOPs) must be a number in (0, 1], got the number NaN',
  );
  expect(() => solveRLast(6, 19, 1.5)).toThrow(/must be a number in \(0, 1\], got the number 1.5/);
  expect(() => solveRLast(6.5, 19, 0.8)).toThrow('solveRLast: L (the layer count) must be an integer >= 1, got the number 6.5');
  expect(() => solveRLast(6, NaN, 0.8)).toThrow(/T \(the prompt length\) must be an integer >= 1/);
  expect(() => solveRLast(6, 19, 0.8, 6)).toThrow(/start must be an integer in \[0, 5\]/);
  expect(solveRLast(6, 19, 0.8).relFlops).toBeCloseTo(0.8, 1);
});

test('randomModel refuses sizes the engine cannot hold (32-bit)', async () => {
  const f = await failure(() => randomModel(randomConfig({ dModel: 2 ** 31 })));
  expect(f).toEqual({
    code: 'E_ARG',
    message: 'randomModel: config.dModel must be an integer in [1, 1073741823], got the number 2147483648',
  });
});
