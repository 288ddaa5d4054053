#!/usr/bin/env node
/**
 * The `simba` command line: argument parsing and dispatch only; the work lives in the library
 * (engine/, generate/, measure/), one file here per command.
 *
 *   simba --version
 *   simba generate --prompt "The jury said" --max-tokens 40 --seed 1
 *   echo "The jury said" | simba generate --max-tokens 40
 *   simba logits --prompt "The jury said" --positions all --json
 *   simba info [--model DIR | --shape mamba-130m] [--json]
 *   simba bench --shape mamba-130m --flops 0.5,0.75 --json
 *   simba eval ppl --file heldout.txt --ctx 256 [--flops 0.6]
 *   simba eval choice --file task.jsonl
 *   simba inspect --prompt "..." --flops 0.6 --svg map.svg
 *   simba doctor [--json]
 *   simba serve --port 8080 [--redis redis://127.0.0.1:6379]
 *   simba worker --redis redis://127.0.0.1:6379 --model DIR [--concurrency 16]
 *
 * Exit codes: 0 success; 2 the command line is wrong (unknown flag, bad number, token id out of
 * range, invalid Simba settings); 1 the command could not run (missing model folder or file,
 * malformed task file, engine error). Errors are one line on stderr: `simba: <message>`
 * (SIMBA_DEBUG=1 adds the stack trace).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command, CommanderError } from 'commander';

import { SimbaError } from '../errors';
import { CliError } from './args';
import { addBenchCommand } from './bench';
import { addDoctorCommand } from './doctor';
import { addEvalCommand } from './eval';
import { addGenerateCommand } from './generate';
import { addInfoCommand } from './info';
import { addInspectCommand } from './inspect';
import { addLogitsCommand } from './logits';
import { addServeCommand } from './serve';
import { addWorkerCommand } from './worker';

/** The package's version, from the package.json above this file (lib/cli/ or dist/lib/cli/). */
function packageVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++, dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (!fs.existsSync(file)) continue;
    const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'simba-ssm' && typeof pkg.version === 'string') return pkg.version;
  }
  return 'unknown';
}

function buildProgram(): Command {
  const program = new Command('simba');
  program
    .description('Mamba language model inference with Simba token pruning')
    .version(packageVersion(), '-V, --version', 'print the version of simba-ssm')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`simba: ${s.replace(/^error: /, '').trimEnd()}\n`) })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);

  for (const add of [
    addGenerateCommand,
    addLogitsCommand,
    addInfoCommand,
    addBenchCommand,
    addEvalCommand,
    addInspectCommand,
    addDoctorCommand,
    addServeCommand,
    addWorkerCommand,
  ])
    add(program);
  return program;
}

/** API option names in engine messages -> the CLI's flags. */
const FLAG_NAMES: [RegExp, string][] = [
  [/\bsimba\.flops\b/g, '--flops'],
  [/\bsimba\.rLast\b/g, '--keep-last'],
  [/\b(simba\.)?keepCounts\b/g, '--keep-counts'],
  [/\bsimba\.start\b/g, '--start'],
  [/\bsimba\.criterion\b/g, '--criterion'],
  [/\bsimba\.reduce\b/g, '--reduce'],
  [/\bsimba\.protect\.first\b/g, '--protect-first'],
  [/\bsimba\.protect\.last\b/g, '--protect-last'],
  [/\bsimba\.seed\b/g, '--prune-seed'],
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
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander printed it already
    let code: number, msg: string;
    if (e instanceof CliError) {
      code = e.exitCode;
      msg = e.message;
    } else if (e instanceof SimbaError) {
      code = e.code === 'E_ARG' || e.code === 'E_TOKEN' ? 2 : 1;
      msg = cliNames(e.message);
    } else {
      code = 1;
      msg = `internal error: ${e instanceof Error ? e.message : String(e)}`;
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
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
