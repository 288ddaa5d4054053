/**
 * generate({ jsonSchema | responseFormat | regex | choice }) through the native engine, on a
 * random-weight model with the GPT-NeoX tokenizer (50k tokens) whose logits are flattened, sampling
 * at temperature 1 over several seeds: every output that finished (before maxTokens) parses and
 * validates against its schema with ajv (random schemas, fast-check), matches its regex (random
 * regexes; checked by the independent recognizer), is one of the choices; bad schemas / regexes (fuzzed) are an E_ARG, never a crash or a
 * hang; two constraint options at once are refused.
 */
import * as fs from 'fs';
import * as path from 'path';

import fc from 'fast-check';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { SimbaError } from '../../lib/errors';
import { generate, type GenerateOptions } from '../../lib/generate/generate';
import { regexToGbnf } from '../../lib/constrain/regex';
import { rootArb, rx } from '../helpers/constraint_arbs';
import { parseGbnf } from '../helpers/gbnf_check';
import { repeats } from '../helpers/sanitized';
import { newAjv } from '../helpers/json_validate';
import { writeCheckpoint } from '../helpers/util';
import { randomConfig, randomEngineTensors } from '../reference/random_model';

const EOS = 0;
let model: MambaModel;
/** Closing characters favoured (logit +4), so strings and containers end within the token budget. */
let closers: Record<number, number>;

beforeAll(async () => {
  const cfg = randomConfig({ vocabSize: 50280, dModel: 32, nLayer: 2, eosTokenId: EOS });
  const tensors = randomEngineTensors(cfg, 7);
  tensors.find((t) => t.name === 'norm_f')!.data.fill(0.05); // flat logits: samples cover the mask
  const dir = writeCheckpoint(cfg, tensors);
  fs.copyFileSync(path.join(__dirname, '..', 'fixtures', 'gpt-neox-20b-tokenizer.json'), path.join(dir, 'tokenizer.json'));
  model = await loadModel(dir);
  closers = {};
  for (const c of ['"', '}', ']', '"}', '"]', ',']) for (const id of model.tokenizer!.encode(c)) closers[id] = 4;
});
afterAll(() => model.dispose());

const MAX = 160;

/** The text generated and whether it finished before maxTokens. */
async function run(prompt: string, o: GenerateOptions): Promise<{ text: string; finished: boolean }> {
  let text = '';
  let tokens = 0;
  const max = o.maxTokens ?? MAX;
  for await (const p of generate(model, prompt, { temperature: 1, topK: 0, topP: 1, maxTokens: max, ...o })) {
    text += p.text;
    if (p.token >= 0) tokens++;
  }
  return { text, finished: tokens < max };
}

// seeds per random schema or regex, and of the responseFormat runs (fewer under test:sanitize)
const SCHEMA_SEEDS = [1, 2, 3].slice(0, repeats(3, 1));
const REGEX_SEEDS = [1, 2].slice(0, repeats(2, 1));
const FORMAT_SEEDS = repeats(6, 3);

test('random schemas x seeds at temperature 1: every finished output parses and validates', async () => {
  const ajv = newAjv();
  const schemas = fc.sample(rootArb, { numRuns: 24, seed: 29 });
  let finished = 0,
    total = 0;
  for (const [i, { schema }] of schemas.entries()) {
    const validate = ajv.compile(schema);
    for (const seed of SCHEMA_SEEDS) {
      const r = await run('JSON: ', { jsonSchema: schema, seed: seed + 10 * i, logitBias: closers });
      total++;
      if (!r.finished) continue;
      finished++;
      let value: unknown;
      expect(() => (value = JSON.parse(r.text))).not.toThrow();
      expect({ schema, text: r.text, valid: validate(value), errors: validate.errors ?? null }).toEqual({
        schema,
        text: r.text,
        valid: true,
        errors: null,
      });
    }
  }
  // most runs end by the grammar, not by maxTokens (else the check above would check little)
  expect(finished).toBeGreaterThan(total / 2);
});

test('responseFormat json_object and json_schema: finished outputs are JSON of the right shape', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 },
    },
    required: ['name', 'age', 'tags'],
    additionalProperties: false,
  };
  const validate = newAjv().compile(schema);
  let finished = 0;
  for (let seed = 1; seed <= FORMAT_SEEDS; seed++) {
    const obj = await run('x', { responseFormat: { type: 'json_object' }, seed, logitBias: closers });
    if (obj.finished) {
      const v: unknown = JSON.parse(obj.text);
      expect(typeof v === 'object' && v !== null && !Array.isArray(v)).toBe(true);
      finished++;
    }
    const js = await run('x', {
      responseFormat: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
      seed,
      logitBias: closers,
    });
    if (js.finished) {
      expect(validate(JSON.parse(js.text))).toBe(true);
      finished++;
    }
  }
  // at least half of the 2 x FORMAT_SEEDS runs finish
  expect(finished).toBeGreaterThanOrEqual(FORMAT_SEEDS);
});

test('random regexes x seeds: every finished output matches', async () => {
  // Matched with the independent Earley recognizer on the converted grammar (regex.test.ts checks that
  // grammar against RegExp): RegExp itself backtracks exponentially on nested quantifiers over the
  // long outputs a sampler produces, such as (a*)* over 100 a's.
  const regexes = fc.sample(rx, { numRuns: 30, seed: 29 });
  let finished = 0;
  for (const [i, r] of regexes.entries()) {
    const g = parseGbnf(regexToGbnf(r.src));
    for (const seed of REGEX_SEEDS) {
      const out = await run('re: ', { regex: r.src, seed: seed + 10 * i, maxTokens: 40 });
      if (!out.finished) continue;
      finished++;
      expect({ src: r.src, text: out.text, ok: g.accepts(out.text) }).toEqual({ src: r.src, text: out.text, ok: true });
    }
  }
  // more than half of the runs finish
  expect(finished).toBeGreaterThan((regexes.length * REGEX_SEEDS.length) / 2);
});

test('choice: always one of the strings', async () => {
  const choices = ['yes', 'no', 'maybe so', '🙂 fine'];
  const seen = new Set<string>();
  for (let seed = 1; seed <= 12; seed++) {
    const r = await run('Answer: ', { choice: choices, seed });
    expect(r.finished).toBe(true);
    expect(choices).toContain(r.text);
    seen.add(r.text);
  }
  expect(seen.size).toBeGreaterThan(1);
});

test('fuzzed schemas and regexes: an E_ARG before generating, or output; never a crash or a hang', async () => {
  const values = fc.sample(fc.jsonValue({ maxDepth: 3 }), { numRuns: 60, seed: 11 });
  const sources = fc.sample(fc.string({ unit: fc.constantFrom(...'ab|()[]{}^$\\*+?.-,0dwk<>=!:'.split('')), maxLength: 10 }), {
    numRuns: 60,
    seed: 12,
  });
  let refused = 0,
    ran = 0;
  const attempt = async (o: GenerateOptions) => {
    try {
      await run('x', { ...o, maxTokens: 6, seed: 1 });
      ran++;
    } catch (e) {
      expect(e).toBeInstanceOf(SimbaError);
      expect((e as SimbaError).code).toBe('E_ARG');
      refused++;
    }
  };
  for (const s of values) await attempt({ jsonSchema: s });
  for (const s of sources) await attempt({ regex: s });
  expect(refused).toBeGreaterThan(10);
  expect(ran).toBeGreaterThan(10);
});

test('options: at most one constraint, each checked, strict keys', async () => {
  const gen = async (o: object) => {
    for await (const p of generate(model, 'x', { maxTokens: 2, ...o })) void p;
  };
  await expect(gen({ regex: 'a', choice: ['a'] })).rejects.toMatchObject({
    code: 'E_ARG',
    message: 'generate: give at most one of responseFormat, jsonSchema, regex, choice, grammar; got regex and choice',
  });
  await expect(gen({ grammar: 'root ::= "a"', jsonSchema: {} })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/got jsonSchema and grammar/),
  });
  await expect(
    gen({ jsonSchema: { type: 'object', properties: { a: { type: 'string', format: 'email' } } } }),
  ).rejects.toMatchObject({
    code: 'E_ARG',
    param: 'jsonSchema',
    message: 'generate: json schema at /properties/a/format: the format "email" is not supported (supported: date-time)',
  });
  await expect(gen({ responseFormat: { type: 'json_schema', json_schema: { schema: {} }, extra: 1 } })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/unknown responseFormat option 'extra'/),
  });
  await expect(gen({ regexx: 'a' })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/unknown option 'regexx' \(did you mean 'regex'\?\)/),
  });
});
