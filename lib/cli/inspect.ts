/** `simba inspect`: the Simba highway map of a prompt (SVG) and the kept tokens per layer. */
import type { Command } from 'commander';

import * as fs from 'fs';

import { formatHighwaySummary, highwayMap, renderHighwaySvg } from '../measure/inspect';
import {
  addModelOptions,
  addSimbaOptions,
  CliError,
  modelName,
  nonEmpty,
  out,
  readText,
  simbaFromFlags,
  usage,
  withModel,
  type ModelFlags,
  type SimbaFlags,
} from './args';

interface InspectFlags extends ModelFlags, SimbaFlags {
  prompt?: string;
  promptFile?: string;
  svg?: string;
}

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

export function addInspectCommand(program: Command): void {
  const inspect = program
    .command('inspect')
    .description('draw the Simba highway map of a prompt (SVG) and print kept tokens per layer');
  addModelOptions(inspect)
    .option('--prompt <text>', 'the prompt (a few hundred tokens at most)')
    .option('--prompt-file <path>', 'read the prompt from a file')
    .option('--svg <file>', 'write the map here');
  addSimbaOptions(inspect).action((o: InspectFlags) => cmdInspect(o));
}
