/**
 * What a grammar costs per generated token (compiled to dist/bench/structured.js): the mamba-130m
 * shape (random weights) with GPT-NeoX's 50k vocabulary (the repository's tokenizer fixture), batches
 * 1 and 32, two hand-written GBNF grammars: a small arithmetic language and a JSON object of 10
 * properties. Per setting, side by side in one run, median over the steps:
 *   - the decode step without a grammar and with one (each sequence its own matcher, sampling at
 *     temperature 1), and the native sampling time inside each (masks included);
 *   - the mask alone at the positions the run visited: walked cold (trie walk, no cache) and as
 *     served (the per-position cache);
 * and the first-token latency added by compiling: the vocabulary trie (once per model), the
 * grammar, and its first (cold) mask.
 *
 *   node dist/bench/structured.js [--steps 48] [--json]
 */
import * as path from 'path';

import { loadTokenizer } from '../lib/checkpoint/tokenizer';
import { compileFor, type Grammar, type GrammarMatcher } from '../lib/constrain/grammar';
import { grammarVocab } from '../lib/constrain/vocab';
import { rngFromSeed, type SamplingParams } from '../lib/engine/lm';
import { randomModel } from '../lib/engine/load';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : NaN;
};

const ARITH = String.raw`root   ::= expr
expr   ::= term (ws [-+] ws term)*
term   ::= factor (ws [*/] ws factor)*
factor ::= number | "(" ws expr ws ")" | "-" factor
number ::= [0-9]+ ("." [0-9]+)?
ws     ::= " "?
`;

const JSON10 = String.raw`root    ::= "{" ws p-id "," ws p-name "," ws p-email "," ws p-age "," ws p-score "," ws p-active "," ws p-tags "," ws p-city "," ws p-zip "," ws p-note ws "}"
p-id     ::= "\"id\"" ws ":" ws integer
p-name   ::= "\"name\"" ws ":" ws string
p-email  ::= "\"email\"" ws ":" ws string
p-age    ::= "\"age\"" ws ":" ws integer
p-score  ::= "\"score\"" ws ":" ws number
p-active ::= "\"active\"" ws ":" ws ("true" | "false")
p-tags   ::= "\"tags\"" ws ":" ws "[" ws (string (ws "," ws string)*)? ws "]"
p-city   ::= "\"city\"" ws ":" ws string
p-zip    ::= "\"zip\"" ws ":" ws string
p-note   ::= "\"note\"" ws ":" ws (string | "null")
string   ::= "\"" ([^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))* "\""
integer  ::= "-"? ("0" | [1-9] [0-9]{0,15})
number   ::= integer ("." [0-9]+)? ([eE] [-+]? [0-9]+)?
ws       ::= [ \t\n]{0,8}
`;

async function main(): Promise<void> {
  const steps = Number(arg('steps', '48'));
  const model = await randomModel('mamba-130m', { seed: 1 });
  const tok = loadTokenizer(path.join(__dirname, '..', '..', 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json'));
  const eos = tok.eosTokenId ?? 0;
  let t0 = performance.now();
  grammarVocab(tok, eos);
  const vocabMs = performance.now() - t0;
  compileFor('bench', 'root ::= "x"', tok, eos).matcher().allowed(); // (the first compile loads code: not timed)
  const grammars: Record<string, string> = { arithmetic: ARITH, 'JSON object, 10 properties': JSON10 };
  const compile: { grammar: string; compileMs: number; firstMaskMs: number }[] = [];
  const compiled: Record<string, Grammar> = {};
  for (const [name, text] of Object.entries(grammars)) {
    t0 = performance.now();
    const g = compileFor('bench', text, tok, eos);
    const compileMs = performance.now() - t0;
    t0 = performance.now();
    g.matcher().allowed();
    compile.push({ grammar: name, compileMs, firstMaskMs: performance.now() - t0 });
    compiled[name] = g;
  }
  // the widest mask: inside a JSON string nearly every token is allowed, so the walk visits the whole trie
  const inString = compiled['JSON object, 10 properties'].matcher();
  for (const id of tok.encode('{"id": 7, "name": "Ada')) if (!inString.accept(id)) throw new Error('bench: prefix refused');
  const widest = {
    allowed: inString.allowed(true).length,
    coldMs: median(Array.from({ length: 21 }, () => inString.maskMs(1, true))),
    servedMs: median(Array.from({ length: 21 }, () => inString.maskMs(1, false))),
  };
  const rows: {
    batch: number;
    grammar: string;
    stepMs: number;
    plainStepMs: number;
    sampleMs: number;
    plainSampleMs: number;
    coldMaskMs: number;
    servedMaskMs: number;
    cacheHits: number;
  }[] = [];
  for (const B of [1, 32]) {
    const seqs = Array.from({ length: B }, () => model.newSequence());
    await model.prefill(
      seqs.map((sequence, i) => ({ sequence, tokens: [1 + i, 2, 3, 4, 5, 6, 7, 8] })),
      { logits: 'none' },
    );
    for (const [name, g] of Object.entries(compiled)) {
      g.clearCache();
      const before = g.stats();
      const matchers: GrammarMatcher[] = seqs.map(() => g.matcher());
      const plain: SamplingParams[] = seqs.map((_, i) => ({ temperature: 1, rng: rngFromSeed(i) }));
      const constrained: SamplingParams[] = seqs.map((_, i) => ({ temperature: 1, rng: rngFromSeed(i), matcher: matchers[i] }));
      const stepMs: number[] = [],
        plainStepMs: number[] = [],
        sampleMs: number[] = [],
        plainSampleMs: number[] = [],
        cold: number[] = [],
        served: number[] = [];
      let toks = seqs.map((_, i) => 10 + i);
      for (let s = 0; s < steps; s++) {
        // side by side: an unconstrained step, then a constrained one (the timed states differ, the shapes do not)
        t0 = performance.now();
        const p = await model.step(seqs.map((sequence, i) => ({ sequence, tokens: [toks[i]], sample: [plain[i]] })));
        plainStepMs.push(performance.now() - t0);
        plainSampleMs.push(p.sampleMs);
        // the mask alone at this position of the first sequence: cold walk, then as served
        cold.push(matchers[0].maskMs(1, true));
        matchers[0].allowed(); // (the step below computes this mask anyway)
        served.push(matchers[0].maskMs(1, false));
        t0 = performance.now();
        const r = await model.step(seqs.map((sequence, i) => ({ sequence, tokens: [toks[i]], sample: [constrained[i]] })));
        stepMs.push(performance.now() - t0);
        sampleMs.push(r.sampleMs);
        toks = r.samples.map((x, i) => {
          // a finished (or stuck) sentence starts over, so every step is a constrained one
          if (x[0].token < 0 || x[0].token === eos || matchers[i].finished()) constrained[i].matcher = matchers[i] = g.matcher();
          return x[0].token >= 0 ? x[0].token : 10;
        });
      }
      const after = g.stats();
      rows.push({
        batch: B,
        grammar: name,
        stepMs: median(stepMs),
        plainStepMs: median(plainStepMs),
        sampleMs: median(sampleMs),
        plainSampleMs: median(plainSampleMs),
        coldMaskMs: median(cold),
        servedMaskMs: median(served),
        cacheHits:
          (after.masksCached - before.masksCached) /
          Math.max(1, after.masksCached + after.masksComputed - before.masksCached - before.masksComputed),
      });
    }
    for (const sq of seqs) sq.dispose();
  }
  model.dispose();
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify({ steps, vocabMs, compile, widest, rows }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `grammars on mamba-130m (random weights), GPT-NeoX vocabulary (${tok.vocabSize} ids), median of ${steps} steps, T=1\n\n`,
  );
  process.stdout.write(
    `vocabulary trie (once per model): ${vocabMs.toFixed(1)} ms\n\n| grammar | compile ms | first mask ms (cold) |\n| --- | --- | --- |\n`,
  );
  for (const c of compile) process.stdout.write(`| ${c.grammar} | ${c.compileMs.toFixed(2)} | ${c.firstMaskMs.toFixed(2)} |\n`);
  process.stdout.write(
    `\nthe widest mask (inside a JSON string, ${widest.allowed} ids allowed): ${widest.coldMs.toFixed(3)} ms cold, ${widest.servedMs.toFixed(4)} ms served from the cache (medians of 21)\n`,
  );
  process.stdout.write(
    '\n| B | grammar | step ms, no grammar | step ms, grammar | sampling ms in step, no grammar / grammar | mask ms cold / served | served masks from cache | extra per step |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n',
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.batch} | ${r.grammar} | ${r.plainStepMs.toFixed(2)} | ${r.stepMs.toFixed(2)} | ${r.plainSampleMs.toFixed(3)} / ${r.sampleMs.toFixed(3)} | ${r.coldMaskMs.toFixed(3)} / ${r.servedMaskMs.toFixed(4)} | ${(100 * r.cacheHits).toFixed(0)}% | ${((100 * (r.sampleMs - r.plainSampleMs)) / r.plainStepMs).toFixed(1)}% |\n`,
    );
}

void main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`);
  process.exit(1);
});
