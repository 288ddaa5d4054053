/**
 * Evaluation: perplexity over a text, multiple-choice log-likelihood scoring and LAMBADA-style
 * last-word prediction, optionally under Simba pruning (the CLI's `simba eval ppl|choice`).
 *
 * Conventions (all positions are scored from a fresh, zero state; no special tokens are added):
 *   - Perplexity: the text's tokens are cut into non-overlapping windows of `ctx` tokens (the last,
 *     partial window is kept when it has at least 2 tokens). In a window of n tokens, position i
 *     predicts token i+1: n-1 predictions. ppl = exp(mean NLL over all predictions of all windows).
 *   - Multiple choice: a choice's score is the summed log-probability of its continuation tokens
 *     given the context. Context and continuation are tokenized *separately* and concatenated
 *     (see `choiceTokens`), so every choice shares exactly the context's tokens.
 *   - LAMBADA: the text is split at its last run of whitespace; the target is ' ' + last word,
 *     tokenized on its own. A line is correct when greedy decoding after the context reproduces
 *     every target token.
 *   - Under Simba, a token that is dropped exits early: its logits come from its residual stream at
 *     the layer where it was dropped (see LanguageModel.prefill). Perplexity and choice scoring prune
 *     the whole window / context+choice; LAMBADA prunes the context's prefill and decodes densely.
 *
 * @example
 *   const ids = model.tokenizer!.encode(fs.readFileSync('heldout.txt', 'utf8'));
 *   const r = await perplexity(model, ids, { ctx: 256 });            // r.ppl
 *   const s = await perplexity(model, ids, { ctx: 256, simba: { flops: 0.6 } });  // s.relFlops ~ 0.6
 */
import { SimbaError } from '../errors';
import { EVAL_DEFAULTS, LIMITS } from '../limits';
import * as v from '../validate';
import { checkModel, type LanguageModel, type PrefillResult } from '../engine/lm';
import { headFlops, layerFlops, planSimba, type SimbaOptions } from '../engine/simba';
import type { Tokenizer } from '../checkpoint/tokenizer';

export interface EvalProgress {
  done: number;
  total: number;
}

// ---------------------------------------------------------------------------------------------
// Numerics

/** log softmax(row)[target], in float64. */
export function logProb(row: ArrayLike<number>, target: number): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > m) m = row[i];
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return row[target] - m - Math.log(s);
}

/** Index of the largest value (the first one on ties). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Perplexity

export interface PerplexityOptions {
  /** Window length in tokens (>= 2). */
  ctx: number;
  simba?: SimbaOptions;
  /** Windows per prefill call (default: 8, fewer for long windows or large vocabularies). */
  batch?: number;
  onProgress?: (p: EvalProgress) => void;
  signal?: AbortSignal;
}

export interface PerplexityResult {
  ppl: number;
  /** Mean negative log-likelihood (nats) over the scored positions. */
  meanNll: number;
  /** Tokens in the input. */
  tokens: number;
  /** Predictions scored (sum over windows of length - 1). */
  scored: number;
  windows: number;
  ctx: number;
  /** Tokens processed per layer, summed over all windows. */
  processed: number[];
  /** sum_l n_l / (L * tokens) over all windows (1 when dense). */
  relFlops: number;
  /** FLOPs per token through the layers plus the LM head (every position needs logits). */
  flopsPerToken: number;
  denseFlopsPerToken: number;
}

/** Non-overlapping windows of `ctx` tokens; a last partial window is kept when it has >= 2 tokens. */
export function windows(ids: ArrayLike<number>, ctx: number): number[][] {
  if (!Number.isInteger(ctx) || ctx < 2) throw new SimbaError('E_ARG', `ctx must be an integer >= 2, got ${String(ctx)}`);
  const out: number[][] = [];
  for (let s = 0; s < ids.length; s += ctx) {
    const w = Array.from({ length: Math.min(ctx, ids.length - s) }, (_, i) => ids[s + i]);
    if (w.length >= 2) out.push(w);
  }
  return out;
}

const PERPLEXITY_KEYS = ['ctx', 'simba', 'batch', 'onProgress', 'signal'] as const;
const SCORE_KEYS = ['simba', 'batch', 'onProgress', 'signal'] as const;

/** Checks the options shared by the evaluations (unknown keys, types). */
function checkEvalOptions<K extends string>(where: string, model: unknown, options: unknown, keys: readonly K[]) {
  checkModel(where, model);
  const o = v.options(where, options, keys) as Partial<Record<string, unknown>>;
  return {
    simba: o.simba as SimbaOptions | undefined,
    batch: v.int(where, 'batch', o.batch, 1),
    onProgress: v.func<(p: EvalProgress) => void>(where, 'onProgress', o.onProgress),
    signal: v.signal(where, 'signal', o.signal),
  };
}

/** Windows per call: up to 8, fewer when their logits (ctx x vocab float32 each) would pass ~256 MB. */
function defaultBatch(ctx: number, vocab: number): number {
  return Math.max(
    1,
    Math.min(EVAL_DEFAULTS.pplBatch, Math.floor(LIMITS.chunkTokens / ctx), Math.floor((256 << 20) / (ctx * vocab * 4))),
  );
}

/** Perplexity of a token sequence (see the module comment for the protocol). */
export async function perplexity(
  model: LanguageModel,
  ids: ArrayLike<number>,
  options: PerplexityOptions,
): Promise<PerplexityResult> {
  const opts = checkEvalOptions('perplexity', model, options, PERPLEXITY_KEYS);
  const ctx = v.int('perplexity', 'ctx', (options as { ctx?: unknown } | undefined)?.ctx, LIMITS.ctxMin, LIMITS.ctxMax);
  if (ctx === undefined) throw v.argError('perplexity', `ctx (the window length, e.g. ${EVAL_DEFAULTS.ctx}) is required`);
  if (!v.is.arrayLike(ids)) throw v.argError('perplexity', `ids must be an array of token ids, got ${v.describeType(ids)}`);
  const wins = windows(ids, ctx);
  if (wins.length === 0) throw new SimbaError('E_ARG', `perplexity: the text has ${ids.length} token(s); at least 2 are needed`);
  const cfg = model.config,
    L = cfg.nLayer;
  const batch = opts.batch ?? defaultBatch(ctx, cfg.vocabSize);
  // Fail before any work when a window length cannot take the Simba options (e.g. below the floor).
  if (opts.simba) for (const T of new Set(wins.map((w) => w.length))) planSimba(cfg, T, opts.simba);

  let nll = 0,
    scored = 0,
    tokens = 0;
  const processed = new Array<number>(L).fill(0);
  opts.onProgress?.({ done: 0, total: wins.length });
  // The next group's prefill runs natively while this one's log-softmax runs in JS.
  const run = (b: number) =>
    model.prefill(
      wins.slice(b, b + batch).map((w) => ({ tokens: w })),
      { logits: 'all', simba: opts.simba, signal: opts.signal },
    );
  const start = (b: number) => {
    const p = run(b);
    p.catch(() => {});
    return p;
  }; // awaited below; no unhandled rejection meanwhile
  let pending: Promise<PrefillResult[]> | null = start(0);
  for (let b = 0; b < wins.length; b += batch) {
    const res: PrefillResult[] = await pending!;
    pending = b + batch < wins.length ? start(b + batch) : null;
    res.forEach((r, k) => {
      const w = wins[b + k];
      for (let i = 0; i + 1 < w.length; i++) nll -= logProb(r.logits[i], w[i + 1]);
      scored += w.length - 1;
      tokens += w.length;
      r.processed.forEach((n, l) => {
        processed[l] += n;
      });
      r.sequence.dispose();
    });
    opts.onProgress?.({ done: Math.min(wins.length, b + batch), total: wins.length });
  }
  const meanNll = nll / scored;
  const relFlops = processed.reduce((a, n) => a + n, 0) / (L * tokens);
  const lf = layerFlops(cfg),
    hf = headFlops(cfg);
  return {
    ppl: Math.exp(meanNll),
    meanNll,
    tokens: ids.length,
    scored,
    windows: wins.length,
    ctx,
    processed,
    relFlops,
    flopsPerToken: relFlops * L * lf + hf,
    denseFlopsPerToken: L * lf + hf,
  };
}

// ---------------------------------------------------------------------------------------------
// Task files

export interface ChoiceItem {
  /** 1-based line number in the task file (0 when built in code). */
  line: number;
  context: string;
  choices: string[];
  label: number;
}

export interface LambadaItem {
  line: number;
  text: string;
}

export type TaskFile = { mode: 'choice'; items: ChoiceItem[] } | { mode: 'lambada'; items: LambadaItem[] };

function lineError(file: string, line: number, msg: string): SimbaError {
  return new SimbaError('E_ARG', `${file} line ${line}: ${msg}`);
}

/**
 * Parses a JSONL task file: every non-blank line is `{"context", "choices", "label"}` (multiple
 * choice) or `{"text"}` (LAMBADA-style); the first line decides the mode and all lines must agree.
 * Throws SimbaError E_ARG naming the line of the first problem.
 */
export function parseTaskFile(text: string, file = 'task file'): TaskFile {
  const choice: ChoiceItem[] = [],
    lambada: LambadaItem[] = [];
  let mode: 'choice' | 'lambada' | null = null;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw lineError(file, line, `not valid JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw lineError(file, line, 'expected a JSON object');
    const o = v as Record<string, unknown>;
    const kind = 'text' in o && !('choices' in o) ? 'lambada' : 'choice';
    if (mode === null) mode = kind;
    else if (kind !== mode)
      throw lineError(
        file,
        line,
        mode === 'choice'
          ? 'expected {"context", "choices", "label"} like the first line'
          : 'expected {"text"} like the first line',
      );
    if (kind === 'lambada') {
      if (typeof o.text !== 'string') throw lineError(file, line, '"text" must be a string');
      if (!splitLastWord(o.text)) throw lineError(file, line, '"text" needs at least two words (a context and a last word)');
      lambada.push({ line, text: o.text });
      return;
    }
    for (const k of Object.keys(o))
      if (k !== 'context' && k !== 'choices' && k !== 'label')
        throw lineError(file, line, `unknown key "${k}" (expected context, choices, label)`);
    if (typeof o.context !== 'string' || o.context.trim() === '')
      throw lineError(file, line, '"context" must be a non-empty string');
    if (!Array.isArray(o.choices) || o.choices.length < 2)
      throw lineError(file, line, '"choices" must be an array of at least 2 strings');
    o.choices.forEach((c, j) => {
      if (typeof c !== 'string' || c.trim() === '') throw lineError(file, line, `choice ${j} must be a non-empty string`);
    });
    if (typeof o.label !== 'number' || !Number.isInteger(o.label) || o.label < 0 || o.label >= o.choices.length)
      throw lineError(file, line, `"label" must be an integer in [0, ${o.choices.length - 1}], got ${JSON.stringify(o.label)}`);
    choice.push({ line, context: o.context, choices: o.choices as string[], label: o.label });
  });
  if (mode === null) throw new SimbaError('E_ARG', `${file}: no tasks (the file is empty)`);
  return mode === 'choice' ? { mode, items: choice } : { mode, items: lambada };
}

// ---------------------------------------------------------------------------------------------
// Multiple choice

/**
 * Tokens of a (context, choice) pair. The context's trailing whitespace moves to the front of the
 * continuation (so "Paris is in " + "France" and "Paris is in" + " France" score the same tokens);
 * when there is none and the choice does not begin with whitespace, a single space joins them.
 *   ctx  = encode(context without trailing whitespace)
 *   cont = encode((choice starts with whitespace ? '' : trailing whitespace || ' ') + choice)
 */
export function choiceTokens(
  tok: Tokenizer,
  context: string,
  choice: string,
): { ctx: number[]; cont: number[]; contText: string } {
  const head = context.replace(/\s+$/u, '');
  const ws = context.slice(head.length);
  const contText = /^\s/u.test(choice) ? choice : (ws || ' ') + choice;
  return { ctx: tok.encode(head), cont: tok.encode(contText), contText };
}

export interface ScoreOptions {
  simba?: SimbaOptions;
  /** Sequences per prefill call (default 16). */
  batch?: number;
  onProgress?: (p: EvalProgress) => void;
  signal?: AbortSignal;
}

export interface ScoreResult {
  /** Summed log-probability (nats) of each pair's continuation. */
  logLik: number[];
  /** Tokens processed per layer, summed over all sequences. */
  processed: number[];
  /** Tokens run (context + continuation), summed. */
  tokens: number;
}

/**
 * Log-likelihood of continuations given their contexts, from token ids: each pair runs as one
 * sequence ctx ++ cont from a zero state, and cont[j] is scored by the logits at ctx.length-1+j.
 */
export async function scoreContinuations(
  model: LanguageModel,
  pairs: { ctx: ArrayLike<number>; cont: ArrayLike<number> }[],
  options?: ScoreOptions,
): Promise<ScoreResult> {
  const opts = checkEvalOptions('scoreContinuations', model, options, SCORE_KEYS);
  const batch = opts.batch ?? EVAL_DEFAULTS.choiceBatch;
  if (!Array.isArray(pairs))
    throw v.argError('scoreContinuations', `pairs must be an array of { ctx, cont }, got ${v.describeType(pairs)}`);
  pairs.forEach((p, i) => {
    const o = v.options('scoreContinuations', p, ['ctx', 'cont'] as const, `pairs[${i}]`);
    for (const k of ['ctx', 'cont'] as const)
      if (!v.is.arrayLike(o[k]))
        throw v.argError('scoreContinuations', `pairs[${i}].${k} must be an array of token ids, got ${v.describeType(o[k])}`);
    if (p.ctx.length === 0) throw new SimbaError('E_ARG', `score: pair ${i} has an empty context`);
    if (p.cont.length === 0) throw new SimbaError('E_ARG', `score: pair ${i} has an empty continuation`);
  });
  const logLik: number[] = [];
  const processed = new Array<number>(model.config.nLayer).fill(0);
  let tokens = 0;
  // Groups of at most `batch` sequences whose all-position logits stay under ~256 MB (one sequence at least).
  const maxFloats = (256 << 20) / 4 / model.config.vocabSize;
  opts.onProgress?.({ done: 0, total: pairs.length });
  for (let b = 0; b < pairs.length;) {
    let e = b,
      n = 0;
    while (e < pairs.length && e - b < batch && (e === b || n + pairs[e].ctx.length + pairs[e].cont.length <= maxFloats))
      n += pairs[e].ctx.length + pairs[e++].cont.length;
    const group = pairs.slice(b, e);
    b = e;
    // Logits only where a continuation token is predicted (the head is a large share of the FLOPs).
    const res = await model.prefill(
      group.map((p) => ({
        tokens: [...Array.from(p.ctx), ...Array.from(p.cont)],
        logits: Array.from({ length: p.cont.length }, (_, j) => p.ctx.length - 1 + j),
      })),
      { simba: opts.simba, signal: opts.signal },
    );
    res.forEach((r, k) => {
      const { ctx, cont } = group[k];
      let ll = 0;
      for (let j = 0; j < cont.length; j++) ll += logProb(r.logits[j], cont[j]);
      logLik.push(ll);
      r.processed.forEach((n, l) => {
        processed[l] += n;
      });
      tokens += ctx.length + cont.length;
      r.sequence.dispose();
    });
    opts.onProgress?.({ done: b, total: pairs.length });
  }
  return { logLik, processed, tokens };
}

export interface ChoiceScore {
  /** Summed log-probability (nats) of the continuation tokens. */
  logLik: number;
  tokens: number;
  /** Characters of the continuation text (the length normalisation of accuracyNorm). */
  chars: number;
}

export interface ChoiceLineResult {
  line: number;
  label: number;
  /** argmax of the summed log-likelihood. */
  pred: number;
  /** argmax of the log-likelihood per character of the continuation. */
  predNorm: number;
  correct: boolean;
  correctNorm: boolean;
  scores: ChoiceScore[];
}

export interface ChoiceResult {
  mode: 'choice';
  items: number;
  accuracy: number;
  /** Accuracy with the log-likelihood divided by the continuation's length in characters (lm-eval's acc_norm). */
  accuracyNorm: number;
  /** Token-weighted relative FLOPs of the scoring prefills (1 when dense). */
  relFlops: number;
  lines: ChoiceLineResult[];
}

function needTokenizer(model: LanguageModel, what: string): Tokenizer {
  if (!model.tokenizer) throw new SimbaError('E_ARG', `${what}: this model has no tokenizer (tokenizer.json)`);
  return model.tokenizer;
}

/** Scores every choice of every item (see choiceTokens) and reports accuracy. */
export async function evalChoice(model: LanguageModel, items: ChoiceItem[], options?: ScoreOptions): Promise<ChoiceResult> {
  const opts = checkEvalOptions('evalChoice', model, options, SCORE_KEYS);
  if (!Array.isArray(items))
    throw v.argError('evalChoice', `items must be an array of { context, choices, label }, got ${v.describeType(items)}`);
  const tok = needTokenizer(model, 'eval choice');
  if (items.length === 0) throw new SimbaError('E_ARG', 'eval choice: no items');
  const pairs: { ctx: number[]; cont: number[] }[] = [];
  const meta: { tokens: number; chars: number }[] = [];
  for (const it of items)
    for (const c of it.choices) {
      const t = choiceTokens(tok, it.context, c);
      if (t.ctx.length === 0) throw new SimbaError('E_ARG', `line ${it.line}: the context has no tokens`);
      pairs.push({ ctx: t.ctx, cont: t.cont });
      meta.push({ tokens: t.cont.length, chars: t.contText.length });
    }
  const s = await scoreContinuations(model, pairs, opts);
  let k = 0,
    right = 0,
    rightNorm = 0;
  const lines = items.map((it) => {
    const scores = it.choices.map(() => ({ logLik: s.logLik[k], ...meta[k++] }));
    const best = (f: (x: ChoiceScore) => number) => scores.reduce((bi, x, i) => (f(x) > f(scores[bi]) ? i : bi), 0);
    const pred = best((x) => x.logLik),
      predNorm = best((x) => x.logLik / x.chars);
    if (pred === it.label) right++;
    if (predNorm === it.label) rightNorm++;
    return {
      line: it.line,
      label: it.label,
      pred,
      predNorm,
      correct: pred === it.label,
      correctNorm: predNorm === it.label,
      scores,
    };
  });
  return {
    mode: 'choice',
    items: items.length,
    accuracy: right / items.length,
    accuracyNorm: rightNorm / items.length,
    relFlops: s.processed.reduce((a, n) => a + n, 0) / (model.config.nLayer * s.tokens),
    lines,
  };
}

// ---------------------------------------------------------------------------------------------
// LAMBADA

/** Splits at the last run of whitespace: context (trimmed) and the last word; null without both. */
export function splitLastWord(text: string): { context: string; word: string } | null {
  const m = /^([\s\S]*\S)\s+(\S+)\s*$/u.exec(text);
  return m ? { context: m[1], word: m[2] } : null;
}

export interface LambadaLineResult {
  line: number;
  /** The last word, and the greedy continuation decoded to as many tokens as the target has. */
  target: string;
  predicted: string;
  correct: boolean;
}

export interface LambadaResult {
  mode: 'lambada';
  items: number;
  accuracy: number;
  /** Token-weighted relative FLOPs of the context prefills (1 when dense). */
  relFlops: number;
  lines: LambadaLineResult[];
}

/**
 * LAMBADA-style accuracy: prefill the context (with Simba if given), then greedy decoding (dense)
 * for as many tokens as encode(' ' + word) has; correct when every greedy token equals the target's.
 */
export async function evalLambada(model: LanguageModel, items: LambadaItem[], options?: ScoreOptions): Promise<LambadaResult> {
  const opts = checkEvalOptions('evalLambada', model, options, SCORE_KEYS);
  if (!Array.isArray(items)) throw v.argError('evalLambada', `items must be an array of { text }, got ${v.describeType(items)}`);
  const tok = needTokenizer(model, 'eval lambada');
  if (items.length === 0) throw new SimbaError('E_ARG', 'eval lambada: no items');
  const batch = opts.batch ?? EVAL_DEFAULTS.choiceBatch;
  const prepared = items.map((it) => {
    const sp = splitLastWord(it.text);
    if (!sp) throw new SimbaError('E_ARG', `line ${it.line}: "text" needs at least two words`);
    const ctx = tok.encode(sp.context),
      target = tok.encode(' ' + sp.word);
    if (ctx.length === 0) throw new SimbaError('E_ARG', `line ${it.line}: the context has no tokens`);
    return { it, word: sp.word, ctx, target };
  });
  const lines: LambadaLineResult[] = [];
  const processed = new Array<number>(model.config.nLayer).fill(0);
  let tokens = 0,
    right = 0;
  opts.onProgress?.({ done: 0, total: items.length });
  for (let b = 0; b < prepared.length; b += batch) {
    const group = prepared.slice(b, b + batch);
    const res = await model.prefill(
      group.map((g) => ({ tokens: g.ctx })),
      { logits: 'last', simba: opts.simba, signal: opts.signal },
    );
    const preds: number[][] = group.map(() => []);
    let next = res.map((r) => argmax(r.logits[0]));
    next.forEach((t, i) => preds[i].push(t));
    res.forEach((r, i) => {
      r.processed.forEach((n, l) => {
        processed[l] += n;
      });
      tokens += group[i].ctx.length;
    });
    // Lockstep greedy decoding of the sequences that still need tokens.
    for (let step = 1; ; step++) {
      const active = group.map((g, i) => i).filter((i) => group[i].target.length > step);
      if (active.length === 0) break;
      const logits = await model.decode(
        active.map((i) => res[i].sequence),
        active.map((i) => next[i]),
        { signal: opts.signal },
      );
      next = [...next];
      active.forEach((i, k) => {
        next[i] = argmax(logits[k]);
        preds[i].push(next[i]);
      });
    }
    group.forEach((g, i) => {
      res[i].sequence.dispose();
      const correct = g.target.every((t, j) => preds[i][j] === t);
      if (correct) right++;
      lines.push({ line: g.it.line, target: g.word, predicted: tok.decode(preds[i]).replace(/^ /u, ''), correct });
    });
    opts.onProgress?.({ done: Math.min(items.length, b + batch), total: items.length });
  }
  return {
    mode: 'lambada',
    items: items.length,
    accuracy: right / items.length,
    relFlops: processed.reduce((a, n) => a + n, 0) / (model.config.nLayer * tokens),
    lines,
  };
}
