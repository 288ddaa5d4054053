/**
 * `simba generate`: stream a continuation of a prompt to stdout, ending with a newline. The prompt
 * comes from --prompt, --prompt-file, or stdin when neither is given and stdin is not a terminal
 * (from a file or stdin, one final newline is dropped).
 */
import type { Command } from 'commander';

import { generate } from '../generate/generate';
import { GENERATE_DEFAULTS, LIMITS } from '../limits';
import {
  addModelOptions,
  addSimbaOptions,
  collect,
  floatArg,
  intArg,
  nonEmpty,
  out,
  readText,
  simbaFromFlags,
  usage,
  withModel,
  type ModelFlags,
  type SimbaFlags,
} from './args';

interface GenerateFlags extends ModelFlags, SimbaFlags {
  prompt?: string;
  promptFile?: string;
  maxTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop: string[];
  eos: boolean;
  verbose?: boolean;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** One final newline (as `echo` and editors add) is not part of the prompt. */
const dropFinalNewline = (s: string) => s.replace(/\r?\n$/, '');

/** The prompt: --prompt, else --prompt-file, else stdin (only when it is not a terminal). */
async function readPrompt(f: GenerateFlags): Promise<string> {
  if (f.prompt !== undefined && f.promptFile !== undefined) throw usage('give --prompt or --prompt-file, not both');
  if (f.prompt !== undefined) return nonEmpty(f.prompt, '--prompt');
  if (f.promptFile !== undefined) {
    const text = dropFinalNewline(readText(f.promptFile, 'prompt file'));
    if (text.length === 0) throw usage(`the prompt file '${f.promptFile}' is empty`);
    return text;
  }
  if (process.stdin.isTTY) throw usage('give --prompt TEXT or --prompt-file PATH, or pipe the prompt on stdin');
  const text = dropFinalNewline(await readStdin());
  if (text.length === 0) throw usage('the prompt read from stdin is empty (give --prompt, --prompt-file or pipe some text)');
  return text;
}

async function cmdGenerate(f: GenerateFlags): Promise<void> {
  const simba = simbaFromFlags(f);
  const prompt = await readPrompt(f);
  await withModel(f, async (model) => {
    if (!model.tokenizer) throw usage('this model has no tokenizer.json; generate needs one to read --prompt');
    const t0 = performance.now();
    let n = 0,
      tFirst = 0;
    for await (const piece of generate(model, prompt, {
      maxTokens: f.maxTokens,
      temperature: f.temperature,
      topK: f.topK,
      topP: f.topP,
      seed: f.seed,
      stop: f.stop,
      stopAtEos: f.eos,
      simba,
    })) {
      if (n === 0) tFirst = performance.now();
      if (piece.token >= 0) n++;
      out(piece.text);
    }
    out('\n');
    if (f.verbose) {
      const t1 = performance.now();
      process.stderr.write(
        `simba: ${n} tokens; prefill ${((tFirst - t0) / 1000).toFixed(3)} s; ` +
          `decode ${n > 1 ? ((n - 1) / ((t1 - tFirst) / 1000)).toFixed(1) : '-'} tokens/s\n`,
      );
    }
  });
}

export function addGenerateCommand(program: Command): void {
  const gen = program.command('generate').description('stream a continuation of a prompt to stdout');
  const d = GENERATE_DEFAULTS;
  addModelOptions(gen)
    .option('--prompt <text>', 'the prompt (default: --prompt-file, else stdin when it is not a terminal)')
    .option('--prompt-file <path>', 'read the prompt from a file')
    .option('--max-tokens <n>', 'tokens to generate at most', intArg(0, LIMITS.generateTokens), d.maxTokens)
    .option('--temperature <t>', `0 = greedy (default ${d.temperature})`, floatArg(0, LIMITS.temperature))
    .option('--top-k <k>', `keep the k most likely tokens, 0 = off (default ${d.topK})`, intArg(0))
    .option('--top-p <p>', `nucleus sampling, 1 = off (default ${d.topP})`, floatArg(0, 1, true))
    .option('--seed <n>', 'sampler seed (default random)', intArg(0, LIMITS.samplerSeed))
    .option('--stop <text>', 'stop at this text (repeatable)', collect, [])
    .option('--no-eos', 'do not stop at the end-of-sequence token')
    .option('-v, --verbose', 'print timing to stderr');
  addSimbaOptions(gen).action((o: GenerateFlags) => cmdGenerate(o));
}
