/**
 * Property test (fast-check) of random JSON bodies against /v1/completions and
 * /v1/chat/completions: every answer is a valid response (JSON or a complete SSE stream) or a 4xx
 * OpenAI-shaped error; never a 5xx, a crash or a hung socket. Fixed seed; SIMBA_FUZZ_RUNS sets
 * the number of bodies (default 120, a few seconds).
 */
import fc from 'fast-check';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { isOpenAIError, start, type Running } from './helpers';

const NAME = 'fuzz-model';
const RUNS = Number(process.env.SIMBA_FUZZ_RUNS ?? 120);
let model: MambaModel;
let s: Running;

beforeAll(async () => {
  model = await loadModel();
  s = await start({
    model,
    modelName: NAME,
    maxTokens: 8,
    maxPromptTokens: 256,
    bodyLimit: 64 << 10,
    maxRunning: 8,
    maxQueue: 64,
  });
});
afterAll(async () => {
  await s.server.shutdown(0);
  model.dispose();
});

const junk = fc.anything({ maxDepth: 2, maxKeys: 4 });
const num = fc.oneof(fc.double(), fc.integer({ min: -3, max: 30 }), fc.constantFrom(0, 1, 0.5, 2, -1, 1e308), junk);
const field = <T>(a: fc.Arbitrary<T>) =>
  fc.option(fc.oneof({ weight: 4, arbitrary: a }, { weight: 1, arbitrary: junk }), { nil: undefined });

const common = {
  model: fc.oneof(
    { weight: 6, arbitrary: fc.constant(NAME) },
    { weight: 1, arbitrary: fc.string() },
    { weight: 1, arbitrary: junk },
  ),
  max_tokens: field(fc.integer({ min: -2, max: 10 })),
  temperature: field(num),
  top_p: field(num),
  top_k: field(fc.integer({ min: -2, max: 50 })),
  min_p: field(num),
  n: field(fc.integer({ min: -1, max: 4 })),
  seed: field(fc.oneof(fc.integer(), fc.double())),
  stop: field(fc.oneof(fc.string({ maxLength: 4 }), fc.array(fc.string({ maxLength: 4 }), { maxLength: 6 }))),
  stream: field(fc.boolean()),
  stream_options: field(fc.record({ include_usage: fc.oneof(fc.boolean(), junk) })),
  presence_penalty: field(num),
  frequency_penalty: field(num),
  repetition_penalty: field(num),
  logit_bias: field(
    fc.dictionary(fc.oneof(fc.integer({ min: -1, max: 5000 }).map(String), fc.string({ maxLength: 3 })), num, { maxKeys: 3 }),
  ),
  simba: field(fc.record({ flops: num }, { requiredKeys: [] })),
};

const completion = fc.record(
  {
    ...common,
    prompt: field(
      fc.oneof(
        fc.string({ maxLength: 40 }),
        fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
        fc.array(fc.integer({ min: -2, max: 5000 }), { maxLength: 20 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 4095 }), { maxLength: 5 }), { maxLength: 3 }),
      ),
    ),
    logprobs: field(fc.integer({ min: -1, max: 25 })),
    echo: field(fc.boolean()),
  },
  { requiredKeys: [] },
);

const chat = fc.record(
  {
    ...common,
    messages: field(
      fc.array(
        fc.record(
          {
            role: fc.oneof(fc.constantFrom('user', 'system', 'assistant', 'developer', 'tool', 'wizard'), junk),
            content: fc.oneof(
              fc.string({ maxLength: 30 }),
              fc.array(fc.record({ type: fc.constantFrom('text', 'image'), text: fc.string({ maxLength: 8 }) }), {
                maxLength: 2,
              }),
              junk,
            ),
          },
          { requiredKeys: ['role'] },
        ),
        { maxLength: 4 },
      ),
    ),
    logprobs: field(fc.boolean()),
    top_logprobs: field(fc.integer({ min: -1, max: 25 })),
    max_completion_tokens: field(fc.integer({ min: -1, max: 10 })),
  },
  { requiredKeys: [] },
);

type Case = { path: string; body: string };
/** A valid body with up to 3 of its fields replaced by random ones. */
function perturbed(
  path: string,
  base: Record<string, unknown>,
  fields: fc.Arbitrary<Record<string, unknown>>,
): fc.Arbitrary<Case> {
  return fc.tuple(fields, fc.integer({ min: 0, max: 3 })).map(([f, k]) => {
    const keys = Object.keys(f).slice(0, k);
    return { path, body: JSON.stringify({ ...base, ...Object.fromEntries(keys.map((key) => [key, f[key]])) }) };
  });
}
const cases: fc.Arbitrary<Case> = fc.oneof(
  { weight: 3, arbitrary: perturbed('/v1/completions', { model: NAME, prompt: 'The jury', max_tokens: 4 }, completion) },
  {
    weight: 3,
    arbitrary: perturbed(
      '/v1/chat/completions',
      { model: NAME, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 },
      chat,
    ),
  },
  { weight: 2, arbitrary: completion.map((b) => ({ path: '/v1/completions', body: JSON.stringify(b) })) },
  { weight: 2, arbitrary: chat.map((b) => ({ path: '/v1/chat/completions', body: JSON.stringify(b) })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('/v1/completions', '/v1/chat/completions'), fc.oneof(fc.json(), fc.string({ maxLength: 30 })))
      .map(([path, body]) => ({ path, body })),
  },
);

interface Choice {
  finish_reason?: unknown;
  text?: unknown;
  message?: { content?: unknown };
}

function validJson(path: string, body: unknown): boolean {
  const chat = path.includes('chat');
  const j = body as { object?: unknown; choices?: Choice[]; usage?: { completion_tokens?: unknown } } | null;
  if (j?.object !== (chat ? 'chat.completion' : 'text_completion') || !Array.isArray(j.choices) || j.choices.length === 0)
    return false;
  if (typeof j.usage?.completion_tokens !== 'number') return false;
  return j.choices.every(
    (c) => ['stop', 'length'].includes(String(c.finish_reason)) && typeof (chat ? c.message?.content : c.text) === 'string',
  );
}

function validStream(text: string): boolean {
  const events = text.split('\n\n').filter((e) => e.length > 0);
  if (events.length === 0) return false;
  const last = events[events.length - 1];
  if (last !== 'data: [DONE]') return false;
  return events.slice(0, -1).every((e) => {
    try {
      return typeof JSON.parse(e.replace(/^data: /, '')).id === 'string';
    } catch {
      return false;
    }
  });
}

test(`random bodies: a valid response or a 4xx OpenAI error, never a 5xx or a hang (${RUNS} runs)`, async () => {
  const seen = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(cases, async ({ path, body }) => {
      const r = await fetch(`${s.url}${path}`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
        signal: AbortSignal.timeout(15000),
      });
      const text = await r.text();
      seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
      if (r.status === 200) {
        if ((r.headers.get('content-type') ?? '').startsWith('text/event-stream')) return validStream(text);
        return validJson(path, JSON.parse(text));
      }
      if (r.status < 400 || r.status >= 500) throw new Error(`status ${r.status} for ${path} ${body}: ${text}`);
      return isOpenAIError(JSON.parse(text));
    }),
    { seed: 20261202, numRuns: RUNS },
  );
  // the generators reach both outcomes
  expect(seen.get(200) ?? 0).toBeGreaterThan(0);
  expect(seen.get(400) ?? 0).toBeGreaterThan(0);
  await s.server.scheduler!.idle();
  expect(s.server.scheduler!.slotsUsed).toBe(0);
}, 120000);
