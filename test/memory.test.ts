/**
 * Memory planning: a model's host bytes are computed from its config before anything is allocated;
 * a model that cannot fit is an E_OOM naming both sizes (never the kernel's OOM killer), and
 * `simba info --shape` reports a shape's figures without building its weights.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { loadAddon } from '../bindings';
import { SHAPES, loadModel, randomModel, shapeInfo } from '../lib/engine/load';
import { availableMemory, checkMemory, formatBytes, memoryNeed } from '../lib/engine/memory';
import type { MambaConfig, WeightFormat } from '../lib/types';
import { randomConfig } from './reference/random_model';
import { rejection, tmpDir } from './helpers/util';
import { SANITIZED } from './helpers/sanitized';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');
const SHIPPED = path.join(ROOT, 'models', 'brown-mamba-s');

// dModel 1e6 and dInner 2e6: in_proj alone is 8e12 floats (the process grew to 21.7 GB and was killed).
const HUGE = randomConfig({ vocabSize: 4096, dModel: 1e6, nLayer: 2, dInner: 2e6 });

describe('memory planning', () => {
  test('a model that cannot fit is E_OOM at once, naming what it needs and what is available; nothing is allocated', async () => {
    const before = loadAddon().memoryStats!();
    const t0 = performance.now();
    const e = await rejection(randomModel(HUGE));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe('E_OOM');
    const need = memoryNeed(HUGE, 'f32');
    expect(need.weights).toBeGreaterThan(4.8e13); // in_proj and out_proj of both layers, 4 bytes a weight
    expect(e.message).toContain(
      `randomModel: this shape with f32 weights needs ${formatBytes(need.total)} of memory (weights ${formatBytes(need.weights)},`,
    );
    expect(e.message).toMatch(/but only \d+\.\d+ [GMT]B is available \((MemAvailable|free) \d/);
    expect(loadAddon().memoryStats!()).toEqual(before);
  });

  test('loadModel checks the checkpoint config before reading any tensor', async () => {
    const dir = tmpDir();
    for (const f of fs.readdirSync(SHIPPED)) fs.copyFileSync(path.join(SHIPPED, f), path.join(dir, f));
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ ...cfg, hidden_size: 1e6, intermediate_size: 2e6, time_step_rank: 62500 }),
    );
    const e = await rejection(loadModel(dir, { tokenizer: false }));
    expect(e.code).toBe('E_OOM');
    expect(e.message).toMatch(/^loadModel: '.*' with f32 weights needs \d+\.\d TB of memory .* is available/);
  });

  test('checkMemory compares with what is available, and the message names both', () => {
    const need = memoryNeed(randomConfig(), 'f32');
    expect(() => checkMemory('x', need, 'it', { bytes: need.total, detail: 'test' })).not.toThrow();
    expect(() => checkMemory('x', need, 'it', { bytes: need.total - 1, detail: 'MemAvailable test' })).toThrow(
      new RegExp(
        `^x: it needs ${(need.total / 1e3).toFixed(1)} kB of memory .* but only ${((need.total - 1) / 1e3).toFixed(1)} kB is available \\(MemAvailable test\\)`,
      ),
    );
    const avail = availableMemory();
    expect(avail.bytes).toBeGreaterThan(0);
    expect(avail.bytes).toBeLessThanOrEqual(os.totalmem());
  });

  const cases: [string, MambaConfig, WeightFormat][] = [
    ['small f32', randomConfig({ dModel: 40, vocabSize: 100 }), 'f32'],
    ['small bf16, odd sizes', randomConfig({ dModel: 33, dInner: 70, vocabSize: 101, dtRank: 3 }), 'bf16'],
    [
      'small int8, untied head, biases',
      randomConfig({ dModel: 24, vocabSize: 77, tieEmbeddings: false, projBias: true }),
      'int8',
    ],
    ['mamba-130m int8', SHAPES['mamba-130m'], 'int8'],
  ];
  test.each(cases)('the planned weight bytes are what the engine holds once loaded (%s)', async (_, cfg, weights) => {
    const m = await randomModel(cfg, { weights });
    try {
      const info = m.info();
      expect(memoryNeed(cfg, weights).weights).toBe(info.weightBytes);
      expect(memoryNeed(cfg, weights).state).toBe(info.stateBytes);
      // shapeInfo: the same figures without the weights
      expect(shapeInfo(cfg, { weights })).toEqual({ ...info, source: 'random' });
    } finally {
      m.dispose();
    }
  });
});

/** Runs the CLI; resolves with its exit code, stdout and its peak RSS (read by a preloaded exit hook). */
function simbaWithRss(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string; maxRssBytes: number; ms: number }> {
  const dir = tmpDir();
  const hook = path.join(dir, 'rss.js'),
    report = path.join(dir, 'rss.txt');
  fs.writeFileSync(
    hook,
    // VmHWM: this process's own peak. getrusage's maxRSS also keeps the peak from before exec, that
    // is the forking jest worker's RSS (448 MB once in CI, where the CLI itself peaks at ~80 MB).
    `process.on('exit', () => { const fs = require('fs'); const m = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8')); fs.writeFileSync(${JSON.stringify(report)}, String(m ? Number(m[1]) * 1024 : NaN)); });`,
  );
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--require', hook, CLI, ...args],
      { cwd: ROOT, maxBuffer: 16 << 20, env: { ...process.env, SIMBA_DEBUG: '' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        const rss = fs.existsSync(report) ? Number(fs.readFileSync(report, 'utf8')) : NaN;
        resolve({ code, stdout, stderr, maxRssBytes: rss, ms: performance.now() - t0 });
      },
    );
  });
}

describe('simba info --shape', () => {
  test('mamba-2.8b: the figures from its config, fast and without building 11 GB of weights', async () => {
    const r = await simbaWithRss(['info', '--shape', 'mamba-2.8b', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    const cfg = SHAPES['mamba-2.8b'];
    const params = loadAddon()
      .tensorTable(cfg)
      .filter((t) => t.required)
      .reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    expect(j).toMatchObject({
      config: cfg,
      paramCount: params,
      weights: 'f32',
      weightBytes: memoryNeed(cfg, 'f32').weights,
      stateBytes: cfg.nLayer * cfg.dInner * (cfg.dConv - 1 + cfg.dState) * 4,
      source: 'random mamba-2.8b',
    });
    expect(j.weightBytes).toBeGreaterThan(11e9);
    // 11 GB of weights would show; ASan's shadow memory alone is ~800 MB, so under the sanitizers
    // the bound is the weights' size
    expect(r.maxRssBytes).toBeLessThan(SANITIZED ? 4e9 : 400e6);
    expect(r.ms).toBeLessThan(15000);
  });

  test('mamba-130m: the same text as the info of its random model', async () => {
    const [r, b] = await Promise.all([
      simbaWithRss(['info', '--shape', 'mamba-130m', '--weights', 'int8']),
      simbaWithRss(['info', '--shape', 'mamba-130m', '--weights', 'bf16', '--json']),
    ]);
    expect(r.code).toBe(0);
    const m = await randomModel('mamba-130m', { weights: 'int8' });
    try {
      const info = m.info();
      expect(r.stdout).toContain(`parameters  ${info.paramCount.toLocaleString('en-US')}\n`);
      expect(r.stdout).toContain(`weights     int8, ${(info.weightBytes / 1e6).toFixed(2)} MB\n`);
      expect(r.stdout).toContain(`state       ${(info.stateBytes / 1e6).toFixed(2)} MB per sequence`);
      expect(r.stdout).toContain(`engine      cpu, ${info.isa}, ${info.threads} threads\n`);
    } finally {
      m.dispose();
    }
    expect(JSON.parse(b.stdout)).toMatchObject({
      weights: 'bf16',
      weightBytes: memoryNeed(SHAPES['mamba-130m'], 'bf16').weights,
    });
  });
});
