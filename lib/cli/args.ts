/**
 * What every command shares: strict argument parsers, the model and Simba option groups, progress
 * bars, and opening the model a command works on. Exit codes: CliError(…, 2) for a wrong command
 * line, CliError(…, 1) for a command that could not run.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command, InvalidArgumentError, Option } from 'commander';
import * as cliProgress from 'cli-progress';

import { LIMITS } from '../limits';
import type { SimbaModifiers } from '../measure/bench';
import { isGgufFile } from '../checkpoint/gguf';
import { DEFAULT_MODEL_DIR, loadModel, randomModel, SHAPES } from '../engine/load';
import type { MambaModel } from '../engine/model';
import { SIMBA_CRITERIA, type SimbaCriterion, type SimbaOptions } from '../engine/simba';
import { WEIGHT_FORMATS, type WeightFormat } from '../types';

/** An error with its own exit code (2: usage, 1: runtime). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 2,
  ) {
    super(message);
  }
}
export const usage = (msg: string) => new CliError(msg, 2);

// Argument parsers (commander turns InvalidArgumentError into "option '--x <v>' argument 'y' is invalid. ...")

const INT_RE = /^[+-]?\d+$/;
const FLOAT_RE = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

export function parseIntStrict(v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const s = v.trim();
  const n = INT_RE.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(
      max === Number.MAX_SAFE_INTEGER ? `expected an integer >= ${min}` : `expected an integer in [${min}, ${max}]`,
    );
  return n;
}

export function parseFloatStrict(v: string, lo: number, hi: number, openLo = false): number {
  const s = v.trim();
  const n = FLOAT_RE.test(s) ? Number(s) : NaN;
  if (!Number.isFinite(n) || n > hi || (openLo ? n <= lo : n < lo))
    throw new InvalidArgumentError(`expected a number in ${openLo ? '(' : '['}${lo}, ${hi}]`);
  return n;
}

export const intArg = (min: number, max?: number) => (v: string) => parseIntStrict(v, min, max);
export const floatArg =
  (lo: number, hi: number, openLo = false) =>
  (v: string) =>
    parseFloatStrict(v, lo, hi, openLo);

export function listArg<T>(item: (s: string) => T, what: string) {
  return (v: string): T[] => {
    const parts = v.split(',').map((s) => s.trim());
    if (parts.length === 0 || parts.some((s) => s === ''))
      throw new InvalidArgumentError(`expected a comma-separated list of ${what}`);
    return parts.map((s) => {
      try {
        return item(s);
      } catch (e) {
        throw new InvalidArgumentError(`'${s}': ${(e as Error).message}`);
      }
    });
  };
}

export const collect = (v: string, prev: string[]) => [...prev, v];

// Shared option groups

export interface ModelFlags {
  model?: string;
  shape?: string;
  weights?: WeightFormat;
}

export function addModelOptions(cmd: Command, opts: { shape?: boolean } = {}): Command {
  cmd
    .option(
      '--model <path>',
      'model folder with config.json, *.safetensors, tokenizer.json, or a .gguf file (default: the shipped brown-mamba-s)',
    )
    .addOption(
      new Option('--weights <type>', 'weight storage (default: f32; for a GGUF file the format of its matrices)').choices([
        ...WEIGHT_FORMATS,
      ]),
    );
  if (opts.shape)
    cmd.addOption(
      new Option('--shape <name>', 'random weights of a standard shape instead of --model').choices(Object.keys(SHAPES)),
    );
  return cmd;
}

export interface SimbaFlags {
  flops?: number;
  keepLast?: number;
  keepCounts?: number[];
  start?: number;
  criterion?: SimbaCriterion;
  reduce?: 'max' | 'sum';
  protectFirst?: number;
  protectLast?: number;
  pruneSeed?: number;
}

export function addSimbaModifiers(cmd: Command): Command {
  return cmd
    .option('--start <layer>', 'Simba: trapezoid start layer (layers 0..start keep everything)', intArg(0))
    .addOption(new Option('--criterion <name>', 'Simba: token scoring criterion (default simba)').choices([...SIMBA_CRITERIA]))
    .addOption(new Option('--reduce <how>', 'Simba: channel reduction of the score (default max)').choices(['max', 'sum']))
    .option('--protect-first <n>', 'Simba: always keep the first n tokens', intArg(0))
    .option('--protect-last <n>', 'Simba: always keep the last n tokens', intArg(0))
    .option('--prune-seed <n>', "Simba: seed of the 'random' criterion", intArg(0, LIMITS.pruneSeed));
}

export function addSimbaOptions(cmd: Command): Command {
  cmd
    .option('--flops <f>', 'Simba: target prefill FLOPs relative to dense (0 < f <= 1)', floatArg(0, 1, true))
    .option('--keep-last <r>', 'Simba: keep ratio at the last layer of the trapezoid (0..1)', floatArg(0, 1))
    .option(
      '--keep-counts <n0,n1,...>',
      'Simba: tokens kept after each layer',
      listArg((s) => parseIntStrict(s, 1), 'integers >= 1'),
    );
  return addSimbaModifiers(cmd);
}

export function simbaModifiers(f: Omit<SimbaFlags, 'flops'>): SimbaModifiers {
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
  const budgets = (
    [
      ['--flops', f.flops],
      ['--keep-last', f.keepLast],
      ['--keep-counts', f.keepCounts],
    ] as const
  ).filter(([, v]) => v !== undefined);
  const mods = simbaModifiers(f);
  if (budgets.length > 1)
    throw usage(`give only one of --flops, --keep-last, --keep-counts (got ${budgets.map(([k]) => k).join(' and ')})`);
  if (budgets.length === 0) {
    if (Object.keys(mods).length)
      throw usage('--start, --criterion, --reduce, --protect-* and --prune-seed need one of --flops, --keep-last, --keep-counts');
    return undefined;
  }
  return { ...mods, flops: f.flops, rLast: f.keepLast, keepCounts: f.keepCounts };
}

// Helpers

export interface Progress {
  update(done: number, total: number, what?: string): void;
  stop(): void;
}

/**
 * A progress bar on `stream` (stderr) when it is a terminal, else nothing. The bar hides the cursor
 * while it runs; Ctrl-C (SIGINT) then stops it, shows the cursor again and exits with 130.
 */
export function progress(
  label: string,
  stream: NodeJS.WriteStream = process.stderr,
  exit: (code: number) => void = (code) => process.exit(code),
): Progress {
  if (!stream.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {value}/{total} {eta_formatted} {what}`,
      clearOnComplete: true,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const stop = () => {
    if (started) bar.stop();
    started = false;
    process.removeListener('SIGINT', onSigint);
  };
  const onSigint = () => {
    stop();
    stream.write('\x1b[?25h'); // the cursor, whatever state the bar left it in
    exit(130);
  };
  return {
    update(done, total, what = '') {
      if (!started) {
        bar.start(total, done, { what });
        started = true;
        process.once('SIGINT', onSigint);
        return;
      }
      bar.setTotal(total);
      bar.update(done, { what });
    },
    stop,
  };
}

export async function openModel(f: ModelFlags): Promise<MambaModel> {
  if (f.shape !== undefined) {
    if (f.model !== undefined) throw usage('give --model or --shape, not both');
    return randomModel(f.shape, { weights: f.weights });
  }
  const dir = f.model ?? DEFAULT_MODEL_DIR;
  if (!fs.existsSync(dir)) throw new CliError(`model folder '${dir}' does not exist`, 1);
  if (!fs.statSync(dir).isDirectory() && !isGgufFile(dir))
    throw new CliError(`'${dir}' is neither a folder (give the folder holding config.json) nor a GGUF file`, 1);
  const bar = progress('loading');
  try {
    return await loadModel(dir, { weights: f.weights, onProgress: (p) => bar.update(p.done, p.total) });
  } finally {
    bar.stop();
  }
}

export async function withModel<T>(f: ModelFlags, fn: (m: MambaModel) => Promise<T>): Promise<T> {
  const model = await openModel(f);
  try {
    return await fn(model);
  } finally {
    model.dispose();
  }
}

export function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${what} '${file}'${code === 'ENOENT' ? ': no such file' : code ? ` (${code})` : ''}`, 1);
  }
}

export function nonEmpty(v: string | undefined, flag: string): string {
  if (v === undefined) throw usage(`${flag} is required`);
  if (v.length === 0) throw usage(`${flag} must not be empty`);
  return v;
}

/** The number as JSON: an exact float32 prints as the shortest double that equals it. */
export function num(x: number): string {
  return Number.isFinite(x) ? String(x) : 'null';
}

export function out(s: string): void {
  process.stdout.write(s);
}

export function modelName(m: MambaModel): string {
  const src = m.info().source;
  return src.startsWith('random') ? src : path.basename(src);
}
