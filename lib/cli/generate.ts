/** `simba generate`: stream a continuation of a prompt to stdout. */
import type { Command } from 'commander';

import { generate } from '../generate/generate';
import { addModelOptions, addSimbaOptions, collect, floatArg, intArg, nonEmpty, out, simbaFromFlags, usage, withModel, type ModelFlags, type SimbaFlags } from './args';

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
    for await (const piece of generate(model, prompt, {
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

export function addGenerateCommand(program: Command): void {
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
}
