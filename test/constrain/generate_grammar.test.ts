/**
 * generate({ grammar }) on random-weight models with the GPT-NeoX tokenizer, sampling at
 * temperature 1 with several seeds: every output of a small arithmetic language parses with the
 * hand-written parser below; an output cut by maxTokens is still a prefix of a sentence; the model's
 * logits are flattened (norm_f scaled down) so the samples wander over the whole mask.
 */
import { compileGrammar } from '../../lib/constrain/grammar';
import type { MambaModel } from '../../lib/engine/model';
import { generate } from '../../lib/generate/generate';
import { ARITH, EOS, flatNeoxModel, parseArith } from './arith';

let model: MambaModel;

beforeAll(async () => {
  model = await flatNeoxModel();
});
afterAll(() => model.dispose());

test('the hand-written parser tells sentences, prefixes and garbage apart', () => {
  expect(['1', '1 + 2', '(1+2)*-3.5', '1 / (2 - 3)', '--4'].map(parseArith)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
  expect(['', '1 +', '(1', '1.', '1 '].map(parseArith)).toEqual(['prefix', 'prefix', 'prefix', 'prefix', 'prefix']);
  expect(['a', '1)', '1 ++ 2', '1  +2', '(1))'].map(parseArith)).toEqual(['bad', 'bad', 'bad', 'bad', 'bad']);
});

test('temperature 1, several seeds: every output parses; cut ones are prefixes; each ends for a reason', async () => {
  const g = compileGrammar(model, ARITH);
  const results: { text: string; tokens: number; verdict: string }[] = [];
  for (let seed = 1; seed <= 12; seed++) {
    let text = '';
    let tokens = 0;
    // odd seeds: the EOS favoured (logit +12), so it is picked as soon as the grammar allows it
    const logitBias = seed % 2 ? { [EOS]: 12 } : undefined;
    for await (const p of generate(model, 'Compute: ', {
      grammar: g,
      temperature: 1,
      topK: 0,
      topP: 1,
      seed,
      maxTokens: 24,
      logitBias,
    })) {
      text += p.text;
      tokens++;
    }
    results.push({ text, tokens, verdict: parseArith(text) });
  }
  for (const r of results) {
    if (r.tokens < 24)
      expect({ ...r, verdict: r.verdict }).toEqual({ ...r, verdict: 'ok' }); // ended by the grammar
    else expect(['ok', 'prefix']).toContain(r.verdict);
  }
  // the samples differ (the mask, not the model, shapes them)
  expect(new Set(results.map((r) => r.text)).size).toBeGreaterThan(6);
  expect(results.filter((r) => r.tokens < 24).length).toBeGreaterThanOrEqual(6);
  expect(g.stats().masksCached).toBeGreaterThan(0);
});

test('greedy, top-k, top-p and min-p all stay inside the grammar; the same seed gives the same text', async () => {
  const run = async (o: object) => {
    let text = '';
    for await (const p of generate(model, 'x', { grammar: ARITH, maxTokens: 16, seed: 5, ...o })) text += p.text;
    return text;
  };
  for (const o of [{ temperature: 0 }, { temperature: 1, topK: 5 }, { temperature: 2, topP: 0.5 }, { temperature: 1, minP: 0.2 }])
    expect(['ok', 'prefix']).toContain(parseArith(await run(o)));
  expect(await run({ temperature: 1 })).toBe(await run({ temperature: 1 }));
});

test('a grammar with one sentence ends there, without asking for the EOS; stop strings still apply', async () => {
  const out: string[] = [];
  for await (const p of generate(model, 'x', { grammar: 'root ::= "hello, world"', temperature: 1, seed: 1, maxTokens: 50 }))
    out.push(p.text);
  expect(out.join('')).toBe('hello, world');
  let text = '';
  for await (const p of generate(model, 'x', { grammar: 'root ::= "hello, world"', stop: [','], maxTokens: 50 })) text += p.text;
  expect(text).toBe('hello');
});

test('bad grammars and options are E_ARG naming the problem', async () => {
  const gen = async (o: object) => {
    for await (const p of generate(model, 'x', { maxTokens: 2, ...o })) void p;
  };
  await expect(gen({ grammar: 'root ::= foo' })).rejects.toMatchObject({
    code: 'E_ARG',
    param: 'grammar',
    message: expect.stringMatching(/line 1, column 10: undefined rule 'foo'/),
  });
  await expect(gen({ grammar: 42 })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/grammar must be GBNF text/),
  });
  await expect(gen({ grammar: 'x'.repeat(2 ** 20 + 1) })).rejects.toMatchObject({
    code: 'E_ARG',
    message: expect.stringMatching(/too large/),
  });
});
