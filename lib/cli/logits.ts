/** `simba logits`: logits of a token sequence (a stable JSON contract with --json). */
import type { Command } from 'commander';

import type { LogitsPositions } from '../engine/lm';
import {
  addModelOptions,
  addSimbaOptions,
  listArg,
  nonEmpty,
  num,
  out,
  parseIntStrict,
  simbaFromFlags,
  usage,
  withModel,
  type ModelFlags,
  type SimbaFlags,
} from './args';

interface LogitsFlags extends ModelFlags, SimbaFlags {
  ids?: number[];
  prompt?: string;
  positions: string;
  json?: boolean;
}

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
      ids.forEach((t, i) => {
        if (t >= V) throw usage(`--ids: token id ${t} (index ${i}) is outside the vocabulary [0, ${V})`);
      });
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
        s = i ? ',[' : '[';
        for (let j = 0; j < row.length; j++) s += (j ? ',' : '') + num(row[j]);
        out(s + ']');
      });
      out(`]${simba ? `,"kept":${JSON.stringify(r.processed)},"relFlops":${num(r.relFlops)}` : ''}}\n`);
      return;
    }
    const tok = model.tokenizer;
    const show = (id: number) => (tok ? JSON.stringify(tok.decode([id])) : `#${id}`);
    const lines = [
      `${ids.length} tokens; logits at ${r.positions.length} position(s)${simba ? `; Simba kept per layer ${r.processed.join(' ')} (relFlops ${r.relFlops.toFixed(3)})` : ''}`,
    ];
    r.logits.forEach((row, i) => {
      const p = r.positions[i];
      let m = -Infinity;
      for (const x of row) m = Math.max(m, x);
      let z = 0;
      for (const x of row) z += Math.exp(x - m);
      const top = Array.from(row.keys())
        .sort((a, b) => row[b] - row[a])
        .slice(0, 5);
      lines.push(
        `pos ${p} ${show(ids[p])} -> ` +
          top.map((t) => `${show(t)} ${row[t].toFixed(3)} (p ${(Math.exp(row[t] - m) / z).toFixed(3)})`).join(', '),
      );
    });
    out(lines.join('\n') + '\n');
  });
}

export function addLogitsCommand(program: Command): void {
  const logits = program.command('logits').description('logits of a token sequence (a stable JSON contract with --json)');
  addModelOptions(logits)
    .option(
      '--ids <i,j,...>',
      'token ids',
      listArg((s) => parseIntStrict(s, 0), 'token ids'),
    )
    .option('--prompt <text>', 'text to tokenize instead of --ids')
    .option('--positions <spec>', "'last', 'all' or positions i,j,k", 'last')
    .option('--json', 'print {"positions":[...],"logits":[[...],...]} (+ "kept", "relFlops" under Simba)');
  addSimbaOptions(logits).action((o: LogitsFlags) => cmdLogits(o));
}
