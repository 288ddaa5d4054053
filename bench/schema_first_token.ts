/**
 * The first-token latency a JSON schema adds (compiled to dist/bench/schema_first_token.js): a
 * schema of 10 properties (strings, integers with bounds, a number, a boolean, an enum, a date-time,
 * an array), on the mamba-130m shape (random weights) with the GPT-NeoX tokenizer (50k tokens).
 * Side by side in one run, alternating, N times each:
 *   plain       generate() until its first token, no constraint
 *   schema      the same with { jsonSchema } (converted to GBNF, compiled natively, first mask)
 * and the parts: the TypeScript conversion alone (jsonSchemaToGbnf) and compileGrammar alone.
 * Prints medians (ms) and the difference.
 *
 *   node dist/bench/schema_first_token.js [--shape mamba-130m] [--runs 15] [--prompt-tokens 16] [--json]
 */
import * as path from 'path';

import { loadTokenizer } from '../lib/checkpoint/tokenizer';
import { compileGrammar } from '../lib/constrain/grammar';
import { jsonSchemaToGbnf } from '../lib/constrain/json_schema';
import { randomModel } from '../lib/engine/load';
import { generate, type GenerateOptions } from '../lib/generate/generate';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

export const SCHEMA_10 = {
  type: 'object',
  properties: {
    id: { type: 'integer', minimum: 1, maximum: 1000000 },
    name: { type: 'string', maxLength: 40 },
    email: { type: 'string', pattern: '^[a-z0-9._]+@[a-z0-9]+\\.[a-z]{2,4}$' },
    age: { type: 'integer', minimum: 0, maximum: 130 },
    score: { type: 'number', minimum: 0, maximum: 100 },
    active: { type: 'boolean' },
    role: { type: 'string', enum: ['admin', 'editor', 'viewer'] },
    created: { type: 'string', format: 'date-time' },
    tags: { type: 'array', items: { type: 'string', maxLength: 16 }, maxItems: 8 },
    note: { type: ['string', 'null'] },
  },
  required: ['id', 'name', 'email', 'age', 'score', 'active', 'role', 'created', 'tags', 'note'],
  additionalProperties: false,
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const shape = arg('shape', 'mamba-130m');
  const runs = Number(arg('runs', '15'));
  const promptTokens = Number(arg('prompt-tokens', '16'));
  const tok = loadTokenizer(path.join(__dirname, '..', '..', 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json'));
  const model = await randomModel(shape, { seed: 1 });
  // random weights come without a tokenizer: the GPT-NeoX one (the vocabulary of mamba-130m) is set on the model
  Object.defineProperty(model, 'tokenizer', { value: tok });
  const prompt = Array.from({ length: promptTokens }, (_, i) => 1000 + i);
  const first = async (o: GenerateOptions) => {
    const t0 = performance.now();
    for await (const p of generate(model, prompt, { maxTokens: 1, temperature: 1, seed: 1, ...o })) void p;
    return performance.now() - t0;
  };
  // warm-up: the vocabulary's trie is built once per tokenizer (not per request); measured apart
  const t0 = performance.now();
  await first({ jsonSchema: SCHEMA_10 });
  const warmupMs = performance.now() - t0;
  const plain: number[] = [],
    schema: number[] = [],
    convert: number[] = [],
    compile: number[] = [];
  for (let r = 0; r < runs; r++) {
    plain.push(await first({}));
    schema.push(await first({ jsonSchema: SCHEMA_10 }));
    let t = performance.now();
    const gbnf = jsonSchemaToGbnf(SCHEMA_10);
    convert.push(performance.now() - t);
    t = performance.now();
    compileGrammar(model, gbnf);
    compile.push(performance.now() - t);
  }
  const gbnf = jsonSchemaToGbnf(SCHEMA_10);
  const res = {
    shape,
    vocab: tok.vocabSize,
    runs,
    promptTokens,
    grammarRules: gbnf.split('\n').filter(Boolean).length,
    firstRunMs: warmupMs,
    plainMs: median(plain),
    schemaMs: median(schema),
    addedMs: median(schema) - median(plain),
    convertMs: median(convert),
    compileMs: median(compile),
  };
  if (process.argv.includes('--json')) console.log(JSON.stringify(res));
  else {
    console.log(`${shape}, V=${res.vocab}, prompt ${promptTokens} tokens, ${runs} runs each (medians, ms)`);
    console.log(`first token, plain:               ${res.plainMs.toFixed(2)}`);
    console.log(`first token, 10-property schema:  ${res.schemaMs.toFixed(2)}  (+${res.addedMs.toFixed(2)})`);
    console.log(`  jsonSchemaToGbnf alone:         ${res.convertMs.toFixed(3)}  (${res.grammarRules} rules)`);
    console.log(`  compileGrammar alone:           ${res.compileMs.toFixed(3)}`);
    console.log(`very first schema request (builds the vocabulary trie once per tokenizer): ${res.firstRunMs.toFixed(1)}`);
  }
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
