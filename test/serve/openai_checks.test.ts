/**
 * One check per option between HTTP and the engine: lib/serve/openai.ts checks the HTTP shape and
 * hands the values to the library's own checks (samplingParams, checkSimba), so a field has the JS
 * API's bounds and message (in its snake_case name) and a 400 naming it; the Simba plan the server
 * makes is the object the engine runs, passed through the scheduler unchanged.
 */
import { rngFromSeed, type StepInput, type StepOptions } from '../../lib/engine/lm';
import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { isSimbaError } from '../../lib/errors';
import { samplingParams } from '../../lib/generate/sampler';
import { LIMITS } from '../../lib/limits';
import { chatTemplate, PLAIN_CHAT_TEMPLATE } from '../../lib/checkpoint/chat_template';
import { ApiError } from '../../lib/serve/errors';
import { parseCompletion, type ParseContext } from '../../lib/serve/openai';
import { Scheduler } from '../../lib/serve/scheduler';
import { parseContext } from './helpers';

let model: MambaModel;
let ctx: ParseContext;
beforeAll(async () => {
  model = await loadModel();
  ctx = parseContext(model, chatTemplate('plain', PLAIN_CHAT_TEMPLATE));
});
afterAll(() => model.dispose());

const body = (extra: Record<string, unknown>) => ({ model: 'm', prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 2, ...extra });

/** The ApiError a body is refused with (fails when it is accepted). */
async function refusal(extra: Record<string, unknown>): Promise<ApiError> {
  const e = await parseCompletion(body(extra), ctx).then(
    () => null,
    (x: unknown) => x,
  );
  if (!(e instanceof ApiError)) throw new Error(`expected an ApiError for ${JSON.stringify(extra)}, got ${String(e)}`);
  return e;
}

/** The message generate()'s sampler check gives for one option (without its 'generate: ' prefix). */
function jsMessage(o: Record<string, unknown>): string {
  try {
    samplingParams(o, 'generate', model.config.vocabSize);
  } catch (e) {
    if (isSimbaError(e, 'E_ARG') || isSimbaError(e, 'E_TOKEN')) return e.message.replace(/^generate: /, '');
    throw e;
  }
  throw new Error(`samplingParams accepted ${JSON.stringify(o)}`);
}

describe('sampling fields: the JS API bounds and messages, a 400 naming the field', () => {
  test('temperature: the same bound, LIMITS.temperature, on both sides', async () => {
    expect(LIMITS.temperature).toBe(100);
    const spec = await parseCompletion(body({ temperature: 5 }), ctx);
    expect(spec.sampling(0).temperature).toBe(5);
    expect((await parseCompletion(body({ temperature: 100 }), ctx)).sampling(0).temperature).toBe(100);
    const e = await refusal({ temperature: 100.5 });
    expect(e.status).toBe(400);
    expect(e.param).toBe('temperature');
    expect(e.message).toBe(jsMessage({ temperature: 100.5 }));
  });

  test.each([
    ['top_p', 'topP', 0],
    ['top_p', 'topP', 1.5],
    ['min_p', 'minP', -0.1],
    ['presence_penalty', 'presencePenalty', 3],
    ['frequency_penalty', 'frequencyPenalty', -2.5],
    ['repetition_penalty', 'repetitionPenalty', 0],
    ['top_k', 'topK', 1.5],
    ['seed', 'seed', -1],
    ['seed', 'seed', 2 ** 53],
  ])("%s = %p: the message of generate()'s %s check, param %s", async (field, key, value) => {
    const e = await refusal({ [field]: value });
    expect(e.status).toBe(400);
    expect(e.param).toBe(field);
    expect(e.code).toBe('invalid_value');
    expect(e.message).toBe(jsMessage({ [key]: value }).replace(key, field));
  });

  test('logit_bias: a key outside the vocabulary is invalid_token, a value out of range invalid_value', async () => {
    const key = await refusal({ logit_bias: { '999999': 1 } });
    expect([key.status, key.param, key.code]).toEqual([400, 'logit_bias', 'invalid_token']);
    expect(key.message).toBe(jsMessage({ logitBias: { '999999': 1 } }).replace('logitBias', 'logit_bias'));
    const value = await refusal({ logit_bias: { '5': 101 } });
    expect([value.status, value.param, value.code]).toEqual([400, 'logit_bias', 'invalid_value']);
    expect(value.message).toBe('logit_bias[5] must be a number in [-100, 100], got the number 101');
  });

  test('a seed above 2^32 is taken by both (the sampler state takes 53 bits), choices seeded seed + j', async () => {
    const seed = 2 ** 40 + 3;
    expect(samplingParams({ seed }, 'generate', model.config.vocabSize).rng).toEqual(rngFromSeed(seed));
    const spec = await parseCompletion(body({ seed, n: 2 }), ctx);
    expect(spec.sampling(0).rng).toEqual(rngFromSeed(seed));
    expect(spec.sampling(1).rng).toEqual(rngFromSeed(seed + 1));
    // fresh state per call: sampling advances it in place
    expect(spec.sampling(0).rng).not.toBe(spec.sampling(0).rng);
  });

  test("OpenAI's defaults and null as a field left out", async () => {
    const p = (await parseCompletion(body({ temperature: null, top_p: null, top_k: -1 }), ctx)).sampling(0);
    expect([p.temperature, p.topP, p.topK, p.minP, p.repetitionPenalty, p.logprobs]).toEqual([1, 1, 0, 0, 1, -1]);
    expect((await parseCompletion(body({ logprobs: 3 }), ctx)).sampling(0).logprobs).toBe(3);
    expect((await refusal({ max_tokens: 65 })).param).toBe('max_tokens');
    expect((await refusal({ n: 5 })).param).toBe('n');
  });
});

describe('simba: checked once, and the plan the server makes is the one the engine runs', () => {
  test('the spec holds a frozen plan for each prompt; the scheduler hands that object to step()', async () => {
    const prompt = model.tokenizer!.encode('The jury said it did find that many of the laws were outmoded.');
    const simba = { keepCounts: new Array<number>(model.config.nLayer - 1).fill(8) };
    const spec = await parseCompletion(body({ prompt, simba }), ctx);
    const plan = spec.promptSimba[0]!;
    expect(Object.isFrozen(plan) && Object.isFrozen(plan.keep) && Object.isFrozen(plan.options)).toBe(true);
    expect(plan.T).toBe(prompt.length);
    expect(plan.keep).toHaveLength(model.config.nLayer);
    const seen: StepOptions['simba'][] = [];
    const watched = new Proxy(model, {
      get(target, key, receiver) {
        if (key === 'step')
          return (inputs: StepInput[], opts?: StepOptions) => {
            seen.push(opts?.simba);
            return target.step(inputs, opts);
          };
        const x: unknown = Reflect.get(target, key, receiver);
        return typeof x === 'function' ? (x as (...a: unknown[]) => unknown).bind(target) : x;
      },
    });
    const sched = new Scheduler(watched, { tokenizer: model.tokenizer, maxRunning: 2, prefillBudget: 512 });
    try {
      const h = sched.submit({
        prompt,
        maxTokens: 2,
        sampling: [{ temperature: 0, rng: rngFromSeed(0) }],
        simba: plan,
        onEvent: () => undefined,
      });
      expect(await h.done).toBe('done');
    } finally {
      await sched.close(1000);
    }
    expect(seen[0]).toBe(plan); // the prefill step: the very plan, not options planned again
    expect(seen.slice(1).every((x) => x === undefined)).toBe(true); // decode steps are dense
  });

  test("a client simba the prompt cannot take is a 400 naming simba, with checkSimba's message", async () => {
    const e = await refusal({ simba: { flops: 0.05 } });
    expect([e.status, e.param]).toEqual([400, 'simba']);
    expect(e.message).toMatch(/^simba\.flops 0\.05 is below what the trapezoid can reach/);
    const bad = await refusal({ simba: { flops: 0.5, crit: 'norm' } });
    expect([bad.status, bad.param]).toEqual([400, 'simba']);
    expect(bad.message).toBe(
      "unknown simba option 'crit' (known: flops, rLast, keepCounts, keepRatios, start, criterion, reduce, protect, seed)",
    );
  });
});
