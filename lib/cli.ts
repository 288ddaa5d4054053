#!/usr/bin/env node
/**
 * The `simba` command line: argument parsing and dispatch only; the work lives in model.ts,
 * generate.ts, bench.ts, eval.ts and inspect.ts.
 *
 *   simba generate --prompt "The jury said" --max-tokens 40 --seed 1
 *   simba logits --ids 510,7371,753 --positions all --json
 *   simba info [--model DIR | --shape mamba-130m] [--json]
 *   simba bench --shape mamba-130m --flops 0.5,0.75 --json
 *   simba eval ppl --file heldout.txt --ctx 256 [--flops 0.6]
 *   simba eval choice --file task.jsonl
 *   simba inspect --prompt "..." --flops 0.6 --svg map.svg
 *
 * Exit codes: 0 success; 2 the command line is wrong (unknown flag, bad number, token id out of
 * range, invalid Simba settings); 1 the command could not run (missing model folder or file,
 * malformed task file, engine error). Errors are one line on stderr: `simba: <message>`
 * (SIMBA_DEBUG=1 adds the stack trace).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as cliProgress from 'cli-progress';

import { formatBench, runBench, type SimbaModifiers } from './bench';
import { SimbaError } from './errors';
import { evalChoice, evalLambada, parseTaskFile, perplexity } from './eval';
import { formatHighwaySummary, highwayMap, renderHighwaySvg } from './inspect';
import { DEFAULT_MODEL_DIR, loadModel, randomModel, SHAPES, type LogitsPositions, type MambaModel } from './model';
import { SIMBA_CRITERIA, type SimbaCriterion, type SimbaOptions } from './simba';

/** An error with its own exit code (2: usage, 1: runtime). */
class CliError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 2) {
    super(message);
  }
}
const usage = (msg: string) => new CliError(msg, 2);

// ---------------------------------------------------------------------------------------------
// Argument parsers (commander turns InvalidArgumentError into "option '--x <v>' argument 'y' is invalid. ...")

const INT_RE = /^[+-]?\d+$/;
const FLOAT_RE = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function parseIntStrict(v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const s = v.trim();
  const n = INT_RE.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(max === Number.MAX_SAFE_INTEGER ? `expected an integer >= ${min}` : `expected an integer in [${min}, ${max}]`);
  return n;
}

function parseFloatStrict(v: string, lo: number, hi: number, openLo = false): number {
  const s = v.trim();
  const n = FLOAT_RE.test(s) ? Number(s) : NaN;
  if (!Number.isFinite(n) || n > hi || (openLo ? n <= lo : n < lo))
    throw new InvalidArgumentError(`expected a number in ${openLo ? '(' : '['}${lo}, ${hi}]`);
  return n;
}

const intArg = (min: number, max?: number) => (v: string) => parseIntStrict(v, min, max);
const floatArg = (lo: number, hi: number, openLo = false) => (v: string) => parseFloatStrict(v, lo, hi, openLo);

function listArg<T>(item: (s: string) => T, what: string) {
  return (v: string): T[] => {
    const parts = v.split(',').map((s) => s.trim());
    if (parts.length === 0 || parts.some((s) => s === '')) throw new InvalidArgumentError(`expected a comma-separated list of ${what}`);
    return parts.map((s) => {
      try {
        return item(s);
      } catch (e) {
        throw new InvalidArgumentError(`'${s}': ${(e as Error).message}`);
      }
    });
  };
}

const collect = (v: string, prev: string[]) => [...prev, v];

// ---------------------------------------------------------------------------------------------
// Shared option groups

interface ModelFlags { model?: string; shape?: string; weights?: 'f32' | 'bf16' }

function addModelOptions(cmd: Command, opts: { shape?: boolean } = {}): Command {
  cmd.option('--model <dir>', 'model folder with config.json, *.safetensors, tokenizer.json (default: the shipped brown-mamba-s)')
     .addOption(new Option('--weights <type>', 'weight storage').choices(['f32', 'bf16']).default('f32'));
  if (opts.shape)
    cmd.addOption(new Option('--shape <name>', 'random weights of a standard shape instead of --model').choices(Object.keys(SHAPES)));
  return cmd;
}

interface SimbaFlags {
  flops?: number; keepLast?: number; keepCounts?: number[]; start?: number; criterion?: SimbaCriterion;
  reduce?: 'max' | 'sum'; protectFirst?: number; protectLast?: number; pruneSeed?: number;
}

function addSimbaModifiers(cmd: Command): Command {
  return cmd
    .option('--start <layer>', 'Simba: trapezoid start layer (layers 0..start keep everything)', intArg(0))
    .addOption(new Option('--criterion <name>', 'Simba: token scoring criterion (default simba)').choices([...SIMBA_CRITERIA]))
    .addOption(new Option('--reduce <how>', 'Simba: channel reduction of the score (default max)').choices(['max', 'sum']))
    .option('--protect-first <n>', 'Simba: always keep the first n tokens', intArg(0))
    .option('--protect-last <n>', 'Simba: always keep the last n tokens', intArg(0))
    .option('--prune-seed <n>', "Simba: seed of the 'random' criterion", intArg(0, 2 ** 31 - 1));
}

function addSimbaOptions(cmd: Command): Command {
  cmd.option('--flops <f>', 'Simba: target prefill FLOPs relative to dense (0 < f <= 1)', floatArg(0, 1, true))
     .option('--keep-last <r>', 'Simba: keep ratio at the last layer of the trapezoid (0..1)', floatArg(0, 1))
     .option('--keep-counts <n0,n1,...>', 'Simba: tokens kept after each layer', listArg((s) => parseIntStrict(s, 1), 'integers >= 1'));
  return addSimbaModifiers(cmd);
}

function simbaModifiers(f: Omit<SimbaFlags, 'flops'>): SimbaModifiers {
  const m: SimbaModifiers = {};
  if (f.start !== undefined) m.start = f.start;
  if (f.criterion !== undefined) m.criterion = f.criterion;
  if (f.reduce !== undefined) m.reduce = f.reduce;
  if (f.protectFirst !== undefined || f.protectLast !== undefined) m.protect = { first: f.protectFirst, last: f.protectLast };
  if (f.pruneSeed !== undefined) m.seed = f.pruneSeed;
  return m;
}

/** The Simba flags as SimbaOptions (undefined when no budget flag is given: dense). */
export function simbaFromFlags(f: SimbaFlags): SimbaOptions | undefined {
  const budgets = ([['--flops', f.flops], ['--keep-last', f.keepLast], ['--keep-counts', f.keepCounts]] as const).filter(([, v]) => v !== undefined);
  const mods = simbaModifiers(f);
  if (budgets.length > 1) throw usage(`give only one of --flops, --keep-last, --keep-counts (got ${budgets.map(([k]) => k).join(' and ')})`);
  if (budgets.length === 0) {
    if (Object.keys(mods).length)
      throw usage('--start, --criterion, --reduce, --protect-* and --prune-seed need one of --flops, --keep-last, --keep-counts');
    return undefined;
  }
  return { ...mods, flops: f.flops, rLast: f.keepLast, keepCounts: f.keepCounts };
}

// ---------------------------------------------------------------------------------------------
// Helpers

interface Progress { update(done: number, total: number, what?: string): void; stop(): void }

/** A progress bar on stderr when it is a terminal, else nothing. */
function progress(label: string): Progress {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar({
    stream: process.stderr, format: `${label} [{bar}] {value}/{total} {eta_formatted} {what}`,
    clearOnComplete: true, hideCursor: true, etaBuffer: 20,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total, what = '') {
      if (!started) { bar.start(total, done, { what }); started = true; return; }
      bar.setTotal(total);
      bar.update(done, { what });
    },
    stop() { if (started) bar.stop(); started = false; },
  };
}

async function openModel(f: ModelFlags): Promise<MambaModel> {
  if (f.shape !== undefined) {
    if (f.model !== undefined) throw usage('give --model or --shape, not both');
    return randomModel(f.shape, { weights: f.weights });
  }
  const dir = f.model ?? DEFAULT_MODEL_DIR;
  if (!fs.existsSync(dir)) throw new CliError(`model folder '${dir}' does not exist`, 1);
  if (!fs.statSync(dir).isDirectory()) throw new CliError(`'${dir}' is not a folder (give the folder holding config.json)`, 1);
  const bar = progress('loading');
  try {
    return await loadModel(dir, { weights: f.weights, onProgress: (p) => bar.update(p.done, p.total) });
  } finally {
    bar.stop();
  }
}

async function withModel<T>(f: ModelFlags, fn: (m: MambaModel) => Promise<T>): Promise<T> {
  const model = await openModel(f);
  try {
    return await fn(model);
  } finally {
    model.dispose();
  }
}

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${what} '${file}'${code === 'ENOENT' ? ': no such file' : code ? ` (${code})` : ''}`, 1);
  }
}

function nonEmpty(v: string | undefined, flag: string): string {
  if (v === undefined) throw usage(`${flag} is required`);
  if (v.length === 0) throw usage(`${flag} must not be empty`);
  return v;
}

/** The number as JSON: an exact float32 prints as the shortest double that equals it. */
function num(x: number): string {
  return Number.isFinite(x) ? String(x) : 'null';
}

function out(s: string): void {
  process.stdout.write(s);
}

function modelName(m: MambaModel): string {
  const src = m.info().source;
  return src.startsWith('random') ? src : path.basename(src);
}

// ---------------------------------------------------------------------------------------------
// Commands

interface GenerateFlags extends ModelFlags, SimbaFlags {
  prompt?: string; maxTokens: number; temperature?: number; topK?: number; topP?: number; seed?: number;
  stop: string[]; eos: boolean; verbose?: boolean;
}

async function cmdGenerate(f: GenerateFlags): Promise<void> {
  const prompt = nonEmpty(f.prompt, '--prompt');
  const simba = simbaFromFlags(f);
  await withModel(f, async (model) => {
    if (!model.tokenizer) throw usage('this model has no tokenizer.json; generate needs one to read --prompt');
    const t0 = performance.now();
    let n = 0, tFirst = 0;
    for await (const piece of model.generate(prompt, {
      maxTokens: f.maxTokens, temperature: f.temperature, topK: f.topK, topP: f.topP, seed: f.seed, stop: f.stop, stopAtEos: f.eos, simba,
    })) {
      if (n === 0) tFirst = performance.now();
      if (piece.token >= 0) n++;
      out(piece.text);
    }
    if (process.stdout.isTTY) out('\n');
    if (f.verbose) {
      const t1 = performance.now();
      process.stderr.write(`simba: ${n} tokens; prefill ${((tFirst - t0) / 1000).toFixed(3)} s; ` +
        `decode ${n > 1 ? ((n - 1) / ((t1 - tFirst) / 1000)).toFixed(1) : '-'} tokens/s\n`);
    }
  });
}

interface LogitsFlags extends ModelFlags, SimbaFlags { ids?: number[]; prompt?: string; positions: string; json?: boolean }

function parsePositions(spec: string, n: number): LogitsPositions {
  if (spec === 'last' || spec === 'all') return spec;
  let list: number[];
  try {
    list = listArg((s) => parseIntStrict(s, 0), 'integers >= 0')(spec);
  } catch (e) {
    throw usage(`--positions must be 'last', 'all' or a list of positions like 0,2,5 (${(e as Error).message})`);
  }
  for (const p of list) if (p >= n) throw usage(`--positions: position ${p} is outside the ${n} tokens`);
  return list;
}

async function cmdLogits(f: LogitsFlags): Promise<void> {
  if ((f.ids === undefined) === (f.prompt === undefined)) throw usage('give exactly one of --ids and --prompt');
  if (f.prompt !== undefined) nonEmpty(f.prompt, '--prompt');
  const simba = simbaFromFlags(f);
  await withModel(f, async (model) => {
    let ids: number[];
    if (f.ids) {
      ids = f.ids;
      const V = model.config.vocabSize;
      ids.forEach((t, i) => { if (t >= V) throw usage(`--ids: token id ${t} (index ${i}) is outside the vocabulary [0, ${V})`); });
    } else {
      if (!model.tokenizer) throw usage('this model has no tokenizer.json; give --ids');
      ids = model.tokenizer.encode(f.prompt!);
      if (ids.length === 0) throw usage('--prompt encodes to no tokens');
    }
    const positions = parsePositions(f.positions, ids.length);
    const r = await model.logits(ids, positions, { simba });
    if (f.json) {
      let s = `{"positions":${JSON.stringify(r.positions)},"logits":[`;
      out(s);
      r.logits.forEach((row, i) => {
        s = (i ? ',[' : '[');
        for (let j = 0; j < row.length; j++) s += (j ? ',' : '') + num(row[j]);
        out(s + ']');
      });
      out(`]${simba ? `,"kept":${JSON.stringify(r.processed)},"relFlops":${num(r.relFlops)}` : ''}}\n`);
      return;
    }
    const tok = model.tokenizer;
    const show = (id: number) => (tok ? JSON.stringify(tok.decode([id])) : `#${id}`);
    const lines = [`${ids.length} tokens; logits at ${r.positions.length} position(s)${simba ? `; Simba kept per layer ${r.processed.join(' ')} (relFlops ${r.relFlops.toFixed(3)})` : ''}`];
    r.logits.forEach((row, i) => {
      const p = r.positions[i];
      let m = -Infinity;
      for (const x of row) m = Math.max(m, x);
      let z = 0;
      for (const x of row) z += Math.exp(x - m);
      const top = Array.from(row.keys()).sort((a, b) => row[b] - row[a]).slice(0, 5);
      lines.push(`pos ${p} ${show(ids[p])} -> ` + top.map((t) => `${show(t)} ${row[t].toFixed(3)} (p ${(Math.exp(row[t] - m) / z).toFixed(3)})`).join(', '));
    });
    out(lines.join('\n') + '\n');
  });
}

interface InfoFlags extends ModelFlags { json?: boolean }

async function cmdInfo(f: InfoFlags): Promise<void> {
  await withModel(f, async (model) => {
    const info = model.info(), c = info.config, tok = model.tokenizer;
    const tokenizer = tok ? { vocabSize: tok.vocabSize, eosTokenId: tok.eosTokenId, bosTokenId: tok.bosTokenId, padTokenId: tok.padTokenId } : null;
    if (f.json) {
      out(JSON.stringify({ ...info, tokenizer }, null, 2) + '\n');
      return;
    }
    const mb = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);
    const fl = (x: number) => (x >= 1e9 ? `${(x / 1e9).toFixed(3)} GFLOP` : `${(x / 1e6).toFixed(3)} MFLOP`);
    out([
      `model       ${info.source}`,
      `config      d_model ${c.dModel}, layers ${c.nLayer}, d_inner ${c.dInner}, d_state ${c.dState}, dt_rank ${c.dtRank}, d_conv ${c.dConv}, vocab ${c.vocabSize}` +
        `${c.tieEmbeddings ? ', tied head' : ''}${c.projBias ? ', proj bias' : ''}${c.convBias ? '' : ', no conv bias'}, eps ${c.eps}`,
      `parameters  ${info.paramCount.toLocaleString('en-US')}`,
      `FLOPs/token ${fl(info.flopsPerToken)} (${c.nLayer} layers x ${info.layerFlops.toLocaleString('en-US')} + head ${info.headFlops.toLocaleString('en-US')})`,
      `weights     ${info.weights}, ${mb(info.weightBytes)}`,
      `state       ${mb(info.stateBytes)} per sequence (independent of context length)`,
      `engine      ${info.device}, ${info.isa}, ${info.threads} threads`,
      `tokenizer   ${tok ? `${tok.vocabSize} ids, eos ${tok.eosTokenId}` : 'none'}`,
    ].join('\n') + '\n');
  });
}

interface BenchFlags extends ModelFlags, Omit<SimbaFlags, 'flops'> {
  json?: boolean; runs: number; lengths?: number[]; batches?: number[]; decodeTokens?: number; decodePrompt?: number;
  /** Budgets (a list here, unlike the other commands' --flops). */
  flops?: number[]; seed?: number;
}

async function cmdBench(f: BenchFlags): Promise<void> {
  const mods = simbaModifiers(f);
  if (Object.keys(mods).length && !f.flops) throw usage('--start, --criterion, --reduce, --protect-* and --prune-seed need --flops');
  await withModel(f, async (model) => {
    const bar = progress('bench');
    let r;
    try {
      r = await runBench(model, {
        runs: f.runs, lengths: f.lengths, batches: f.batches, decodeTokens: f.decodeTokens, decodePrompt: f.decodePrompt,
        flops: f.flops, simba: mods, seed: f.seed,
      }, (p) => bar.update(p.done, p.total, p.label));
    } finally {
      bar.stop();
    }
    out(f.json ? JSON.stringify(r, null, 2) + '\n' : formatBench(r) + '\n');
  });
}

interface PplFlags extends ModelFlags, SimbaFlags { file: string; ctx: number; batch?: number; json?: boolean }

async function cmdPpl(f: PplFlags): Promise<void> {
  const simba = simbaFromFlags(f);
  const text = readText(f.file, 'text file');
  await withModel(f, async (model) => {
    if (!model.tokenizer) throw usage('this model has no tokenizer.json; eval ppl needs one');
    const t0 = performance.now();
    const ids = model.tokenizer.encode(text);
    if (ids.length < 2) throw new CliError(`${f.file}: the text has ${ids.length} token(s); at least 2 are needed`, 1);
    const bar = progress('ppl');
    let r;
    try {
      r = await perplexity(model, ids, { ctx: f.ctx, simba, batch: f.batch, onProgress: (p) => bar.update(p.done, p.total, 'windows') });
    } finally {
      bar.stop();
    }
    const seconds = (performance.now() - t0) / 1000;
    if (f.json) {
      out(JSON.stringify({ file: f.file, model: model.info().source, weights: f.weights, ...r, simba: simba ?? null, seconds }, null, 2) + '\n');
      return;
    }
    out([
      `perplexity  ${r.ppl.toFixed(3)}  (mean NLL ${r.meanNll.toFixed(4)} nats)`,
      `scored      ${r.scored.toLocaleString('en-US')} predictions in ${r.windows} window(s) of ${r.ctx} tokens (${r.tokens.toLocaleString('en-US')} tokens)`,
      simba ? `simba       relFlops ${r.relFlops.toFixed(4)}; ${(r.flopsPerToken / 1e6).toFixed(3)} MFLOP/token vs dense ${(r.denseFlopsPerToken / 1e6).toFixed(3)} (layers + head)` : null,
      `time        ${seconds.toFixed(1)} s`,
    ].filter((x) => x !== null).join('\n') + '\n');
  });
}

interface ChoiceFlags extends ModelFlags, SimbaFlags { file: string; batch?: number; json?: boolean; verbose?: boolean }

async function cmdChoice(f: ChoiceFlags): Promise<void> {
  const simba = simbaFromFlags(f);
  const text = readText(f.file, 'task file');
  let task;
  try {
    task = parseTaskFile(text, f.file);
  } catch (e) {
    throw new CliError((e as Error).message, 1);
  }
  await withModel(f, async (model) => {
    const t0 = performance.now();
    const bar = progress(task.mode);
    let r;
    try {
      const opts = { simba, batch: f.batch, onProgress: (p: { done: number; total: number }) => bar.update(p.done, p.total, 'items') };
      r = task.mode === 'choice' ? await evalChoice(model, task.items, opts) : await evalLambada(model, task.items, opts);
    } finally {
      bar.stop();
    }
    const seconds = (performance.now() - t0) / 1000;
    if (f.json) {
      out(JSON.stringify({ file: f.file, model: model.info().source, ...r, simba: simba ?? null, seconds }, null, 2) + '\n');
      return;
    }
    const lines: string[] = [];
    if (r.mode === 'choice') {
      lines.push(`accuracy       ${r.accuracy.toFixed(4)}  (${r.lines.filter((l) => l.correct).length} / ${r.items})`,
                 `accuracy_norm  ${r.accuracyNorm.toFixed(4)}  (log-likelihood per character)`);
      if (f.verbose) for (const l of r.lines)
        lines.push(`line ${l.line}: label ${l.label}, pred ${l.pred}${l.correct ? '' : ' (wrong)'}; ` + l.scores.map((s) => s.logLik.toFixed(3)).join(' '));
    } else {
      lines.push(`accuracy  ${r.accuracy.toFixed(4)}  (${r.lines.filter((l) => l.correct).length} / ${r.items} last words reproduced greedily)`);
      if (f.verbose) for (const l of r.lines) lines.push(`line ${l.line}: ${l.correct ? 'ok   ' : 'wrong'} ${JSON.stringify(l.target)} -> ${JSON.stringify(l.predicted)}`);
    }
    if (simba) lines.push(`simba     relFlops ${r.relFlops.toFixed(4)}`);
    lines.push(`time      ${seconds.toFixed(1)} s`);
    out(lines.join('\n') + '\n');
  });
}

interface InspectFlags extends ModelFlags, SimbaFlags { prompt?: string; promptFile?: string; svg?: string }

async function cmdInspect(f: InspectFlags): Promise<void> {
  if ((f.prompt === undefined) === (f.promptFile === undefined)) throw usage('give exactly one of --prompt and --prompt-file');
  const text = f.prompt !== undefined ? nonEmpty(f.prompt, '--prompt') : readText(f.promptFile!, 'prompt file');
  const simba = simbaFromFlags(f);
  if (!simba) throw usage('inspect needs one of --flops, --keep-last, --keep-counts');
  await withModel(f, async (model) => {
    if (!model.tokenizer) throw usage('this model has no tokenizer.json; inspect needs one');
    const ids = model.tokenizer.encode(text);
    if (ids.length === 0) throw usage('the prompt encodes to no tokens');
    const map = await highwayMap(model, ids, simba);
    if (f.svg) {
      try {
        fs.writeFileSync(f.svg, renderHighwaySvg(map, { title: modelName(model) }));
      } catch (e) {
        throw new CliError(`cannot write '${f.svg}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 1);
      }
    }
    out(formatHighwaySummary(map) + '\n' + (f.svg ? `wrote ${f.svg}\n` : ''));
  });
}

// ---------------------------------------------------------------------------------------------
// Program

export function buildProgram(): Command {
  const program = new Command('simba');
  program
    .description('Mamba language model inference with Simba token pruning')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`simba: ${s.replace(/^error: /, '').trimEnd()}\n`) })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);

  const gen = program.command('generate').description('stream a continuation of a prompt to stdout');
  addModelOptions(gen)
    .option('--prompt <text>', 'the prompt')
    .option('--max-tokens <n>', 'tokens to generate at most', intArg(0, 1_000_000), 64)
    .option('--temperature <t>', '0 = greedy (default 0.8)', floatArg(0, 100))
    .option('--top-k <k>', 'keep the k most likely tokens, 0 = off (default 40)', intArg(0))
    .option('--top-p <p>', 'nucleus sampling, 1 = off (default 0.95)', floatArg(0, 1, true))
    .option('--seed <n>', 'sampler seed (default random)', intArg(0, 2 ** 32 - 1))
    .option('--stop <text>', 'stop at this text (repeatable)', collect, [])
    .option('--no-eos', 'do not stop at the end-of-sequence token')
    .option('-v, --verbose', 'print timing to stderr');
  addSimbaOptions(gen).action((o: GenerateFlags) => cmdGenerate(o));

  const logits = program.command('logits').description('logits of a token sequence (a stable JSON contract with --json)');
  addModelOptions(logits)
    .option('--ids <i,j,...>', 'token ids', listArg((s) => parseIntStrict(s, 0), 'token ids'))
    .option('--prompt <text>', 'text to tokenize instead of --ids')
    .option('--positions <spec>', "'last', 'all' or positions i,j,k", 'last')
    .option('--json', 'print {"positions":[...],"logits":[[...],...]} (+ "kept", "relFlops" under Simba)');
  addSimbaOptions(logits).action((o: LogitsFlags) => cmdLogits(o));

  addModelOptions(program.command('info').description('model configuration, size, FLOPs and engine'), { shape: true })
    .option('--json', 'print JSON')
    .action((o: InfoFlags) => cmdInfo(o));

  const bench = program.command('bench').description('prefill and decode throughput (tokens/s), optionally with Simba rows');
  addModelOptions(bench, { shape: true })
    .option('--json', 'print one JSON document at the end')
    .option('--runs <n>', 'timed runs per row, after one warm-up', intArg(1), 5)
    .option('--lengths <list>', 'prefill lengths (default 128,512,2048)', listArg((s) => parseIntStrict(s, 1), 'integers >= 1'))
    .option('--batches <list>', 'decode batch sizes (default 1,8,32)', listArg((s) => parseIntStrict(s, 1), 'integers >= 1'))
    .option('--decode-tokens <n>', 'decode steps per run (default 32)', intArg(1))
    .option('--decode-prompt <n>', 'prompt tokens prefilled before decoding (default 16)', intArg(1))
    .option('--flops <list>', 'Simba FLOPs budgets for extra prefill rows, e.g. 0.25,0.5,0.75',
            listArg((s) => parseFloatStrict(s, 0, 1, true), 'numbers in (0, 1]'))
    .option('--seed <n>', 'seed of the random token ids (default 1)', intArg(0, 2 ** 32 - 1));
  addSimbaModifiers(bench).action((o: BenchFlags) => cmdBench(o));

  const ev = program.command('eval').description('perplexity and multiple-choice evaluation');
  const ppl = ev.command('ppl').description('perplexity over non-overlapping windows of a text file');
  addModelOptions(ppl)
    .requiredOption('--file <path>', 'text file')
    .option('--ctx <n>', 'window length in tokens', intArg(2, 65536), 256)
    .option('--batch <n>', 'windows per prefill call (default 8, fewer for long windows)', intArg(1))
    .option('--json', 'print JSON');
  addSimbaOptions(ppl).action((o: PplFlags) => cmdPpl(o));

  const choice = ev.command('choice').description('multiple choice ({context, choices, label}) or LAMBADA ({text}) accuracy from a JSONL file');
  addModelOptions(choice)
    .requiredOption('--file <path>', 'JSONL task file')
    .option('--batch <n>', 'sequences per prefill call (default 16)', intArg(1))
    .option('--json', 'print JSON (with per-line results)')
    .option('-v, --verbose', 'print per-line results');
  addSimbaOptions(choice).action((o: ChoiceFlags) => cmdChoice(o));

  const inspect = program.command('inspect').description('draw the Simba highway map of a prompt (SVG) and print kept tokens per layer');
  addModelOptions(inspect)
    .option('--prompt <text>', 'the prompt (a few hundred tokens at most)')
    .option('--prompt-file <path>', 'read the prompt from a file')
    .option('--svg <file>', 'write the map here');
  addSimbaOptions(inspect).action((o: InspectFlags) => cmdInspect(o));

  return program;
}

/** API option names in engine messages -> the CLI's flags. */
const FLAG_NAMES: [RegExp, string][] = [
  [/\bsimba\.flops\b/g, '--flops'], [/\bsimba\.rLast\b/g, '--keep-last'], [/\b(simba\.)?keepCounts\b/g, '--keep-counts'],
  [/\bsimba\.start\b/g, '--start'], [/\bsimba\.criterion\b/g, '--criterion'], [/\bsimba\.reduce\b/g, '--reduce'],
  [/\bsimba\.protect\.first\b/g, '--protect-first'], [/\bsimba\.protect\.last\b/g, '--protect-last'], [/\bsimba\.seed\b/g, '--prune-seed'],
  [/\bUse explicit --keep-counts\b/g, 'Use --keep-counts'],
];

function cliNames(msg: string): string {
  return FLAG_NAMES.reduce((m, [re, flag]) => m.replace(re, flag), msg);
}

function oneLine(msg: string): string {
  return msg.replace(/\s*\n\s*/g, '; ').trim();
}

/** Runs the CLI on argv (without node and script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;  // commander printed it already
    let code: number, msg: string;
    if (e instanceof CliError) {
      code = e.exitCode; msg = e.message;
    } else if (e instanceof SimbaError) {
      code = e.code === 'E_ARG' || e.code === 'E_TOKEN' ? 2 : 1; msg = cliNames(e.message);
    } else {
      code = 1; msg = `internal error: ${e instanceof Error ? e.message : String(e)}`;
    }
    process.stderr.write(`simba: ${oneLine(msg)}\n`);
    if (process.env.SIMBA_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    return code;
  }
}

if (require.main === module) {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  void main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
