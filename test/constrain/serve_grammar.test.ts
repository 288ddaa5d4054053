/**
 * The server's `grammar` field (GBNF text, as llama-server names it) on /v1/completions and
 * /v1/chat/completions over real HTTP on 127.0.0.1: every choice (n > 1, streamed or not, with the
 * prefix cache and with Simba) follows the grammar; finish_reason is "stop" where the grammar ended
 * it and "length" where max_tokens came first; bad grammars are 400s naming the problem.
 */
import { chatTemplate, PLAIN_CHAT_TEMPLATE } from '../../lib/checkpoint/chat_template';
import type { MambaModel } from '../../lib/engine/model';
import { isOpenAIError, post, start, type Running } from '../serve/helpers';
import { ARITH, EOS, flatNeoxModel, parseArith } from './arith';

let model: MambaModel;
let s: Running;

beforeAll(async () => {
  model = await flatNeoxModel();
  s = await start({ model, modelName: 'flat', chatTemplate: chatTemplate('plain', PLAIN_CHAT_TEMPLATE) });
});
afterAll(async () => {
  await s?.server.shutdown(0);
  model?.dispose();
});

interface Choice {
  text?: string;
  message?: { content: string };
  finish_reason: string;
}

const complete = (body: object) => post(s.url, '/v1/completions', JSON.stringify({ model: 'flat', ...body }));

/** A choice's verdict: 'stop' choices are sentences, 'length' ones prefixes of one. */
function expectFollows(c: Choice): void {
  const text = c.text ?? c.message!.content;
  expect({ text, verdict: parseArith(text), reason: c.finish_reason }).toEqual({
    text,
    verdict: c.finish_reason === 'stop' ? 'ok' : expect.stringMatching(/^(ok|prefix)$/),
    reason: expect.stringMatching(/^(stop|length)$/),
  });
}

test('completions, n = 4, temperature 1: every choice follows the grammar; both finish reasons occur', async () => {
  const reasons = new Set<string>();
  for (const seed of [1, 2, 3]) {
    const r = await complete({
      prompt: 'Compute:',
      grammar: ARITH,
      n: 4,
      temperature: 1,
      seed,
      max_tokens: 20,
      logit_bias: { [EOS]: 12 },
    });
    expect(r.status).toBe(200);
    for (const c of r.json.choices as Choice[]) {
      expectFollows(c);
      reasons.add(c.finish_reason);
    }
  }
  expect(reasons).toEqual(new Set(['stop', 'length']));
});

test('a one-sentence grammar: "stop" at its end, "length" when max_tokens comes first; the same prompt again (prefix cache)', async () => {
  const g = 'root ::= "hello, world"';
  for (let i = 0; i < 2; i++) {
    const r = await complete({ prompt: 'Say it:', grammar: g, max_tokens: 30, temperature: 1, seed: i });
    expect((r.json.choices as Choice[])[0]).toMatchObject({ text: 'hello, world', finish_reason: 'stop' });
  }
  const short = await complete({ prompt: 'Say it:', grammar: g, max_tokens: 2 });
  const c = (short.json.choices as Choice[])[0];
  expect(c.finish_reason).toBe('length');
  expect('hello, world'.startsWith(c.text!)).toBe(true);
  expect(c.text!.length).toBeGreaterThan(0);
});

test('chat, streamed and not, with Simba pruning the prompt', async () => {
  const body = {
    model: 'flat',
    messages: [{ role: 'user', content: 'Give me a sum of small numbers, please. '.repeat(8) }],
    grammar: ARITH,
    n: 2,
    temperature: 1,
    seed: 4,
    max_tokens: 16,
    logit_bias: { [EOS]: 12 },
    simba: { flops: 0.7 },
  };
  const r = await post(s.url, '/v1/chat/completions', JSON.stringify(body));
  expect(r.status).toBe(200);
  for (const c of r.json.choices as Choice[]) expectFollows(c);
  const sse = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ ...body, stream: true }),
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(20000),
  });
  const events = (await sse.text())
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map(
      (e) =>
        JSON.parse(e.slice(6)) as { choices: { index: number; delta: { content?: string }; finish_reason: string | null }[] },
    );
  const text = ['', ''],
    reason = ['', ''];
  for (const e of events)
    for (const c of e.choices) {
      text[c.index] += c.delta.content ?? '';
      if (c.finish_reason) reason[c.index] = c.finish_reason;
    }
  for (let j = 0; j < 2; j++) expectFollows({ message: { content: text[j] }, finish_reason: reason[j] });
});

test.each([
  ['root ::= foo', /line 1, column 10: undefined rule 'foo'/],
  ['root ::= ("a"', /unbalanced parentheses/],
  ['expr ::= "1"', /no rule named 'root'/],
  [42, /grammar must be GBNF text/],
])('grammar %j -> 400 naming the problem', async (grammar, re) => {
  const r = await complete({ prompt: 'x', grammar, max_tokens: 4 });
  expect(r.status).toBe(400);
  expect(isOpenAIError(r.json)).toBe(true);
  expect(r.json.error).toMatchObject({ param: 'grammar', type: 'invalid_request_error', message: expect.stringMatching(re) });
});
