/**
 * Real clients against simba serve (createServer on 127.0.0.1, the shipped brown-mamba-s): the
 * official `openai` client with response_format json_schema (also through zodResponseFormat and
 * chat.completions.parse) and with tools (tool_choice required, named; whole and streamed), and the
 * Vercel AI SDK's generateObject with a zod schema (in a child process: the `ai` package is ESM
 * only). The constraints make even this small model's output parse.
 */
import { execFile } from 'child_process';
import * as path from 'path';
import { promisify } from 'util';

import Ajv from 'ajv';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { start, type Running } from './helpers';

let model: MambaModel;
let srv: Running;
let client: OpenAI;
const MODEL = 'brown-mamba-s';

beforeAll(async () => {
  model = await loadModel();
  srv = await start({ model, modelName: MODEL });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60000 });
});
afterAll(async () => {
  await srv.server.shutdown(0);
  model.dispose();
});

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    tags: { type: 'array', items: { type: 'string', enum: ['red', 'green'] }, maxItems: 3 },
  },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};

const WEATHER = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 16 }, unit: { type: 'string', enum: ['C', 'F'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const TIME = {
  type: 'function' as const,
  function: { name: 'get_time', parameters: { type: 'object', properties: {}, additionalProperties: false } },
};

test('openai: response_format json_schema gives JSON valid against the schema (several seeds, n = 2)', async () => {
  const validate = new Ajv().compile(PERSON);
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Describe a person.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } },
      max_tokens: 200,
      temperature: 1,
      seed,
      n: 2,
    });
    for (const c of r.choices) {
      expect(c.finish_reason).toBe('stop');
      const v: unknown = JSON.parse(c.message.content!);
      expect({ v, valid: validate(v) }).toEqual({ v, valid: true });
    }
  }
});

test('openai: zodResponseFormat + chat.completions.parse returns the parsed object', async () => {
  const Person = z.object({ name: z.string().max(12), age: z.number().int().min(0).max(120), admin: z.boolean() });
  const r = await client.chat.completions.parse({
    model: MODEL,
    messages: [{ role: 'user', content: 'A person:' }],
    response_format: zodResponseFormat(Person, 'person'),
    max_tokens: 200,
    seed: 4,
  });
  const p = r.choices[0].message.parsed!;
  expect(Person.parse(p)).toEqual(p);
});

test('openai: tools with tool_choice required -> tool_calls with arguments valid for the function', async () => {
  const validate = new Ajv().compile(WEATHER.function.parameters);
  for (const seed of [1, 2]) {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: [WEATHER, TIME],
      tool_choice: 'required',
      max_tokens: 200,
      seed,
    });
    const c = r.choices[0];
    expect(c.finish_reason).toBe('tool_calls');
    expect(c.message.content).toBeNull();
    const call = c.message.tool_calls![0];
    expect(call.type).toBe('function');
    if (call.type !== 'function') return;
    expect(call.id).toMatch(/^call_/);
    expect(['get_weather', 'get_time']).toContain(call.function.name);
    const args: unknown = JSON.parse(call.function.arguments);
    if (call.function.name === 'get_weather') expect(validate(args)).toBe(true);
    else expect(args).toEqual({});
  }
});

test('openai: a named function, streamed: the client assembles the same call the whole response gives', async () => {
  const body = {
    model: MODEL,
    messages: [{ role: 'user' as const, content: 'Weather?' }],
    tools: [WEATHER, TIME],
    tool_choice: { type: 'function' as const, function: { name: 'get_weather' } },
    max_tokens: 200,
    temperature: 0,
  };
  const whole = await client.chat.completions.create(body);
  const stream = client.chat.completions.stream({ ...body, stream: true });
  const chunks: unknown[] = [];
  stream.on('chunk', (c) => chunks.push(c));
  const done = await stream.finalChatCompletion();
  const call = done.choices[0].message.tool_calls![0];
  expect(done.choices[0].finish_reason).toBe('tool_calls');
  expect(call.type === 'function' && call.function.name).toBe('get_weather');
  const wholeCall = whole.choices[0].message.tool_calls![0];
  expect(call.type === 'function' && JSON.parse(call.function.arguments)).toEqual(
    wholeCall.type === 'function' && JSON.parse(wholeCall.function.arguments),
  );
  expect(
    new Ajv().compile(WEATHER.function.parameters)(JSON.parse(call.type === 'function' ? call.function.arguments : '')),
  ).toBe(true);
  // the arguments came in more than one delta
  expect(chunks.length).toBeGreaterThan(3);
});

test('Vercel AI SDK generateObject with a zod schema', async () => {
  const run = promisify(execFile);
  const script = path.join(__dirname, 'clients', 'ai_sdk_object.mjs');
  const { stdout } = await run(process.execPath, [script, srv.url, MODEL], { timeout: 60000 });
  const out = JSON.parse(stdout.trim().split('\n').pop()!) as {
    object: { name: string; age: number; tags: string[] };
    finishReason: string;
  };
  expect(out.finishReason).toBe('stop');
  expect(typeof out.object.name).toBe('string');
  expect(out.object.name.length).toBeLessThanOrEqual(12);
  expect(Number.isInteger(out.object.age) && out.object.age >= 0 && out.object.age <= 120).toBe(true);
  expect(out.object.tags.every((t) => t === 'red' || t === 'green')).toBe(true);
});
