/**
 * The `simba` CLI, run as a child process (`node dist/lib/cli/main.js`; test/global-setup.js compiles
 * dist/ when it is stale), checked against the library API on the shipped brown-mamba-s.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { PassThrough } from 'stream';

import { progress } from '../lib/cli/args';
import { loadModel } from '../lib/engine/load';
import type { MambaModel } from '../lib/engine/model';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');
const MODEL = path.join(ROOT, 'models', 'brown-mamba-s');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `input` on its stdin (a pipe, closed after it: never a terminal). */
function simba(args: string[], input = ''): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, SIMBA_DEBUG: '' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input);
  });
}

/** A failed run: the exit code, one `simba: ...` line on stderr, no stack trace, nothing on stdout. */
function expectCleanError(r: Run, code: number, message: RegExp): void {
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr: expect.stringMatching(message) });
  expect(r.stderr).toMatch(/^simba: [^\n]+\n$/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
}

let model: MambaModel;
beforeAll(async () => {
  model = await loadModel(MODEL);
});
afterAll(() => model?.dispose());

function argmax(row: Float32Array): number {
  let b = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[b]) b = i;
  return b;
}

describe('simba logits', () => {
  const ids = [510, 2817, 753, 17, 3999, 0, 262];

  test('--json prints exactly the logits of model.logits() at all positions', async () => {
    const r = await simba(['logits', '--model', MODEL, '--ids', ids.join(','), '--positions', 'all', '--json']);
    expect(r.code).toBe(0);
    const got = JSON.parse(r.stdout) as { positions: number[]; logits: number[][]; kept?: number[] };
    const want = await model.logits(ids, 'all');
    expect(got.positions).toEqual(want.positions);
    expect(got.kept).toBeUndefined();
    expect(got.logits).toHaveLength(ids.length);
    let mismatches = 0;
    got.logits.forEach((row, i) => {
      expect(row).toHaveLength(model.config.vocabSize);
      row.forEach((x, j) => {
        if (x !== want.logits[i][j] || Math.fround(x) !== x) mismatches++;
      });
    });
    expect(mismatches).toBe(0);
  });

  test('--json with Simba flags matches the API and reports kept tokens per layer', async () => {
    const r = await simba([
      'logits',
      '--ids',
      ids.join(','),
      '--positions',
      '0,3,6',
      '--keep-counts',
      '5,4,3,2,1',
      '--criterion',
      'local',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const got = JSON.parse(r.stdout) as { positions: number[]; logits: number[][]; kept: number[] };
    const want = await model.logits(ids, [0, 3, 6], { simba: { keepCounts: [5, 4, 3, 2, 1], criterion: 'local' } });
    expect(got.positions).toEqual([0, 3, 6]);
    expect(got.kept).toEqual(want.processed);
    expect(got.kept).toEqual([7, 5, 4, 3, 2, 1]);
    got.logits.forEach((row, i) => expect(row).toEqual(Array.from(want.logits[i])));
  });

  test('the default is the last position; the human summary names top tokens', async () => {
    const j = JSON.parse((await simba(['logits', '--ids', ids.join(','), '--json'])).stdout);
    expect(j.positions).toEqual([ids.length - 1]);
    const h = await simba(['logits', '--prompt', 'The jury said']);
    expect(h.code).toBe(0);
    const n = model.tokenizer!.encode('The jury said').length;
    expect(h.stdout).toMatch(new RegExp(`^${n} tokens; logits at 1 position`));
    expect(h.stdout).toMatch(new RegExp(`\\npos ${n - 1} " said" -> (".*" -?\\d+\\.\\d{3} \\(p 0\\.\\d{3}\\)(, |\\n)){5}$`));
  });
});

describe('simba generate', () => {
  const prompt = 'The jury said';

  test('is deterministic for a seed, and the seed matters', async () => {
    const args = ['generate', '--model', MODEL, '--prompt', prompt, '--max-tokens', '20'];
    const [a, b, c] = await Promise.all([
      simba([...args, '--seed', '7']),
      simba([...args, '--seed', '7']),
      simba([...args, '--seed', '8']),
    ]);
    expect(a.code).toBe(0);
    expect(a.stderr).toBe('');
    expect(a.stdout.length).toBeGreaterThan(0);
    expect(b.stdout).toBe(a.stdout);
    expect(c.stdout).not.toBe(a.stdout);
  });

  test('--temperature 0 prints the greedy (argmax) continuation computed through the API', async () => {
    const n = 24;
    const r = await simba(['generate', '--prompt', prompt, '--max-tokens', String(n), '--temperature', '0']);
    expect(r.code).toBe(0);
    const tok = model.tokenizer!;
    const seq = model.newSequence();
    let [
      {
        logits: [logits],
      },
    ] = await model.prefill([{ sequence: seq, tokens: tok.encode(prompt) }]);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const next = argmax(logits);
      if (next === tok.eosTokenId) break;
      out.push(next);
      [logits] = await model.decode([seq], [next]);
    }
    expect(out.length).toBeGreaterThan(0);
    expect(r.stdout).toBe(tok.decode(out) + '\n'); // always ends with a newline, also into a pipe
  });

  test('--stop cuts the text before the stop string', async () => {
    const full = (await simba(['generate', '--prompt', prompt, '--max-tokens', '24', '--temperature', '0'])).stdout;
    const word = full.trim().split(/\s+/)[1];
    expect(word).toBeTruthy();
    const cut = await simba(['generate', '--prompt', prompt, '--max-tokens', '24', '--temperature', '0', '--stop', word]);
    expect(cut.stdout).toBe(full.slice(0, full.indexOf(word)) + '\n');
  });

  test('the prompt comes from --prompt-file or stdin when --prompt is absent (one final newline dropped)', async () => {
    const args = ['generate', '--max-tokens', '12', '--temperature', '0'];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-cli-'));
    try {
      const file = path.join(dir, 'prompt.txt');
      fs.writeFileSync(file, prompt + '\n');
      const [direct, fromFile, fromStdin] = await Promise.all([
        simba([...args, '--prompt', prompt]),
        simba([...args, '--prompt-file', file]),
        simba(args, prompt + '\n'),
      ]);
      expect(direct.code).toBe(0);
      expect(direct.stdout.length).toBeGreaterThan(1);
      expect(fromFile).toEqual(direct);
      expect(fromStdin).toEqual(direct);
      fs.writeFileSync(file, '');
      expectCleanError(await simba([...args, '--prompt-file', file]), 2, /the prompt file '.*prompt\.txt' is empty/);
      expectCleanError(
        await simba([...args, '--prompt-file', path.join(dir, 'none.txt')]),
        1,
        /cannot read prompt file .*: no such file/,
      );
      expectCleanError(
        await simba([...args, '--prompt', 'a', '--prompt-file', file]),
        2,
        /give --prompt or --prompt-file, not both/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an empty stdin without --prompt is a clear error (exit 2)', async () => {
    expectCleanError(await simba(['generate', '--max-tokens', '3']), 2, /the prompt read from stdin is empty/);
  });
});

describe('simba --version', () => {
  test('prints the version of package.json', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await simba([flag]);
      expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
    }
  });
});

describe('progress bar', () => {
  /** A fake terminal: collects what the bar writes. */
  function fakeTty(): NodeJS.WriteStream & { text: () => string } {
    const chunks: string[] = [];
    const s = new PassThrough() as unknown as NodeJS.WriteStream & { text: () => string };
    Object.assign(s, { isTTY: true, columns: 80, rows: 24, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
    s.on('data', (c: Buffer) => chunks.push(c.toString()));
    s.text = () => chunks.join('');
    return s;
  }

  test('Ctrl-C while a bar runs shows the cursor again and exits 130', async () => {
    const tty = fakeTty(),
      exits: number[] = [];
    const before = process.listenerCount('SIGINT');
    const bar = progress('loading', tty, (code) => exits.push(code));
    bar.update(1, 10, 'x');
    expect(process.listenerCount('SIGINT')).toBe(before + 1);
    process.emit('SIGINT');
    await new Promise((r) => setImmediate(r));
    expect(exits).toEqual([130]);
    const text = tty.text();
    expect(text).toContain('\x1b[?25l'); // hidden while running
    expect(text.lastIndexOf('\x1b[?25h')).toBeGreaterThan(text.lastIndexOf('\x1b[?25l')); // shown at the end
    expect(process.listenerCount('SIGINT')).toBe(before);
  });

  test('a bar that stops normally leaves no SIGINT handler behind; no terminal, no bar', () => {
    const before = process.listenerCount('SIGINT');
    const bar = progress('x', fakeTty(), () => {
      throw new Error('must not exit');
    });
    bar.update(1, 2);
    bar.stop();
    expect(process.listenerCount('SIGINT')).toBe(before);
    const pipe = fakeTty();
    Object.assign(pipe, { isTTY: false });
    progress('x', pipe).update(1, 2);
    expect(pipe.text()).toBe('');
    expect(process.listenerCount('SIGINT')).toBe(before);
  });
});

describe('simba info', () => {
  test('--json reports config, size, FLOPs, state and engine', async () => {
    const r = await simba(['info', '--model', MODEL, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const info = model.info();
    expect(j.config).toEqual(info.config);
    expect(j.paramCount).toBe(1224064);
    expect(j.flopsPerToken).toBe(info.flopsPerToken);
    expect(j.flopsPerToken).toBe(6 * j.layerFlops + j.headFlops);
    expect(j.weightBytes).toBe(info.weightBytes);
    expect(j.stateBytes).toBe(4 * 6 * 256 * (16 + 3));
    expect(j).toMatchObject({ weights: 'f32', device: 'cpu', isa: info.isa, threads: info.threads });
    expect(j.tokenizer).toMatchObject({ vocabSize: 4096, eosTokenId: 0 });
  });

  test('--weights bf16 halves the weight bytes; human output names the parts', async () => {
    const [b, h] = await Promise.all([simba(['info', '--weights', 'bf16', '--json']), simba(['info'])]);
    expect(JSON.parse(b.stdout).weightBytes).toBeLessThan(model.info().weightBytes * 0.6);
    expect(h.stdout).toMatch(/parameters\s+1,224,064/);
    expect(h.stdout).toMatch(/engine\s+cpu, \w+, \d+ threads/);
  });
});

describe('simba bench', () => {
  test('--json with tiny settings has the documented structure and positive numbers', async () => {
    const r = await simba([
      'bench',
      '--model',
      MODEL,
      '--json',
      '--lengths',
      '16',
      '--batches',
      '1,2',
      '--runs',
      '1',
      '--decode-tokens',
      '2',
      '--flops',
      '0.25,0.8',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(''); // no progress bar off a terminal
    const j = JSON.parse(r.stdout);
    expect(j.machine).toMatchObject({
      cpu: expect.any(String),
      cores: expect.any(Number),
      isa: model.info().isa,
      threads: model.info().threads,
      node: process.version,
    });
    expect(Date.parse(j.machine.date)).not.toBeNaN();
    expect(j.settings).toMatchObject({ runs: 1, lengths: [16], batches: [1, 2], decodeTokens: 2, flops: [0.25, 0.8] });
    const positive = (s: { median: number; min: number; max: number; samples: number[] }) => {
      expect(s.samples).toHaveLength(1);
      expect(s.median).toBeGreaterThan(0);
      expect(s.min).toBeLessThanOrEqual(s.median);
      expect(s.max).toBeGreaterThanOrEqual(s.median);
    };
    expect(j.prefill).toHaveLength(1);
    expect(j.prefill[0].length).toBe(16);
    positive(j.prefill[0].tokensPerSec);
    expect(j.decode.map((d: { batch: number }) => d.batch)).toEqual([1, 2]);
    j.decode.forEach((d: { steps: number; tokensPerSec: never }) => {
      expect(d.steps).toBe(2);
      positive(d.tokensPerSec);
    });
    expect(j.simba).toHaveLength(2);
    const [low, high] = j.simba;
    expect(low).toMatchObject({ length: 16, budget: 0.25, schedule: 'steep' });
    expect(high).toMatchObject({ length: 16, budget: 0.8, schedule: 'trapezoid' });
    for (const s of j.simba) {
      positive(s.tokensPerSec);
      expect(Math.abs(s.relFlops - s.budget)).toBeLessThan(0.05);
      expect(s.theoreticalSpeedup).toBeCloseTo(1 / s.relFlops, 12);
      expect(s.speedup).toBeCloseTo(s.tokensPerSec.median / j.prefill[0].tokensPerSec.median, 12);
      expect(s.processed[0]).toBe(16);
    }
  });

  test('--limits --json: decode B=1 is held to the read bandwidth over a buffer of the weights size', async () => {
    const r = await simba([
      'bench',
      '--json',
      '--limits',
      '--lengths',
      '8',
      '--batches',
      '1',
      '--runs',
      '1',
      '--decode-tokens',
      '1',
    ]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const w = j.model.weightBytes;
    // the buffer: the weights' bytes rounded down to 4 KiB per thread
    expect(j.readAtWeights.bufferBytes).toBeLessThanOrEqual(Math.max(w, 4096 * j.limits.threads));
    expect(j.readAtWeights.bufferBytes).toBeGreaterThan(w - 4096 * j.limits.threads);
    expect(j.limits.bufferBytes).toBe(256 * 2 ** 20);
    const dec = j.bounds.find((b: { label: string }) => b.label === 'decode B=1');
    // a step reads the weights and reads and writes the one sequence's state
    const byRead = (j.readAtWeights.readGBsAll * 1e9) / (w + 2 * j.model.stateBytes);
    expect(j.model.stateBytes).toBeGreaterThan(0);
    if (dec.boundBy === 'read at weight size') expect(dec.bound).toBeCloseTo(byRead, 6);
    else expect(dec.bound).toBeLessThan(byRead);
    expect(dec.fraction).toBeCloseTo(j.decode[0].tokensPerSec.median / dec.bound, 9);
  });

  test('human mode prints tables', async () => {
    const r = await simba(['bench', '--lengths', '8', '--batches', '1', '--runs', '1', '--decode-tokens', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/prefill\s+tokens\/s/);
    expect(r.stdout).toMatch(/B=1 x 1/);
  });
});

describe('simba eval and inspect', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-cli-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('eval ppl --json reports the windows and a perplexity', async () => {
    const text = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'brown-heldout-slice.txt'), 'utf8').slice(0, 2000);
    const file = path.join(dir, 'small.txt');
    fs.writeFileSync(file, text);
    const n = model.tokenizer!.encode(text).length;
    const r = await simba(['eval', 'ppl', '--file', file, '--ctx', '128', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const windows = Math.floor(n / 128) + (n % 128 >= 2 ? 1 : 0);
    expect(j).toMatchObject({
      tokens: n,
      ctx: 128,
      windows,
      scored: n - windows - (n % 128 === 1 ? 1 : 0),
      relFlops: 1,
      simba: null,
    });
    expect(j.ppl).toBeCloseTo(Math.exp(j.meanNll), 10);
    expect(j.ppl).toBeGreaterThan(10);
    expect(j.ppl).toBeLessThan(1000);
    const s = JSON.parse((await simba(['eval', 'ppl', '--file', file, '--ctx', '128', '--flops', '0.7', '--json'])).stdout);
    expect(s.simba).toEqual({ flops: 0.7 });
    expect(s.relFlops).toBeGreaterThan(0.6);
    expect(s.relFlops).toBeLessThan(0.8);
    expect(s.flopsPerToken).toBeLessThan(j.flopsPerToken);
  });

  test('eval choice names the line of a malformed task', async () => {
    const file = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(file, '{"context":"A","choices":[" b"," c"],"label":1}\n\n{"context":"A","choices":[" b"],"label":0}\n');
    expectCleanError(
      await simba(['eval', 'choice', '--file', file]),
      1,
      /bad\.jsonl line 3: "choices" must be an array of at least 2 strings/,
    );
    fs.writeFileSync(file, '{"context":"A","choices":[" b"," c"],"label":2}\n');
    expectCleanError(await simba(['eval', 'choice', '--file', file]), 1, /line 1: "label" must be an integer in \[0, 1\]/);
  });

  test('inspect writes an SVG and prints kept tokens per layer', async () => {
    const svg = path.join(dir, 'map.svg');
    const r = await simba([
      'inspect',
      '--prompt',
      'The jury said it did not find any evidence.',
      '--keep-last',
      '0.2',
      '--svg',
      svg,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/layer {2}0 {2}#+\s+\d+ \/ \d+/);
    const doc = fs.readFileSync(svg, 'utf8');
    expect(doc.startsWith('<svg ')).toBe(true);
    expect(doc.trimEnd().endsWith('</svg>')).toBe(true);
  });
});

describe('bad input: a one-line message, an exit code, no stack trace', () => {
  test('a missing model folder (runtime error, exit 1)', async () => {
    expectCleanError(
      await simba(['generate', '--model', '/no/such/model', '--prompt', 'Hi']),
      1,
      /model folder '\/no\/such\/model' does not exist/,
    );
  });

  test('a token id outside the vocabulary (exit 2)', async () => {
    expectCleanError(
      await simba(['logits', '--ids', '1,99999', '--json']),
      2,
      /token id 99999 \(index 1\) is outside the vocabulary \[0, 4096\)/,
    );
  });

  test('a negative --max-tokens (exit 2)', async () => {
    expectCleanError(await simba(['generate', '--prompt', 'Hi', '--max-tokens', '-1']), 2, /--max-tokens.*'-1' is invalid/);
  });

  test('an empty prompt (exit 2)', async () => {
    expectCleanError(await simba(['generate', '--prompt', '']), 2, /--prompt must not be empty/);
  });

  test('bad numbers, unknown flags and conflicting Simba flags (exit 2)', async () => {
    const cases: [string[], RegExp][] = [
      [['logits', '--ids', '1,x'], /'x': expected an integer >= 0/],
      [['generate', '--prompt', 'Hi', '--temperature', 'hot'], /--temperature.*'hot' is invalid/],
      [['generate', '--prompt', 'Hi', '--flops', '0.5', '--keep-last', '0.1'], /only one of --flops, --keep-last, --keep-counts/],
      [['generate', '--prompt', 'Hi', '--criterion', 'norm'], /need one of --flops/],
      [['generate', '--prompt', 'Hi there friend', '--keep-counts', '2,1'], /--keep-counts needs 5 or 6 entries/],
      [['info', '--bogus'], /unknown option '--bogus'/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['eval', 'ppl', '--file', 'test/fixtures/brown-heldout-slice.txt', '--ctx', '1'], /--ctx.*'1' is invalid/],
    ];
    const runs = await Promise.all(cases.map(([args]) => simba(args)));
    runs.forEach((r, i) => expectCleanError(r, 2, cases[i][1]));
  });

  test('a missing input file (exit 1)', async () => {
    expectCleanError(
      await simba(['eval', 'ppl', '--file', '/no/such/file.txt']),
      1,
      /cannot read text file '\/no\/such\/file.txt': no such file/,
    );
  });

  test('--help works for every command', async () => {
    const cmds = [['generate'], ['logits'], ['info'], ['bench'], ['eval'], ['eval', 'ppl'], ['eval', 'choice'], ['inspect']];
    const runs = await Promise.all(cmds.map((c) => simba([...c, '--help'])));
    runs.forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: simba ${cmds[i].join(' ')} `));
    });
  });
});

describe('README', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = (lang: string) => {
    const m = new RegExp('## (API|CLI)\\n\\n```' + lang + '\\n([\\s\\S]*?)```').exec(readme);
    if (!m) throw new Error(`no ${lang} block in README.md`);
    return m[2];
  };

  test('the API example type-checks and runs on the shipped model, printing what its comments say', async () => {
    const ts = await import('typescript');
    const src = block('ts');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-readme-'));
    try {
      // type-check it against lib/ (as the package 'simba-ssm')
      const file = path.join(dir, 'example.ts');
      fs.writeFileSync(file, src);
      const program = ts.createProgram([file], {
        noEmit: true,
        strict: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ES2022,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        skipLibCheck: true,
        baseUrl: ROOT,
        paths: { 'simba-ssm': ['lib/index.ts'] },
      });
      const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      expect(diags).toEqual([]);
      // run it (CommonJS, the body in an async function, against dist/)
      const js = ts
        .transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } })
        .outputText.replace(/require\("simba-ssm"\)/, `require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'index.js'))})`);
      const run = path.join(dir, 'example.js');
      fs.writeFileSync(run, `(async () => {\n${js}\n})().catch((e) => { console.error(e); process.exit(1); });\n`);
      const r = await new Promise<Run>((resolve) =>
        execFile(process.execPath, [run], { cwd: dir }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        ),
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('19 4096');
      expect(r.stdout).toContain('[ 19, 17, 15, 13, 11, 10 ] 0.7456');
      expect(r.stdout).toContain('E_ABORTED 20');
      expect(r.stdout).toContain("generate: unknown option 'maxToken' (did you mean 'maxTokens'?)");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every CLI example that needs no extra file runs (exit 0, output on stdout)', async () => {
    const lines = block('sh')
      .split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').trim())
      .filter((l) => l.includes('npx simba'));
    expect(lines.length).toBeGreaterThan(8);
    // bench on a 130m-parameter shape takes minutes; eval needs the user's text or task file
    const runnable = lines.filter((l) => !/ simba (bench|eval) /.test(l));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-readme-'));
    try {
      for (const line of runnable) {
        const cmd = line.replace(/npx simba/g, `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)}`);
        const r = await new Promise<Run>((resolve) =>
          execFile('bash', ['-c', cmd], { cwd: dir }, (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
          ),
        );
        expect({ line, code: r.code, stderr: r.stderr }).toEqual({ line, code: 0, stderr: '' });
        expect(r.stdout.length).toBeGreaterThan(0);
      }
      expect(fs.readFileSync(path.join(dir, 'map.svg'), 'utf8')).toMatch(/^<svg /);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
