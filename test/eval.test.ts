/**
 * lib/measure/eval.ts (perplexity, choice scoring, LAMBADA), lib/measure/inspect.ts (highway map SVG) and the
 * budget schedules of lib/measure/bench.ts, each checked against quantities computed here from
 * model.logits() / model.prefill() on the shipped brown-mamba-s.
 */
import * as fs from 'fs';
import * as path from 'path';

import { budgetOptions, runBench } from '../lib/measure/bench';
import {
  choiceTokens,
  evalChoice,
  evalLambada,
  parseTaskFile,
  perplexity,
  scoreContinuations,
  splitLastWord,
  windows,
} from '../lib/measure/eval';
import { formatHighwaySummary, highwayMap, renderHighwaySvg, TOKENS_PER_PANEL } from '../lib/measure/inspect';
import { loadModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import { planSimba, type SimbaOptions } from '../lib/engine/simba';

const ROOT = path.resolve(__dirname, '..');
const SLICE = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'brown-heldout-slice.txt'), 'utf8');

let model: MambaModel;
let ids: number[];
beforeAll(async () => {
  model = await loadModel(path.join(ROOT, 'models', 'brown-mamba-s'));
  ids = model.tokenizer!.encode(SLICE.slice(0, 4000));
});
afterAll(() => model?.dispose());

/** log softmax(row)[t], written independently of lib/measure/eval.ts (log-sum-exp in float64). */
function refLogProb(row: Float32Array, t: number): number {
  const xs = Array.from(row);
  const m = Math.max(...xs);
  return xs[t] - m - Math.log(xs.reduce((a, x) => a + Math.exp(x - m), 0));
}

function argmax(row: Float32Array): number {
  let b = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[b]) b = i;
  return b;
}

/** exp(mean NLL) over non-overlapping windows, each window through model.logits(window, 'all'). */
async function refPerplexity(
  tokens: number[],
  ctx: number,
  simba?: SimbaOptions,
): Promise<{ ppl: number; scored: number; windows: number }> {
  let nll = 0,
    scored = 0,
    n = 0;
  for (let s = 0; s < tokens.length; s += ctx) {
    const w = tokens.slice(s, s + ctx);
    if (w.length < 2) continue;
    n++;
    const { logits } = await model.logits(w, 'all', { simba });
    for (let i = 0; i + 1 < w.length; i++) nll -= refLogProb(logits[i], w[i + 1]);
    scored += w.length - 1;
  }
  return { ppl: Math.exp(nll / scored), scored, windows: n };
}

describe('perplexity', () => {
  test('windows: non-overlapping, the last partial one kept from 2 tokens', () => {
    const t = Array.from({ length: 10 }, (_, i) => i);
    expect(windows(t, 4)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
    expect(windows(t.slice(0, 9), 4)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    expect(() => windows(t, 1)).toThrow(/ctx must be an integer >= 2/);
  });

  test('equals exp(mean NLL) computed from model.logits(), batched or not', async () => {
    const tokens = ids.slice(0, 4 * 64 + 30); // 4 full windows of 64 + a partial one of 30
    const ref = await refPerplexity(tokens, 64);
    expect(ref).toMatchObject({ windows: 5, scored: tokens.length - 5 });
    for (const batch of [1, 3]) {
      const r = await perplexity(model, tokens, { ctx: 64, batch });
      expect(r).toMatchObject({ windows: 5, scored: tokens.length - 5, tokens: tokens.length, ctx: 64, relFlops: 1 });
      expect(r.ppl).toBeCloseTo(ref.ppl, 9);
      expect(r.ppl).toBeCloseTo(Math.exp(r.meanNll), 12);
      expect(r.flopsPerToken).toBe(r.denseFlopsPerToken);
    }
  });

  test("under Simba: the early-exit logits of model.logits() and the plans' FLOPs", async () => {
    const tokens = ids.slice(0, 3 * 80 + 30);
    const simba: SimbaOptions = { flops: 0.7 };
    const ref = await refPerplexity(tokens, 80, simba);
    const r = await perplexity(model, tokens, { ctx: 80, simba });
    expect(r.ppl).toBeCloseTo(ref.ppl, 9);
    const dense = await perplexity(model, tokens, { ctx: 80 });
    expect(r.ppl).not.toBeCloseTo(dense.ppl, 3);
    const plans = [80, 80, 80, 30].map((T) => planSimba(model.config, T, simba));
    const processed = plans[0].processed.map((_, l) => plans.reduce((a, p) => a + p.processed[l], 0));
    expect(r.processed).toEqual(processed);
    expect(r.relFlops).toBeCloseTo(processed.reduce((a, b) => a + b, 0) / (6 * tokens.length), 12);
    expect(r.flopsPerToken).toBeLessThan(r.denseFlopsPerToken);
  });

  test('reports progress and rejects too little text', async () => {
    const seen: number[] = [];
    await perplexity(model, ids.slice(0, 50), { ctx: 16, batch: 2, onProgress: (p) => seen.push(p.done) });
    expect(seen).toEqual([0, 2, 4]); // windows of 16, 16, 16 and 2 tokens
    await expect(perplexity(model, ids.slice(0, 1), { ctx: 16 })).rejects.toThrow(/at least 2 are needed/);
  });
});

describe('multiple choice', () => {
  test("the context's trailing whitespace moves to the continuation; a space is added otherwise", () => {
    const tok = model.tokenizer!;
    const a = choiceTokens(tok, 'The jury said it did ', 'not');
    const b = choiceTokens(tok, 'The jury said it did', ' not');
    const c = choiceTokens(tok, 'The jury said it did', 'not');
    expect(a).toEqual(b);
    expect(c).toEqual(b);
    expect(b.contText).toBe(' not');
    expect(b.ctx).toEqual(tok.encode('The jury said it did'));
    expect(b.cont).toEqual(tok.encode(' not'));
  });

  test('each choice scores the sum of log-softmax values of model.logits() over its tokens', async () => {
    const tok = model.tokenizer!;
    const items = [
      { line: 1, context: 'The jury said it did not find any', choices: [' evidence', ' banana bread', ','], label: 0 },
      { line: 2, context: 'He went to the United', choices: [' States', ' Nations of the world'], label: 0 },
    ];
    const r = await evalChoice(model, items, { batch: 2 });
    expect(r.items).toBe(2);
    for (const [k, it] of items.entries()) {
      for (const [j, c] of it.choices.entries()) {
        const { ctx, cont, contText } = choiceTokens(tok, it.context, c);
        const { logits } = await model.logits([...ctx, ...cont], 'all');
        const want = cont.reduce((a, t, i) => a + refLogProb(logits[ctx.length - 1 + i], t), 0);
        const s = r.lines[k].scores[j];
        expect(s.logLik).toBeCloseTo(want, 9);
        expect(s).toMatchObject({ tokens: cont.length, chars: contText.length });
      }
      const ll = r.lines[k].scores.map((s) => s.logLik);
      expect(r.lines[k].pred).toBe(ll.indexOf(Math.max(...ll)));
      const norm = r.lines[k].scores.map((s) => s.logLik / s.chars);
      expect(r.lines[k].predNorm).toBe(norm.indexOf(Math.max(...norm)));
    }
    expect(r.accuracy).toBe(r.lines.filter((l) => l.pred === l.label).length / 2);
    expect(r.accuracyNorm).toBe(r.lines.filter((l) => l.predNorm === l.label).length / 2);
    expect(r.relFlops).toBe(1);
  });

  test('scoreContinuations under Simba matches model.logits() with the same options', async () => {
    const simba: SimbaOptions = { keepCounts: [6, 5, 4, 3, 2], criterion: 'norm' };
    const pairs = [
      { ctx: ids.slice(0, 5), cont: ids.slice(5, 8) },
      { ctx: ids.slice(20, 22), cont: ids.slice(22, 30) },
    ];
    const r = await scoreContinuations(model, pairs, { simba, batch: 8 });
    for (const [k, p] of pairs.entries()) {
      const { logits } = await model.logits([...p.ctx, ...p.cont], 'all', { simba });
      const want = p.cont.reduce((a, t, i) => a + refLogProb(logits[p.ctx.length - 1 + i], t), 0);
      expect(r.logLik[k]).toBeCloseTo(want, 9);
    }
    expect(r.tokens).toBe(18);
    expect(r.processed).toEqual([8 + 10, 6 + 6, 5 + 5, 4 + 4, 3 + 3, 2 + 2]);
  });

  test('task files: the first line sets the mode; errors name the line', () => {
    expect(
      parseTaskFile('{"context":"a","choices":["b","c"],"label":1}\n\n{"context":"d","choices":["e","f","g"],"label":0}\n'),
    ).toEqual({
      mode: 'choice',
      items: [
        { line: 1, context: 'a', choices: ['b', 'c'], label: 1 },
        { line: 3, context: 'd', choices: ['e', 'f', 'g'], label: 0 },
      ],
    });
    expect(parseTaskFile('{"text":"one two"}\n{"text":"three four five"}', 't.jsonl')).toEqual({
      mode: 'lambada',
      items: [
        { line: 1, text: 'one two' },
        { line: 2, text: 'three four five' },
      ],
    });
    const bad: [string, RegExp][] = [
      ['{"context":"a","choices":["b","c"],"label":0}\n{oops', /^t\.jsonl line 2: not valid JSON/],
      ['[1,2]', /^t\.jsonl line 1: expected a JSON object/],
      ['{"context":"a","choices":["b","c"],"label":0}\n{"text":"x y"}', /line 2: expected \{"context", "choices", "label"\}/],
      ['{"text":"x y"}\n{"context":"a","choices":["b","c"],"label":0}', /line 2: expected \{"text"\}/],
      ['{"context":"","choices":["b","c"],"label":0}', /line 1: "context" must be a non-empty string/],
      ['{"context":"a","choices":["b",3],"label":0}', /line 1: choice 1 must be a non-empty string/],
      ['{"context":"a","choices":["b","c"],"label":1.5}', /line 1: "label" must be an integer in \[0, 1\], got 1.5/],
      ['{"context":"a","choices":["b","c"],"label":0,"extra":1}', /line 1: unknown key "extra"/],
      ['{"text":"single"}', /line 1: "text" needs at least two words/],
      ['\n\n', /t\.jsonl: no tasks/],
    ];
    for (const [text, re] of bad) expect(() => parseTaskFile(text, 't.jsonl')).toThrow(re);
  });
});

describe('LAMBADA', () => {
  test('splitLastWord', () => {
    expect(splitLastWord('a b  c\n')).toEqual({ context: 'a b', word: 'c' });
    expect(splitLastWord('alone')).toBeNull();
  });

  test('3 lines: accuracy in [0, 1] and per-line greedy predictions, as greedy decoding through the API gives', async () => {
    const texts = [
      'He said that he would go to the United States',
      'The jury said it did not find any evidence',
      'It was a long time ago',
    ];
    const items = texts.map((text, i) => ({ line: i + 1, text }));
    const r = await evalLambada(model, items, { batch: 2 });
    expect(r.items).toBe(3);
    expect(r.accuracy).toBeGreaterThanOrEqual(0);
    expect(r.accuracy).toBeLessThanOrEqual(1);
    expect(r.lines.map((l) => l.line)).toEqual([1, 2, 3]);
    const tok = model.tokenizer!;
    let right = 0;
    for (const [i, text] of texts.entries()) {
      const { context, word } = splitLastWord(text)!;
      const target = tok.encode(' ' + word);
      const seq = model.newSequence();
      let [
        {
          logits: [logits],
        },
      ] = await model.prefill([{ sequence: seq, tokens: tok.encode(context) }]);
      const greedy: number[] = [];
      for (let k = 0; k < target.length; k++) {
        greedy.push(argmax(logits));
        if (k + 1 < target.length) [logits] = await model.decode([seq], [greedy[k]]);
      }
      const correct = greedy.every((t, k) => t === target[k]);
      if (correct) right++;
      expect(r.lines[i]).toEqual({ line: i + 1, target: word, predicted: tok.decode(greedy).replace(/^ /, ''), correct });
    }
    expect(r.accuracy).toBe(right / 3);
    expect(r.lines.some((l) => l.correct)).toBe(true); // "States" after "the United" is easy even for this model
  });
});

/** Minimal XML well-formedness: every element opened is closed in order. */
function checkWellFormed(doc: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(doc))) {
    const [, close, name, attrs, self] = m;
    expect(attrs).not.toMatch(/[<]/);
    if (self) continue;
    if (close) expect(stack.pop()).toBe(name);
    else stack.push(name);
  }
  expect(stack).toEqual([]);
  expect(doc.replace(/<[^>]*>/g, '')).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|apos);)/);
}

describe('inspect: the highway map', () => {
  test.each([
    [40, { flops: 0.6 } as SimbaOptions],
    [TOKENS_PER_PANEL + 60, { rLast: 0.1, criterion: 'uniform' } as SimbaOptions],
  ])('%i tokens: one filled cell per processed (token, layer), layer counts match the engine', async (T, simba) => {
    const map = await highwayMap(model, ids.slice(0, T), simba);
    const [r] = await model.prefill([{ tokens: ids.slice(0, T) }], { logits: 'none', simba });
    expect(map.processed).toEqual(r.processed);
    expect(map.exitLayer).toEqual(Array.from(r.exitLayer));
    for (let l = 0; l < 6; l++) expect(map.processed[l]).toBe(map.exitLayer.filter((e) => e > l).length);
    const svg = renderHighwaySvg(map, { title: 'brown-mamba-s <test> & co' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    checkWellFormed(svg);
    const filled = svg.match(/<rect class="on" x="\d+(\.\d+)?" y="\d+(\.\d+)?"/g) ?? [];
    expect(filled.length - 1).toBe(map.processed.reduce((a, b) => a + b, 0)); // - 1: the legend swatch
    expect(svg).toContain('brown-mamba-s &lt;test&gt; &amp; co');
    expect((svg.match(/<text class="tk"/g) ?? []).length).toBe(T); // every column labelled
    expect(formatHighwaySummary(map).split('\n')).toHaveLength(1 + 6);
  });

  test('refuses prompts too long to draw', async () => {
    await expect(highwayMap(model, new Array(1025).fill(5), { flops: 0.8 })).rejects.toThrow(/at most 1024/);
  });
});

describe('bench', () => {
  test('budgetOptions: the trapezoid where it reaches, the steep schedule below its floor', () => {
    const hi = budgetOptions(6, 256, 0.75);
    expect(hi).toEqual({ options: { flops: 0.75 }, schedule: 'trapezoid' });
    for (const budget of [0.2, 0.3, 0.45]) {
      const lo = budgetOptions(6, 256, budget, { criterion: 'norm' });
      expect(lo.schedule).toBe('steep');
      expect(lo.options.criterion).toBe('norm');
      const plan = planSimba(model.config, 256, lo.options);
      expect(Math.abs(plan.relFlops - budget)).toBeLessThan(0.01);
      expect(plan.processed[0]).toBe(256);
    }
    expect(() => budgetOptions(6, 256, 0.1)).toThrow(/below 0\.1699/);
  });

  test('runBench from code, with progress', async () => {
    const seen: string[] = [];
    const r = await runBench(model, { runs: 2, lengths: [8, 12], batches: [3], decodeTokens: 2, flops: [0.7] }, (p) =>
      seen.push(`${p.done}/${p.total}`),
    );
    expect(seen[0]).toBe('0/15');
    expect(seen[seen.length - 1]).toBe('15/15');
    expect(r.prefill.map((p) => p.length)).toEqual([8, 12]);
    expect(r.prefill.every((p) => p.tokensPerSec.samples.length === 2 && p.tokensPerSec.min > 0)).toBe(true);
    expect(r.decode).toEqual([expect.objectContaining({ batch: 3, steps: 2 })]);
    expect(r.simba.map((s) => [s.length, s.budget])).toEqual([
      [8, 0.7],
      [12, 0.7],
    ]);
    await expect(runBench(model, { lengths: [] })).rejects.toThrow(/lengths must be a non-empty list/);
  });

  test('runBench decode rows time native greedy steps (what generation runs), not logits to JS', async () => {
    const step = jest.spyOn(model, 'step');
    const decode = jest.spyOn(model, 'decode');
    try {
      await runBench(model, { runs: 2, lengths: [4], batches: [3], decodeTokens: 2 });
      expect(decode).not.toHaveBeenCalled();
      // one warm-up and two timed runs of two steps each
      expect(step).toHaveBeenCalledTimes(6);
      for (const [inputs] of step.mock.calls) {
        expect(inputs).toHaveLength(3);
        for (const inp of inputs) {
          expect(Array.from(inp.tokens)).toHaveLength(1);
          expect(inp.sample).toEqual([expect.objectContaining({ temperature: 0 })]);
        }
      }
      const r = await step.mock.results[0].value;
      expect(r.samples.map((s: unknown[]) => s.length)).toEqual([1, 1, 1]);
    } finally {
      step.mockRestore();
      decode.mockRestore();
    }
  });
});
