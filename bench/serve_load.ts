/**
 * Load benchmark of `simba serve` (compiled to dist/bench/serve_load.js). It first measures the raw
 * engine's batched decode on the same model (this process), then starts `simba serve` as a child
 * process and drives it with N concurrent streaming clients using the official `openai` client:
 *
 *   short-long: 16-word prompts, 128 generated tokens     long-short: 1024-word prompts, 16 tokens
 *   mixed: half the clients short-long, half long-short (the short streams' ITL under long prefills)
 *
 * at concurrency 1, 8 and 32: aggregate generated tokens/s, time to first token and inter-token
 * latency (between streamed text chunks) p50 / p99, and the ratio served / raw decode at B = the
 * concurrency. Each served row is bracketed by a raw decode with native sampling (the server's own
 * call: 48 steps at B = C, temperature 0.8, top-p 0.95) just before and just after it, and the
 * ratio uses their mean (this kind of machine drifts by 20% within minutes; until 2026-12-04 the
 * bracket was a plain `model.decode`, which also copies every row of logits to JS). Each row also says where the cores went: the clients (this process), the server's JS
 * thread, the server's engine and other threads, and the share of the wall spent in native steps. EOS is suppressed (logit_bias) so every stream generates exactly its max_tokens.
 *
 * --shape (random weights) needs a tokenizer for text prompts: --tokenizer, default the GPT-NeoX
 * tokenizer of test/fixtures (the real 50277-id vocabulary of the state-spaces models), else the
 * shipped model's.
 *
 *   node dist/bench/serve_load.js --shape mamba-130m [--weights f32|bf16|int8] [--concurrency 1,8,32] [--requests 2]
 *     [--scenario short-long,long-short,mixed] [--quick] [--json out.json]
 *     [--serve-args "--itl-target-ms 50 --simba-under-load 0.6"] [--cli path/to/dist/lib/cli/main.js] [--no-raw]
 *
 * --serve-args are passed to `simba serve`; --cli runs another build's server (e.g. a checkout of
 * an older commit, for before / after); --no-raw skips the raw-decode measurements (the ratio
 * column is then empty). Each row also gives the prompt tokens prefilled per second and, with
 * --simba-under-load, the prompts pruned, their budgets (usage.simba.flops) and the tokens pruned.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import OpenAI from 'openai';

import { rngFromSeed } from '../lib/engine/lm';
import { loadModel, randomModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';
import { mulberry32 } from '../lib/generate/sampler';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const quick = process.argv.includes('--quick');
const ROOT = path.resolve(__dirname, '..', '..');
const shape = arg('shape', process.argv.includes('--model') ? '' : 'mamba-130m');
const modelDir = arg('model', '');
const fixture = path.join(ROOT, 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json');
const weights = arg('weights', 'f32');
if (!['f32', 'bf16', 'int8'].includes(weights)) throw new Error(`--weights must be f32, bf16 or int8, got '${weights}'`);
const tokenizerPath = arg(
  'tokenizer',
  shape ? (fs.existsSync(fixture) ? fixture : path.join(ROOT, 'models', 'brown-mamba-s')) : '',
);
const concurrency = arg('concurrency', quick ? '1,4' : '1,8,32')
  .split(',')
  .map(Number);
const requests = Number(arg('requests', quick ? '1' : '2'));
const allScenarios = quick
  ? [
      { name: 'short-long', words: 16, tokens: 16 },
      { name: 'long-short', words: 128, tokens: 4 },
    ]
  : [
      { name: 'short-long', words: 16, tokens: 128 },
      { name: 'long-short', words: 1024, tokens: 16 },
      { name: 'mixed', words: 0, tokens: 0 },
    ];
/** What client i of a scenario sends: mixed alternates short-long (even i) and long-short (odd i). */
function clientShape(sc: { name: string; words: number; tokens: number }, i: number): { words: number; tokens: number } {
  if (sc.name !== 'mixed') return sc;
  const [shortLong, longShort] = allScenarios;
  return i % 2 === 0 ? shortLong : longShort;
}
const noRaw = process.argv.includes('--no-raw');
const serveExtra = arg('serve-args', '')
  .split(' ')
  .filter((x) => x !== '');
const only = arg('scenario', '');
const scenarios = only ? allScenarios.filter((s) => only.split(',').includes(s.name)) : allScenarios;
if (scenarios.length === 0) throw new Error(`--scenario: none of ${allScenarios.map((s) => s.name).join(', ')}`);
const log = (s: string) => process.stderr.write(`${s}\n`);

const WORDS = (
  'the of and to a in that is was he for it with as his on be at by i had not are but from or have an they which one you were her ' +
  'all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some ' +
  'could time these two may then do first any my now such like our over man me even most made after also did many before must through back ' +
  'years where much your way well down should because each just those people how too little state good very make world still own see men work'
).split(' ');

function prompt(words: number, seed: number): string {
  const r = mulberry32(seed);
  return Array.from({ length: words }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Raw engine: B sequences (16-token prompts), `steps` lockstep steps; tokens/s of plain decode and decode+native sampling (both = false: the latter only). */
async function rawDecode(model: MambaModel, B: number, steps: number, both = true): Promise<{ plain: number; sampled: number }> {
  const runOnce = async (sample: boolean) => {
    const seqs = Array.from({ length: B }, () => model.newSequence());
    await model.prefill(
      seqs.map((sequence, i) => ({ sequence, tokens: Array.from({ length: 16 }, (_, j) => (i * 131 + j * 7) % 4000) })),
      { logits: 'none' },
    );
    const params = seqs.map((_, i) => ({ temperature: 0.8, topP: 0.95, rng: rngFromSeed(i) }));
    let toks = seqs.map((_, i) => i + 1);
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      if (sample) toks = (await model.decodeSample(seqs, toks, params)).map((t) => t.token);
      else await model.decode(seqs, toks);
    }
    return (B * steps) / ((performance.now() - t0) / 1000);
  };
  if (!both) return { plain: NaN, sampled: await runOnce(true) };
  await runOnce(true); // warm-up
  return {
    plain: Math.max(await runOnce(false), await runOnce(false)),
    sampled: Math.max(await runOnce(true), await runOnce(true)),
  };
}

/** CPU seconds of each thread of process pid (Linux /proc; empty elsewhere). */
function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  const tick = 100; // USER_HZ
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) / tick); // utime, stime
    }
  } catch {
    // not Linux, or the process is gone
  }
  return out;
}

/** Server CPU between two threadCpu() readings: its main (JS) thread and all other threads. */
function serverCpuDelta(pid: number, a: Map<number, number>, b: Map<number, number>): { main: number; others: number } {
  let main = 0,
    others = 0;
  for (const [tid, t] of b) {
    const d = t - (a.get(tid) ?? 0);
    if (tid === pid) main += d;
    else others += d;
  }
  return { main, others };
}

async function stepSecondsSum(url: string): Promise<number> {
  const m = await (await fetch(`${url}/metrics`)).text();
  return Number(/^simba_step_seconds_sum (\S+)/m.exec(m)?.[1] ?? NaN);
}

interface StreamStat {
  ttft: number;
  gaps: number[];
  tokens: number;
  promptTokens: number;
  /** usage.simba of a prompt pruned under load. */
  simba: { flops: number; pruned_tokens: number } | null;
  start: number;
  end: number;
}

async function stream(client: OpenAI, model: string, text: string, maxTokens: number): Promise<StreamStat> {
  const start = performance.now();
  const s = await client.completions.create({
    model,
    prompt: text,
    max_tokens: maxTokens,
    temperature: 0.8,
    top_p: 0.95,
    logit_bias: { 0: -100 },
    stream: true,
    stream_options: { include_usage: true },
  });
  let first = 0,
    last = 0,
    tokens = 0,
    promptTokens = 0;
  let simba: StreamStat['simba'] = null;
  const gaps: number[] = [];
  for await (const c of s) {
    const t = performance.now();
    if (c.choices.length && c.choices[0].text) {
      if (first === 0) first = t;
      else gaps.push(t - last);
      last = t;
    }
    if (c.usage) {
      tokens = c.usage.completion_tokens;
      promptTokens = c.usage.prompt_tokens;
      simba = (c.usage as { simba?: StreamStat['simba'] }).simba ?? null;
    }
  }
  return { ttft: first - start, gaps, tokens, promptTokens, simba, start, end: performance.now() };
}

async function main(): Promise<void> {
  const w = weights as 'f32' | 'bf16' | 'int8';
  const model = shape ? await randomModel(shape, { seed: 1, weights: w }) : await loadModel(modelDir, { weights: w });
  const steps = clientShape(scenarios[0], 0).tokens;
  const raw: Record<number, { plain: number; sampled: number }> = {};
  for (const c of noRaw ? [] : concurrency) {
    raw[c] = await rawDecode(model, c, steps);
    log(`raw decode B=${c}: ${raw[c].plain.toFixed(1)} tok/s plain, ${raw[c].sampled.toFixed(1)} tok/s with native sampling`);
  }
  // this machine's speed drifts (shared hosts): each served row is bracketed by a raw decode with
  // native sampling at B = C just before and just after it, and compared with their mean
  const rawSteps = Math.min(steps, 48);
  const sampledOnce = async (c: number) => (noRaw ? NaN : (await rawDecode(model, c, rawSteps, false)).sampled);

  const cli = path.resolve(arg('cli', path.join(ROOT, 'dist', 'lib', 'cli', 'main.js')));
  const serveArgs = [cli, 'serve', '--port', '0', '--max-running', String(Math.max(...concurrency)), '--model-name', 'bench'];
  serveArgs.push('--weights', weights);
  if (shape) serveArgs.push('--shape', shape);
  else serveArgs.push('--model', modelDir);
  if (tokenizerPath) serveArgs.push('--tokenizer', tokenizerPath);
  serveArgs.push(...serveExtra);
  const child = spawn(process.execPath, serveArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((res, rej) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on (\S+)[\s\S]*ready/.exec(err);
      if (m) res(m[1]);
    });
    child.on('exit', (code) => rej(new Error(`simba serve exited (${code}): ${err}`)));
  });
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'bench', maxRetries: 0, timeout: 600000 });
  await stream(client, 'bench', prompt(16, 0), 4); // warm-up
  const rows: Record<string, unknown>[] = [];
  for (const sc of scenarios) {
    for (const c of concurrency) {
      const before = await sampledOnce(c);
      const cpu0 = process.cpuUsage();
      const srv0 = threadCpu(child.pid!);
      const step0 = await stepSecondsSum(url);
      const t0 = performance.now();
      const stats = (
        await Promise.all(
          Array.from({ length: c }, async (_, i) => {
            const out: StreamStat[] = [];
            for (let r = 0; r < requests; r++) {
              const shape = clientShape(sc, i);
              // a prompt of its own per (scenario, concurrency, round, client): a row never hits the
              // prefix cache with an earlier row's prompts (until 2026-12-07 the seeds repeated across
              // rows, so later rows were partly cache hits, and pruned prompts, never cached, were not)
              const seed = 1 + i + 1000 * r + 100_000 * c + 10_000_000 * allScenarios.indexOf(sc);
              out.push(await stream(client, 'bench', prompt(shape.words, seed), shape.tokens));
            }
            return out;
          }),
        )
      ).flat();
      const wall = (performance.now() - t0) / 1000;
      const cpu1 = process.cpuUsage(cpu0);
      const srv = serverCpuDelta(child.pid!, srv0, threadCpu(child.pid!));
      const stepShare = ((await stepSecondsSum(url)) - step0) / wall;
      const after = await sampledOnce(c);
      const bracket = (before + after) / 2;
      const tokens = stats.reduce((a, s) => a + s.tokens, 0);
      const ttft = stats.map((s) => s.ttft),
        gaps = stats.flatMap((s) => s.gaps);
      const pruned = stats.filter((s) => s.simba !== null);
      const row = {
        scenario: sc.name,
        concurrency: c,
        streams: stats.length,
        tokens,
        seconds: wall,
        tokPerS: tokens / wall,
        prefillTokPerS: stats.reduce((a, s) => a + s.promptTokens, 0) / wall,
        prunedPrompts: pruned.length,
        prunedTokens: pruned.reduce((a, s) => a + s.simba!.pruned_tokens, 0),
        simbaBudgets: pruned.map((s) => s.simba!.flops),
        ttftP50: pct(ttft, 50),
        ttftP99: pct(ttft, 99),
        itlP50: pct(gaps, 50),
        itlP99: pct(gaps, 99),
        rawDecodeTokPerS: bracket,
        rawBefore: before,
        rawAfter: after,
        rawAtStartTokPerS: raw[c]?.plain ?? NaN,
        rawSampledTokPerS: raw[c]?.sampled ?? NaN,
        ratio: tokens / wall / bracket,
        lost: stats.filter((s, k) => s.tokens !== clientShape(sc, Math.floor(k / requests)).tokens).length,
        // where the 2 cores went, as a fraction of the wall time: the benchmark's clients (this
        // process), the server's JS thread, the server's other threads (engine, libuv, GC)
        clientCores: (cpu1.user + cpu1.system) / 1e6 / wall,
        serverJsCores: srv.main / wall,
        serverOtherCores: srv.others / wall,
        stepShare,
      };
      rows.push(row);
      const rawPart = noRaw
        ? ''
        : ` (${(100 * row.ratio).toFixed(0)}% of raw decode B=${c}: ${before.toFixed(1)} before, ${after.toFixed(1)} after)`;
      log(
        `${sc.name} C=${c}: ${row.tokPerS.toFixed(1)} tok/s${rawPart}, TTFT p50 ${row.ttftP50.toFixed(0)} ms p99 ${row.ttftP99.toFixed(0)} ms, ITL p50 ${row.itlP50.toFixed(1)} ms p99 ${row.itlP99.toFixed(1)} ms, prefilled ${row.prefillTokPerS.toFixed(0)} tok/s, pruned ${row.prunedPrompts} prompts (${row.prunedTokens} tokens; budgets ${row.simbaBudgets.join(' ')}), lost ${row.lost}; cores: clients ${row.clientCores.toFixed(2)}, server JS ${row.serverJsCores.toFixed(2)}, server engine+other ${row.serverOtherCores.toFixed(2)}; native steps ${(100 * row.stepShare).toFixed(0)}% of the wall`,
      );
    }
  }
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const sampling = Number(/^simba_sampling_seconds_total (\S+)/m.exec(metrics)?.[1] ?? NaN);
  const stepSum = Number(/^simba_step_seconds_sum (\S+)/m.exec(metrics)?.[1] ?? NaN);
  model.dispose();
  child.kill('SIGTERM');
  await new Promise((res) => child.on('exit', res));
  const result = {
    shape: shape || modelDir,
    tokenizer: tokenizerPath,
    requestsPerClient: requests,
    samplingShareOfSteps: sampling / stepSum,
    rows,
  };
  if (arg('json', '')) fs.writeFileSync(arg('json', ''), JSON.stringify(result, null, 2));
  // NaN: not measured (--no-raw): the cell stays empty
  const f = (x: unknown, d = 1) => (typeof x === 'number' ? (Number.isNaN(x) ? '' : x.toFixed(d)) : String(x));
  const percent = (x: unknown) => (typeof x === 'number' && !Number.isNaN(x) ? `${(100 * x).toFixed(0)}%` : '');
  const prunedCell = (r: Record<string, unknown>) => {
    const b = r.simbaBudgets as number[];
    return b.length === 0 ? '0' : `${b.length} (${(b.reduce((a, x) => a + x, 0) / b.length).toFixed(2)})`;
  };
  process.stdout.write(
    `simba serve load, ${result.shape}; native sampling ${(100 * result.samplingShareOfSteps).toFixed(2)}% of the server's step time\n\n`,
  );
  process.stdout.write(
    '| scenario | C | streams | tok/s | prefilled tok/s | raw sampled decode B=C tok/s (before+after)/2 | served / raw | TTFT p50 / p99 ms | ITL p50 / p99 ms | pruned prompts (mean budget) | lost | cores: clients / server JS / engine | in native steps |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n',
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.scenario} | ${r.concurrency} | ${r.streams} | ${f(r.tokPerS)} | ${f(r.prefillTokPerS, 0)} | ${f(r.rawDecodeTokPerS)} | ${percent(r.ratio)} | ${f(r.ttftP50, 0)} / ${f(r.ttftP99, 0)} | ${f(r.itlP50)} / ${f(r.itlP99)} | ${prunedCell(r)} | ${r.lost} | ${f(r.clientCores, 2)} / ${f(r.serverJsCores, 2)} / ${f(r.serverOtherCores, 2)} | ${f(100 * (r.stepShare as number), 0)}% |\n`,
    );
}

void main().catch((e: unknown) => {
  process.stderr.write(`serve_load: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
