/**
 * The server's structured-output fields (lib/serve/structured.ts, tool_calls.ts) at the parsing
 * layer: each becomes the GBNF the converters make (checked with the independent recognizer), every
 * bad value is a 400 naming its field (and, for schemas, the keyword and its JSON pointer), at most
 * one constraint per request; a forced tool call's text becomes tool_calls, streamed in pieces that
 * join to the whole call however the text is split.
 */
import fc from 'fast-check';

import { chatTemplate } from '../../lib/checkpoint/chat_template';
import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { ApiError } from '../../lib/serve/errors';
import { parseChat, parseCompletion, type ParseContext } from '../../lib/serve/openai';
import { ToolCallChoices, ToolCallText } from '../../lib/serve/tool_calls';
import { parseGbnf } from '../helpers/gbnf_check';
import { parseContext } from './helpers';

let model: MambaModel;
let ctx: ParseContext;
beforeAll(async () => {
  model = await loadModel();
  ctx = parseContext(
    model,
    chatTemplate(
      't',
      '{% if tools %}{{ tools | length }}{% else %}0{% endif %} tools|{% for m in messages %}{{ m.content }}{% endfor %}',
    ),
  );
});
afterAll(() => model.dispose());

const completion = (extra: Record<string, unknown>) => ({ model: 'm', prompt: 'The jury', max_tokens: 2, ...extra });
const chat = (extra: Record<string, unknown>) => ({ model: 'm', messages: [{ role: 'user', content: 'Hi' }], ...extra });

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'the weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['C', 'F'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const TIME = { type: 'function', function: { name: 'get_time' } };

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  if (!(e instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(e)}`);
  expect(e.status).toBe(400);
  return e;
}

describe('structured fields -> one grammar', () => {
  test('response_format json_schema / json_object, regex and choice, on both routes', async () => {
    const schema = {
      type: 'object',
      properties: { n: { type: 'integer', minimum: 1, maximum: 9 } },
      required: ['n'],
      additionalProperties: false,
    };
    for (const parse of [
      (x: Record<string, unknown>) => parseCompletion(completion(x), ctx),
      (x: Record<string, unknown>) => parseChat(chat(x), ctx),
    ]) {
      const js = parseGbnf(
        (await parse({ response_format: { type: 'json_schema', json_schema: { name: 'n', schema, strict: true } } })).grammar!,
      );
      expect([js.accepts('{"n":5}'), js.accepts('{"n":10}'), js.accepts('{}')]).toEqual([true, false, false]);
      const obj = parseGbnf((await parse({ response_format: { type: 'json_object' } })).grammar!);
      expect([obj.accepts('{"a": [1]}'), obj.accepts('[1]')]).toEqual([true, false]);
      expect((await parse({ response_format: { type: 'text' } })).grammar).toBeUndefined();
      const re = parseGbnf((await parse({ regex: '\\d{3}-[a-z]+' })).grammar!);
      expect([re.accepts('123-ab'), re.accepts('12-ab')]).toEqual([true, false]);
      const ch = parseGbnf((await parse({ choice: ['yes', 'no'] })).grammar!);
      expect([ch.accepts('no'), ch.accepts('maybe')]).toEqual([true, false]);
      expect((await parse({ grammar: 'root ::= "x"' })).grammar).toBe('root ::= "x"');
      expect((await parse({ response_format: null, regex: null })).grammar).toBeUndefined();
    }
  });

  test.each([
    [
      { response_format: { type: 'xml' } },
      'response_format',
      /response_format.type must be one of text, json_object, json_schema/,
    ],
    [{ response_format: 'json' }, 'response_format', /response_format must be an object/],
    [{ response_format: { type: 'json_schema' } }, 'response_format', /json_schema must be an object with a schema/],
    [
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' }, strictt: true } } },
      'response_format',
      /unknown response_format.json_schema option 'strictt' \(did you mean 'strict'\?\)/,
    ],
    [
      {
        response_format: {
          type: 'json_schema',
          json_schema: {
            name: 'x',
            schema: { type: 'object', properties: { a: { type: 'string', minLength: 1, format: 'uri' } } },
          },
        },
      },
      'response_format',
      /json schema at \/properties\/a\/format: the format "uri" is not supported/,
    ],
    [
      { response_format: { type: 'json_schema', json_schema: { schema: { type: 'object', properties: { a: { allOf: [] } } } } } },
      'response_format',
      /at \/properties\/a\/allOf: the keyword 'allOf' is not supported/,
    ],
    [{ regex: 'a(?!b)' }, 'regex', /regex "a\(\?!b\)": a lookahead/],
    [{ regex: '(a)\\1' }, 'regex', /backreference/],
    [{ regex: 5 }, 'regex', /regex must be a string/],
    [{ choice: [] }, 'choice', /choice must be an array of 1 to 1000 strings/],
    [{ choice: ['a', ''] }, 'choice', /choice\[1\] must be a non-empty string/],
    [{ grammar: 7 }, 'grammar', /grammar must be GBNF text \(a string\), got the number 7/],
    [
      { regex: 'a', choice: ['a'] },
      'choice',
      /give at most one of response_format, json_schema, regex, choice, grammar; got regex and choice/,
    ],
    [{ tools: [WEATHER] }, 'tools', /is for \/v1\/chat\/completions/],
  ])('completions %j: 400 naming %s', async (extra, param, msg) => {
    const e = await refusal(parseCompletion(completion(extra), ctx));
    expect(e.param).toBe(param);
    expect(e.message).toMatch(msg);
  });
});

describe('tools and tool_choice', () => {
  test('auto (the default with tools): the template receives the tools, nothing is forced', async () => {
    const spec = await parseChat(chat({ tools: [WEATHER, TIME] }), ctx);
    expect(spec.grammar).toBeUndefined();
    expect(spec.tools?.forced).toBeNull();
    expect(model.tokenizer!.decode(spec.prompts[0])).toBe('2 tools|Hi');
    // none: the tools are not shown
    const none = await parseChat(chat({ tools: [WEATHER], tool_choice: 'none' }), ctx);
    expect(model.tokenizer!.decode(none.prompts[0])).toBe('0 tools|Hi');
  });

  test('required: a call of any declared tool; a named function: that one only', async () => {
    const req = parseGbnf((await parseChat(chat({ tools: [WEATHER, TIME], tool_choice: 'required' }), ctx)).grammar!);
    expect(req.accepts('{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "C"}}')).toBe(true);
    expect(req.accepts('{"name":"get_time","arguments":{}}')).toBe(true);
    expect(req.accepts('{"name": "get_weather", "arguments": {"city": "Oslo"}}')).toBe(false);
    expect(req.accepts('{"name": "other", "arguments": {}}')).toBe(false);
    const named = await parseChat(
      chat({ tools: [WEATHER, TIME], tool_choice: { type: 'function', function: { name: 'get_time' } } }),
      ctx,
    );
    const g = parseGbnf(named.grammar!);
    expect([
      g.accepts('{"name":"get_time","arguments":{}}'),
      g.accepts('{"name":"get_weather","arguments":{"city":"a","unit":"F"}}'),
    ]).toEqual([true, false]);
  });

  test.each([
    [{ tools: 'x' }, 'tools', /must be an array/],
    [{ tools: [{ type: 'function', function: { name: 'bad name' } }] }, 'tools[0].function.name', /1 to 64 letters/],
    [{ tools: [TIME, TIME] }, 'tools[1].function.name', /declares 'get_time' twice/],
    [{ tool_choice: 'required' }, 'tool_choice', /declares no tools/],
    [
      { tools: [TIME], tool_choice: { type: 'function', function: { name: 'nope' } } },
      'tool_choice',
      /names the function 'nope', which 'tools' does not declare/,
    ],
    [{ tools: [TIME], tool_choice: 'sometimes' }, 'tool_choice', /must be 'none', 'auto', 'required'/],
    [{ tools: [TIME], tool_choice: 'required', regex: 'a' }, 'regex', /cannot be combined with tool_choice 'required'/],
    [
      {
        tools: [
          {
            type: 'function',
            function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string', pattern: '(?<=x)' } } } },
          },
        ],
        tool_choice: 'required',
      },
      'tools',
      /lookbehind/,
    ],
  ])('%j: 400 naming %s', async (extra, param, msg) => {
    const e = await refusal(parseChat(chat(extra), ctx));
    expect(e.param).toBe(param);
    expect(e.message).toMatch(msg);
  });
});

describe('a tool call text read back', () => {
  const text = '{"name": "get_weather", "arguments": {"city": "Oslo \\"}\\" ", "unit": "C"}\n}';
  const args = '{"city": "Oslo \\"}\\" ", "unit": "C"}';

  test('streamed in any split: the name first, then argument pieces that join to the whole arguments', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 12 }), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), text.length];
        const tc = new ToolCallText('call_1');
        const deltas = points.slice(1).flatMap((p, i) => tc.push(text.slice(points[i], p)));
        const end = tc.finish(true);
        if (end.delta) deltas.push(end.delta);
        expect(deltas[0]).toEqual({ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } });
        expect(deltas.slice(1).every((d) => d.id === undefined && d.function.name === undefined)).toBe(true);
        expect(deltas.map((d) => d.function.arguments).join('')).toBe(args);
        expect(end.call).toEqual({ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: args } });
        expect(JSON.parse(end.call!.function.arguments)).toEqual({ city: 'Oslo "}" ', unit: 'C' });
      }),
      { numRuns: 200, seed: 1 },
    );
  });

  test('ToolCallChoices: finish_reason tool_calls; cut by max_tokens: length, and before the name: content', () => {
    const c = new ToolCallChoices(2);
    c.token(0, text.slice(0, 30));
    const last = c.finish(0, text.slice(30), 'stop');
    expect(last[last.length - 1]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' });
    expect(c.message(0)).toEqual({
      role: 'assistant',
      content: null,
      tool_calls: [{ id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather', arguments: args } }],
    });
    const cut = c.finish(1, '{"name": "get_w', 'length');
    expect(cut[cut.length - 1]).toEqual({
      index: 1,
      delta: { content: '{"name": "get_w' },
      logprobs: null,
      finish_reason: 'length',
    });
    expect(c.message(1)).toEqual({ role: 'assistant', content: '{"name": "get_w' });
    expect(c.finishReason(1, 'length')).toBe('length');
  });
});
