#!/usr/bin/env node
/**
 * Simba quality sweep (issue 3): held-out perplexity of a model, dense and under each pruning
 * criterion at several relative-FLOPs budgets, at one or more context lengths.
 *
 *   node bench/simba_eval.js --model DIR --file TEXT [--ctx 256,1024] [--budgets 0.75,0.6,0.5,0.3]
 *                            [--criteria simba,simba-sum,local,norm,uniform,random] [--out results.json]
 *
 * Budgets the trapezoid can reach use it (flops: B); lower ones use bench.ts's steep schedule as
 * explicit keep counts (marked "steep"). Prints one line per run and a markdown table at the end.
 *
 * --last-only scores what generation needs instead: windows of ctx tokens every --stride tokens
 * (default ctx/4),
 * each prefilled (pruned) with logits at the last position only, and the perplexity of the
 * token that follows each window. Pruned tokens then never need to exit early.
 * --chunk N (with --last-only) prefills each window in chunks of N tokens, each pruned on its own at
 * the budget (raised to what the trapezoid reaches for N tokens), continuing the state: what
 * `simba serve --simba-under-load` does to a prompt, one tick's chunk at a time.
 * Needs `npm run build:ts` first (reads dist/).
 */
const fs = require('fs');
const path = require('path');
const { loadModel } = require('../dist/lib/engine/load');
const { logProb } = require('../dist/lib/measure/eval');
const { perplexity } = require('../dist/lib/measure/eval');
const { budgetOptions } = require('../dist/lib/measure/bench');
const { trapezoidFloor } = require('../dist/lib/engine/simba');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

(async () => {
  const modelDir = arg('model');
  const file = arg('file');
  if (!modelDir || !file) { console.error('usage: simba_eval.js --model DIR --file TEXT [...]'); process.exit(2); }
  const ctxs = arg('ctx', '256,1024').split(',').map(Number);
  const budgets = arg('budgets', '0.75,0.6,0.5,0.3').split(',').map(Number);
  const criteria = arg('criteria', 'simba,simba-sum,local,norm,uniform,random').split(',');
  const out = arg('out');
  const lastOnly = process.argv.includes('--last-only');
  const chunk = Number(arg('chunk', '0'));
  const model = await loadModel(modelDir);
  const ids = model.tokenizer.encode(fs.readFileSync(file, 'utf8'));
  const L = model.config.nLayer, info = model.info();
  const rows = [];
  const record = (r) => {
    rows.push(r);
    console.log(JSON.stringify(r));
    if (out) fs.writeFileSync(out, JSON.stringify({ model: path.basename(path.resolve(modelDir)), file, tokens: ids.length, rows }, null, 1));
  };
  // Perplexity of the token after each window of ctx tokens (windows every ctx/4 tokens).
  async function nextTokenPpl(ctx, simba) {
    const stride = Number(arg('stride', Math.max(1, ctx >> 2))), batch = 8;
    const starts = [];
    for (let s = 0; s + ctx < ids.length; s += stride) starts.push(s);
    let nll = 0, rel = 0;
    for (let b = 0; b < starts.length; b += batch) {
      const group = starts.slice(b, b + batch);
      if (chunk > 0 && simba) {
        // each chunk pruned on its own, at the budget (or the trapezoid's floor for its length)
        const seqs = group.map(() => model.newSequence());
        let res;
        for (let off = 0; off < ctx; off += chunk) {
          const n = Math.min(chunk, ctx - off);
          const opts = { ...simba, flops: Math.min(1, Math.max(simba.flops, trapezoidFloor(L, n) + 1e-9)) };
          res = await model.prefill(group.map((s, k) => ({ sequence: seqs[k], tokens: ids.slice(s + off, s + off + n) })),
                                    { logits: off + n === ctx ? 'last' : 'none', simba: opts });
          rel += res.reduce((a, r) => a + r.relFlops, 0) * (n / ctx);
        }
        res.forEach((r, k) => { nll -= logProb(r.logits[0], ids[group[k] + ctx]); r.sequence.dispose(); });
        continue;
      }
      const res = await model.prefill(group.map((s) => ({ tokens: ids.slice(s, s + ctx) })), { logits: 'last', simba });
      res.forEach((r, k) => { nll -= logProb(r.logits[0], ids[group[k] + ctx]); rel += r.relFlops; r.sequence.dispose(); });
    }
    return { ppl: Math.exp(nll / starts.length), relFlops: rel / starts.length, flopsPerToken: NaN, scored: starts.length };
  }
  const evaluate = (ctx, simba) => (lastOnly ? nextTokenPpl(ctx, simba) : perplexity(model, ids, { ctx, simba }));
  for (const ctx of ctxs) {
    const t0 = Date.now();
    const dense = await evaluate(ctx, undefined);
    record({ ctx, criterion: 'dense', budget: 1, schedule: 'dense', relFlops: 1, ppl: dense.ppl, flopsPerToken: info.flopsPerToken, seconds: (Date.now() - t0) / 1000 });
    for (const budget of budgets) {
      const plan = budgetOptions(L, ctx, budget);
      for (const c of criteria) {
        const [criterion, reduce] = c === 'simba-sum' ? ['simba', 'sum'] : [c, 'max'];
        const simba = { ...plan.options, criterion, reduce, seed: 1 };
        const t1 = Date.now();
        const r = await evaluate(ctx, simba);
        record({ ctx, criterion: c, budget, schedule: plan.schedule, relFlops: r.relFlops, ppl: r.ppl,
                 flopsPerToken: r.flopsPerToken, seconds: (Date.now() - t1) / 1000 });
      }
    }
  }
  model.dispose();
  // Markdown: one table per ctx, rows = budgets, columns = criteria.
  for (const ctx of ctxs) {
    const d = rows.find((r) => r.ctx === ctx && r.criterion === 'dense');
    console.log(`\n### ${path.basename(path.resolve(modelDir))}, ctx ${ctx}${lastOnly ? ', next token after each window' : ''}: dense ppl ${d.ppl.toFixed(2)}\n`);
    console.log(`| budget | relFlops | ${criteria.join(' | ')} |`);
    console.log(`| --- | --- | ${criteria.map(() => '---').join(' | ')} |`);
    for (const b of budgets) {
      const rs = criteria.map((c) => rows.find((r) => r.ctx === ctx && r.criterion === c && r.budget === b));
      console.log(`| ${b}${rs[0].schedule === 'steep' ? ' (steep)' : ''} | ${rs[0].relFlops.toFixed(3)} | ${rs.map((r) => r.ppl.toFixed(2)).join(' | ')} |`);
    }
  }
})().catch((e) => { console.error(e); process.exit(1); });
