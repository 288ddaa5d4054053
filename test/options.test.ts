/**
 * Strict options at every public entry: an unknown key is an E_ARG naming it and the nearest valid
 * key, a wrong type names the type received, `null` where an object is expected is an E_ARG (never a
 * TypeError), and random junk in any option gives a result or a SimbaError, nothing else.
 */
import * as path from 'path';
import fc from 'fast-check';

import { loadConfig, parseConfig } from '../lib/checkpoint/config';
import { loadTokenizer } from '../lib/checkpoint/tokenizer';
import { loadModel, randomModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import { planSimba, validateSimbaOptions } from '../lib/engine/simba';
import { SimbaError } from '../lib/errors';
import { generate } from '../lib/generate/generate';
import { evalChoice, evalLambada, perplexity, scoreContinuations } from '../lib/measure/eval';
import { budgetOptions, runBench } from '../lib/measure/bench';
import { highwayMap, renderHighwaySvg, type HighwayMap } from '../lib/measure/inspect';
import { describeType, editDistance, nearest } from '../lib/validate';
import { randomConfig } from './reference/random_model';
import { testSeed } from './helpers/util';

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');
const SEED = testSeed(7);

/** Runs f (sync or async) and returns what it threw (undefined when it did not). */
async function caught(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  return undefined;
}

async function expectArg(f: () => unknown, msg: RegExp): Promise<void> {
  const e = await caught(f);
  expect(e).toBeInstanceOf(SimbaError);
  expect({ code: (e as SimbaError).code, message: (e as SimbaError).message }).toEqual({
    code: 'E_ARG',
    message: expect.stringMatching(msg),
  });
}

/** An entry's three cases: an unknown key (with the suggestion), a wrong type (named), null options. */
interface EntryCases {
  unknown: [() => unknown, RegExp];
  wrongType: [() => unknown, RegExp];
  nullOptions: () => unknown;
}

let model: MambaModel;
let tiny: MambaModel;
let tinyMap: HighwayMap;
const tinyCfg = randomConfig();
beforeAll(async () => {
  model = await loadModel(SHIPPED);
  tiny = await randomModel(tinyCfg, { seed: 1 });
  tinyMap = await highwayMap(tiny, [1, 2, 3, 4], { rLast: 0.5 });
});
afterAll(() => {
  model?.dispose();
  tiny?.dispose();
});

const N = null as never;

const entries: Record<string, () => EntryCases> = {
  loadModel: () => ({
    unknown: [
      () => loadModel(SHIPPED, { weight: 'bf16' } as never),
      /^loadModel: unknown option 'weight' \(did you mean 'weights'\?\)$/,
    ],
    wrongType: [
      () => loadModel(SHIPPED, { tokenizer: 'yes' } as never),
      /^loadModel: tokenizer must be true or false, got the string 'yes'$/,
    ],
    nullOptions: () => loadModel(SHIPPED, N),
  }),
  'loadModel config': () => ({
    unknown: [
      () => loadModel(SHIPPED, { config: { allowUnknownKey: true } } as never),
      /unknown config option 'allowUnknownKey' \(did you mean 'allowUnknownKeys'\?\)/,
    ],
    wrongType: [
      () => loadModel(SHIPPED, { config: { onWarning: 'log' } } as never),
      /config\.onWarning must be a function, got the string 'log'/,
    ],
    nullOptions: () => loadModel(SHIPPED, { config: N }),
  }),
  randomModel: () => ({
    unknown: [() => randomModel(tinyCfg, { sed: 1 } as never), /^randomModel: unknown option 'sed' \(did you mean 'seed'\?\)$/],
    wrongType: [
      () => randomModel(tinyCfg, { seed: '1' } as never),
      /^randomModel: seed must be an integer in \[0, 4294967295\], got the string '1'$/,
    ],
    nullOptions: () => randomModel(tinyCfg, N),
  }),
  'randomModel shape': () => ({
    unknown: [() => randomModel('mamba-130', {}), /unknown shape 'mamba-130' \(did you mean 'mamba-130m'\?/],
    wrongType: [
      () => randomModel({ ...tinyCfg, dModel: '16' } as never),
      /config\.dModel must be an integer in \[1, 1073741823\], got the string '16'/,
    ],
    nullOptions: () => randomModel(N),
  }),
  'MambaModel.prefill': () => ({
    unknown: [
      () => model.prefill([{ tokens: [1, 2] }], { logit: 'all' } as never),
      /^prefill: unknown option 'logit' \(did you mean 'logits'\?\)$/,
    ],
    wrongType: [
      () => model.prefill([{ tokens: [1, '5', 3] as never }]),
      /^prefill input 0: tokens\[1\] must be an integer, got the string '5'$/,
    ],
    nullOptions: () => model.prefill([{ tokens: [1, 2] }], N),
  }),
  'MambaModel.prefill inputs': () => ({
    unknown: [
      () => model.prefill([{ token: [1, 2] } as never]),
      /^prefill: unknown inputs\[0\] option 'token' \(did you mean 'tokens'\?\)$/,
    ],
    wrongType: [
      () => model.prefill([{ tokens: [1], sequence: {} as never }]),
      /inputs\[0\]\.sequence: must be a Sequence .*got an object/,
    ],
    nullOptions: () => model.prefill([N]),
  }),
  'MambaModel.prefill simba': () => ({
    unknown: [
      () => model.prefill([{ tokens: [1, 2, 3] }], { simba: { flop: 0.9 } as never }),
      /^prefill: unknown simba option 'flop' \(did you mean 'flops'\?\)$/,
    ],
    wrongType: [
      () => model.prefill([{ tokens: [1, 2, 3] }], { simba: { flops: '0.9' } as never }),
      /simba\.flops must be a number in \(0, 1\], got the string '0\.9'/,
    ],
    nullOptions: () => model.prefill([{ tokens: [1, 2, 3] }], { simba: N }),
  }),
  'MambaModel.prefill simba.protect': () => ({
    unknown: [
      () => model.prefill([{ tokens: [1, 2, 3] }], { simba: { rLast: 0.5, protect: { frist: 1 } } as never }),
      /unknown simba\.protect option 'frist' \(did you mean 'first'\?\)/,
    ],
    wrongType: [
      () => model.prefill([{ tokens: [1, 2, 3] }], { simba: { rLast: 0.5, protect: { last: true } } as never }),
      /simba\.protect\.last must be an integer >= 0, got the boolean true/,
    ],
    nullOptions: () => model.prefill([{ tokens: [1, 2, 3] }], { simba: { rLast: 0.5, protect: N } }),
  }),
  'MambaModel.decode': () => ({
    unknown: [
      () => model.decode([model.newSequence()], [1], { signl: undefined } as never),
      /^decode: unknown option 'signl' \(did you mean 'signal'\?\)$/,
    ],
    wrongType: [
      () => model.decode([model.newSequence()], [1], { signal: 'stop' } as never),
      /^decode: signal must be an AbortSignal, got the string 'stop'$/,
    ],
    nullOptions: () => model.decode([model.newSequence()], [1], N),
  }),
  'MambaModel.logits': () => ({
    unknown: [
      () => model.logits([1, 2], 'last', { simab: { flops: 1 } } as never),
      /^logits: unknown option 'simab' \(did you mean 'simba'\?\)$/,
    ],
    wrongType: [
      () => model.logits([1, 2], 'al' as never),
      /logits must be 'last', 'all', 'none' or an array of positions, got the string 'al'/,
    ],
    nullOptions: () => model.logits([1, 2], 'last', N),
  }),
  generate: () => ({
    unknown: [
      () => generate(model, 'The', { maxToken: 3 } as never).next(),
      /^generate: unknown option 'maxToken' \(did you mean 'maxTokens'\?\)$/,
    ],
    wrongType: [() => generate(model, 'The', { temprature: 1 } as never).next(), /did you mean 'temperature'/],
    nullOptions: () => generate(model, 'The', N).next(),
  }),
  'generate types': () => ({
    unknown: [() => generate(model, 'The', { stopAtEOS: false } as never).next(), /did you mean 'stopAtEos'/],
    wrongType: [
      () => generate(model, 'The', { temperature: '0.5' } as never).next(),
      /^generate: temperature must be a number in \[0, 100\], got the string '0\.5'$/,
    ],
    nullOptions: () => generate(model, 'The', { stop: N }).next(),
  }),
  'Sequence.restore': () => ({
    unknown: [() => model.newSequence().restore(new Uint8Array(3)), /not a simba-ssm sequence snapshot/],
    wrongType: [
      () => model.newSequence().restore('snapshot' as never),
      /^restore: the snapshot must be a Buffer or Uint8Array .*got the string 'snapshot'$/,
    ],
    nullOptions: () => model.newSequence().restore(N),
  }),
  runBench: () => ({
    unknown: [() => runBench(tiny, { run: 1 } as never), /^runBench: unknown option 'run' \(did you mean 'runs'\?\)$/],
    wrongType: [() => runBench(tiny, { lengths: '128' } as never), /^runBench: lengths must be an array, got the string '128'$/],
    nullOptions: () => runBench(tiny, N),
  }),
  'runBench simba': () => ({
    unknown: [
      () => runBench(tiny, { flops: [0.9], simba: { criterio: 'norm' } } as never),
      /unknown simba option 'criterio' \(did you mean 'criterion'\?\)/,
    ],
    wrongType: [
      () => runBench(tiny, { flops: [0.9], simba: { criterion: 7 } } as never),
      /simba\.criterion must be one of .*got the number 7/,
    ],
    nullOptions: () => runBench(tiny, { simba: N }),
  }),
  budgetOptions: () => ({
    unknown: [
      () => budgetOptions(6, 64, 0.7, { strat: 1 } as never),
      /^budgetOptions: unknown simba option 'strat' \(did you mean 'start'\?\)$/,
    ],
    wrongType: [
      () => budgetOptions(6, '64' as never, 0.7),
      /^budgetOptions: T \(prompt length\) must be an integer >= 1, got the string '64'$/,
    ],
    nullOptions: () => budgetOptions(6, 64, 0.7, N),
  }),
  perplexity: () => ({
    unknown: [
      () => perplexity(model, [1, 2, 3], { ctx: 2, bach: 2 } as never),
      /^perplexity: unknown option 'bach' \(did you mean 'batch'\?\)$/,
    ],
    wrongType: [
      () => perplexity(model, [1, 2, 3], { ctx: '256' } as never),
      /^perplexity: ctx must be an integer in \[2, 65536\], got the string '256'$/,
    ],
    nullOptions: () => perplexity(model, [1, 2, 3], N),
  }),
  evalChoice: () => ({
    unknown: [
      () => evalChoice(model, [{ line: 0, context: 'a', choices: ['b', 'c'], label: 0 }], { onProgres: () => {} } as never),
      /^evalChoice: unknown option 'onProgres' \(did you mean 'onProgress'\?\)$/,
    ],
    wrongType: [
      () => evalChoice(model, [{ line: 0, context: 'a', choices: ['b', 'c'], label: 0 }], { batch: 1.5 }),
      /^evalChoice: batch must be an integer >= 1, got the number 1\.5$/,
    ],
    nullOptions: () => evalChoice(model, [], N),
  }),
  evalLambada: () => ({
    unknown: [() => evalLambada(model, [{ line: 0, text: 'a b' }], { simbaa: {} } as never), /did you mean 'simba'/],
    wrongType: [
      () => evalLambada(model, [{ line: 0, text: 'a b' }], { signal: {} } as never),
      /^evalLambada: signal must be an AbortSignal, got an object$/,
    ],
    nullOptions: () => evalLambada(model, [{ line: 0, text: 'a b' }], N),
  }),
  scoreContinuations: () => ({
    unknown: [() => scoreContinuations(model, [{ ctx: [1], cont: [2] }], { Batch: 1 } as never), /did you mean 'batch'/],
    wrongType: [
      () => scoreContinuations(model, 'pairs' as never),
      /pairs must be an array of \{ ctx, cont \}, got the string 'pairs'/,
    ],
    nullOptions: () => scoreContinuations(model, [{ ctx: [1], cont: [2] }], N),
  }),
  highwayMap: () => ({
    unknown: [
      () => highwayMap(model, [1, 2, 3], { keepCount: [2] } as never),
      /^highwayMap: unknown simba option 'keepCount' \(did you mean 'keepCounts'\?\)$/,
    ],
    wrongType: [
      () => highwayMap(model, 'text' as never, { flops: 0.9 }),
      /^highwayMap: ids must be an array of token ids, got the string 'text'$/,
    ],
    nullOptions: () => highwayMap(model, [1, 2, 3], N),
  }),
  planSimba: () => ({
    unknown: [
      () => planSimba(model.config, 64, { rlast: 0.5 } as never),
      /^planSimba: unknown simba option 'rlast' \(did you mean 'rLast'\?\)$/,
    ],
    wrongType: [
      () => planSimba(model.config, '64' as never, { rLast: 0.5 }),
      /^planSimba: T \(the prompt length\) must be an integer >= 1, got the string '64'$/,
    ],
    nullOptions: () => planSimba(model.config, 64, N),
  }),
  loadTokenizer: () => ({
    unknown: [
      () => loadTokenizer(SHIPPED, { eosToken: 0 } as never),
      /^loadTokenizer: unknown option 'eosToken' \(did you mean 'eosTokenId'\?\)$/,
    ],
    wrongType: [
      () => loadTokenizer(SHIPPED, { eosTokenId: '0' } as never),
      /^loadTokenizer: eosTokenId must be an integer >= 0, got the string '0'$/,
    ],
    nullOptions: () => loadTokenizer(SHIPPED, N),
  }),
  parseConfig: () => ({
    unknown: [
      () => parseConfig({}, 'config.json', { allowUnknown: true } as never),
      /^parseConfig: unknown option 'allowUnknown' \(did you mean 'allowUnknownKeys'\?\)$/,
    ],
    wrongType: [
      () => parseConfig({}, 'config.json', { allowUnknownKeys: 1 } as never),
      /^parseConfig: allowUnknownKeys must be true or false, got the number 1$/,
    ],
    nullOptions: () => parseConfig({}, 'config.json', N),
  }),
  'Tokenizer.encode/decode': () => ({
    unknown: [
      () => model.tokenizer!.encode('The', { addSpecialToken: true } as never),
      /^encode: unknown option 'addSpecialToken' \(did you mean 'addSpecialTokens'\?\)$/,
    ],
    wrongType: [
      () => model.tokenizer!.decode([1], { skipSpecialTokens: 'yes' } as never),
      /^decode: skipSpecialTokens must be true or false, got the string 'yes'$/,
    ],
    nullOptions: () => model.tokenizer!.createStreamDecoder(N),
  }),
  renderHighwaySvg: () => ({
    unknown: [
      () => renderHighwaySvg(tinyMap, { titel: 'x' } as never),
      /^renderHighwaySvg: unknown option 'titel' \(did you mean 'title'\?\)$/,
    ],
    wrongType: [
      () => renderHighwaySvg(tinyMap, { title: 5 } as never),
      /^renderHighwaySvg: title must be a string, got the number 5$/,
    ],
    nullOptions: () => renderHighwaySvg(tinyMap, N),
  }),
  loadConfig: () => ({
    unknown: [
      () => loadConfig(SHIPPED, { onwarning: () => {} } as never),
      /^loadConfig: unknown option 'onwarning' \(did you mean 'onWarning'\?\)$/,
    ],
    wrongType: [
      () => loadConfig(SHIPPED, { onWarning: 1 } as never),
      /^loadConfig: onWarning must be a function, got the number 1$/,
    ],
    nullOptions: () => loadConfig(SHIPPED, N),
  }),
};

describe.each(Object.keys(entries))('%s', (name) => {
  test('an unknown key names it and suggests the nearest valid one', async () => {
    const [f, msg] = entries[name]().unknown;
    await expectArg(f, msg);
  });
  test('a wrong type names the type received', async () => {
    const [f, msg] = entries[name]().wrongType;
    await expectArg(f, msg);
  });
  test('null options are an E_ARG, not a TypeError', async () => {
    await expectArg(entries[name]().nullOptions, /must be .*, got null$/);
  });
});

describe('the vocabulary', () => {
  test('describeType names what was received', () => {
    expect([null, undefined, '5', 5, true, [1, 2], new Float32Array(2), {}, () => 1, new Map()].map(describeType)).toEqual([
      'null',
      'undefined',
      "the string '5'",
      'the number 5',
      'the boolean true',
      'an array of 2',
      'a Float32Array',
      'an object',
      'a function',
      'a Map',
    ]);
  });

  test('edit distance and the nearest key', () => {
    expect(editDistance('maxToken', 'maxTokens')).toBe(1);
    expect(editDistance('temprature', 'temperature')).toBe(1);
    expect(editDistance('tpoK', 'topK')).toBe(1); // an adjacent swap counts one
    expect(editDistance('', 'abc')).toBe(3);
    expect(nearest('TOPK', ['topK', 'topP'])).toBe('topK');
    expect(nearest('banana', ['maxTokens', 'seed'])).toBeUndefined();
  });

  test('options must be plain objects: a Map, an array or a boxed value is refused, Object.create(null) is fine', async () => {
    await expectArg(
      () => model.prefill([{ tokens: [1] }], new Map() as never),
      /^prefill: options must be an object, got a Map$/,
    );
    await expectArg(
      () => model.decode([model.newSequence()], [1], [] as never),
      /^decode: options must be an object, got an array of 0$/,
    );
    await expectArg(() => generate(model, 'The', Object(5)).next(), /^generate: options must be an object, got a Number$/);
    const bare = Object.assign(Object.create(null) as object, { logits: 'all' as const });
    const [r] = await model.prefill([{ tokens: [1, 2] }], bare);
    expect(r.positions).toEqual([0, 1]);
  });

  test('a far-off unknown key lists the known ones instead of guessing', async () => {
    await expectArg(
      () => generate(model, 'The', { banana: 1 } as never).next(),
      /unknown option 'banana' \(known: maxTokens, temperature, .*signal\)/,
    );
  });

  test('validateSimbaOptions takes a where for its messages', () => {
    expect(() => validateSimbaOptions(model.config, { flops: 0.5, crit: 'norm' } as never, 'bench')).toThrow(
      /^bench: unknown simba option 'crit'/,
    );
  });
});

/** Junk: anything fast-check makes (objects, arrays, strings, numbers, null, undefined ...). */
const junk = fc.anything({
  withBoxedValues: true,
  withNullPrototype: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  maxDepth: 2,
});

/** A call on junk resolves or throws a SimbaError; anything else (TypeError, RangeError) fails. */
async function onlySimbaErrors(f: () => unknown): Promise<boolean> {
  const e = await caught(f);
  if (e !== undefined && !(e instanceof SimbaError)) throw new Error(`threw ${String(e)}`);
  return true;
}

describe('random junk gives results or SimbaErrors, nothing else', () => {
  const key = (keys: string[]) => fc.constantFrom(...keys, 'bogus');
  const run = (prop: fc.IAsyncPropertyWithHooks<[string, unknown]> | fc.IAsyncProperty<[string, unknown]>) =>
    fc.assert(prop, { seed: SEED, numRuns: 60 });

  test(`prefill options and inputs (seed ${SEED})`, async () => {
    await run(
      fc.asyncProperty(key(['logits', 'simba', 'signal', 'tokens', 'sequence']), junk, async (k, x) => {
        await onlySimbaErrors(() => tiny.prefill([{ tokens: [1, 2, 3], [k]: x }]));
        await onlySimbaErrors(() => tiny.prefill([{ tokens: [1, 2, 3] }], { [k]: x }));
        return onlySimbaErrors(() => tiny.prefill(x as never, { [k]: x }));
      }),
    );
  });

  test(`simba options (seed ${SEED})`, async () => {
    await run(
      fc.asyncProperty(
        key(['flops', 'rLast', 'keepCounts', 'keepRatios', 'start', 'criterion', 'reduce', 'protect', 'seed']),
        junk,
        async (k, x) => {
          await onlySimbaErrors(() => tiny.prefill([{ tokens: [1, 2, 3] }], { simba: { rLast: 0.5, [k]: x } }));
          await onlySimbaErrors(() => planSimba(tinyCfg, 8, { [k]: x }));
          return onlySimbaErrors(() => tiny.prefill([{ tokens: [1, 2, 3] }], { simba: x as never }));
        },
      ),
    );
  });

  test(`decode and logits (seed ${SEED})`, async () => {
    await run(
      fc.asyncProperty(key(['signal', 'simba']), junk, async (k, x) => {
        await onlySimbaErrors(() => tiny.decode([tiny.newSequence()], [1], { [k]: x }));
        await onlySimbaErrors(() => tiny.decode(x as never, x as never));
        await onlySimbaErrors(() => tiny.logits([1, 2], x as never, { [k]: x }));
        return onlySimbaErrors(() => tiny.logits(x as never));
      }),
    );
  });

  test(`generate (first piece) (seed ${SEED})`, async () => {
    await run(
      fc.asyncProperty(
        key(['maxTokens', 'temperature', 'topK', 'topP', 'seed', 'stop', 'stopAtEos', 'simba', 'signal']),
        junk,
        async (k, x) => {
          const it = generate(tiny, [1, 2, 3], { maxTokens: 2, [k]: x });
          await onlySimbaErrors(() => it.next());
          await it.return(undefined);
          return onlySimbaErrors(() => generate(tiny, x as never).next());
        },
      ),
    );
  });

  test(`loadModel and randomModel (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(
        key(['weights', 'device', 'config', 'nonFinite', 'tokenizer', 'onProgress', 'seed']),
        junk,
        async (k, x) => {
          const models: MambaModel[] = [];
          const keep = async (p: Promise<MambaModel>) => {
            models.push(await p);
          };
          try {
            await onlySimbaErrors(() => keep(loadModel(SHIPPED, { [k]: x })));
            await onlySimbaErrors(() => keep(randomModel(tinyCfg, { [k]: x })));
            await onlySimbaErrors(() => keep(randomModel({ ...tinyCfg, [k === 'seed' ? 'dModel' : 'nLayer']: x } as never)));
            return onlySimbaErrors(() => keep(loadModel(x as never)));
          } finally {
            for (const m of models) m.dispose();
          }
        },
      ),
      { seed: SEED, numRuns: 25 },
    );
  });

  test(`evaluations and the highway map (seed ${SEED})`, async () => {
    await run(
      fc.asyncProperty(key(['ctx', 'simba', 'batch', 'signal']), junk, async (k, x) => {
        await onlySimbaErrors(() => perplexity(tiny, [1, 2, 3, 4, 5], { ctx: 4, [k]: x }));
        await onlySimbaErrors(() => scoreContinuations(tiny, [{ ctx: [1, 2], cont: [3] }], { [k]: x }));
        await onlySimbaErrors(() => scoreContinuations(tiny, x as never));
        await onlySimbaErrors(() =>
          evalChoice(model, [{ line: 1, context: 'The jury', choices: [' said', ' ate'], label: 0 }], { [k]: x }),
        );
        await onlySimbaErrors(() => highwayMap(tiny, [1, 2, 3, 4], x as never));
        return onlySimbaErrors(() => highwayMap(tiny, x as never, { rLast: 0.5 }));
      }),
    );
  });

  test(`config, tokenizer and sequence entries (seed ${SEED})`, async () => {
    await run(
      fc.asyncProperty(key(['allowUnknownKeys', 'onWarning', 'eosTokenId']), junk, async (k, x) => {
        await onlySimbaErrors(() => parseConfig({ model_type: 'mamba', hidden_size: 16 }, 'c.json', { [k]: x }));
        await onlySimbaErrors(() => parseConfig(x, 'c.json'));
        await onlySimbaErrors(() => loadTokenizer(SHIPPED, { [k]: x }));
        return onlySimbaErrors(() => tiny.newSequence().restore(x as never));
      }),
    );
  });
});
