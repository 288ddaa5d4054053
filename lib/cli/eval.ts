/** `simba eval ppl | choice`: perplexity and multiple-choice evaluation. */
import type { Command } from 'commander';

import { EVAL_DEFAULTS, LIMITS } from '../limits';
import { evalChoice, evalLambada, parseTaskFile, perplexity } from '../measure/eval';
import {
  addModelOptions,
  addSimbaOptions,
  CliError,
  intArg,
  out,
  progress,
  readText,
  simbaFromFlags,
  usage,
  withModel,
  type ModelFlags,
  type SimbaFlags,
} from './args';

interface PplFlags extends ModelFlags, SimbaFlags {
  file: string;
  ctx: number;
  batch?: number;
  json?: boolean;
}

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
      r = await perplexity(model, ids, {
        ctx: f.ctx,
        simba,
        batch: f.batch,
        onProgress: (p) => bar.update(p.done, p.total, 'windows'),
      });
    } finally {
      bar.stop();
    }
    const seconds = (performance.now() - t0) / 1000;
    if (f.json) {
      out(
        JSON.stringify(
          { file: f.file, model: model.info().source, weights: model.info().weights, ...r, simba: simba ?? null, seconds },
          null,
          2,
        ) + '\n',
      );
      return;
    }
    out(
      [
        `perplexity  ${r.ppl.toFixed(3)}  (mean NLL ${r.meanNll.toFixed(4)} nats)`,
        `scored      ${r.scored.toLocaleString('en-US')} predictions in ${r.windows} window(s) of ${r.ctx} tokens (${r.tokens.toLocaleString('en-US')} tokens)`,
        simba
          ? `simba       relFlops ${r.relFlops.toFixed(4)}; ${(r.flopsPerToken / 1e6).toFixed(3)} MFLOP/token vs dense ${(r.denseFlopsPerToken / 1e6).toFixed(3)} (layers + head)`
          : null,
        `time        ${seconds.toFixed(1)} s`,
      ]
        .filter((x) => x !== null)
        .join('\n') + '\n',
    );
  });
}

interface ChoiceFlags extends ModelFlags, SimbaFlags {
  file: string;
  batch?: number;
  json?: boolean;
  verbose?: boolean;
}

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
      const opts = {
        simba,
        batch: f.batch,
        onProgress: (p: { done: number; total: number }) => bar.update(p.done, p.total, 'items'),
      };
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
      lines.push(
        `accuracy       ${r.accuracy.toFixed(4)}  (${r.lines.filter((l) => l.correct).length} / ${r.items})`,
        `accuracy_norm  ${r.accuracyNorm.toFixed(4)}  (log-likelihood per character)`,
      );
      if (f.verbose)
        for (const l of r.lines)
          lines.push(
            `line ${l.line}: label ${l.label}, pred ${l.pred}${l.correct ? '' : ' (wrong)'}; ` +
              l.scores.map((s) => s.logLik.toFixed(3)).join(' '),
          );
    } else {
      lines.push(
        `accuracy  ${r.accuracy.toFixed(4)}  (${r.lines.filter((l) => l.correct).length} / ${r.items} last words reproduced greedily)`,
      );
      if (f.verbose)
        for (const l of r.lines)
          lines.push(
            `line ${l.line}: ${l.correct ? 'ok   ' : 'wrong'} ${JSON.stringify(l.target)} -> ${JSON.stringify(l.predicted)}`,
          );
    }
    if (simba) lines.push(`simba     relFlops ${r.relFlops.toFixed(4)}`);
    lines.push(`time      ${seconds.toFixed(1)} s`);
    out(lines.join('\n') + '\n');
  });
}

export function addEvalCommand(program: Command): void {
  const ev = program.command('eval').description('perplexity and multiple-choice evaluation');
  const ppl = ev.command('ppl').description('perplexity over non-overlapping windows of a text file');
  addModelOptions(ppl)
    .requiredOption('--file <path>', 'text file')
    .option('--ctx <n>', 'window length in tokens', intArg(LIMITS.ctxMin, LIMITS.ctxMax), EVAL_DEFAULTS.ctx)
    .option('--batch <n>', `windows per prefill call (default ${EVAL_DEFAULTS.pplBatch}, fewer for long windows)`, intArg(1))
    .option('--json', 'print JSON');
  addSimbaOptions(ppl).action((o: PplFlags) => cmdPpl(o));

  const choice = ev
    .command('choice')
    .description('multiple choice ({context, choices, label}) or LAMBADA ({text}) accuracy from a JSONL file');
  addModelOptions(choice)
    .requiredOption('--file <path>', 'JSONL task file')
    .option('--batch <n>', `sequences per prefill call (default ${EVAL_DEFAULTS.choiceBatch})`, intArg(1))
    .option('--json', 'print JSON (with per-line results)')
    .option('-v, --verbose', 'print per-line results');
  addSimbaOptions(choice).action((o: ChoiceFlags) => cmdChoice(o));
}
