/**
 * Native sampling cost against the decode step it follows (compiled to dist/bench/sampling.js):
 * mamba-130m shape (random weights, V = 50280), batches 1 and 32. For each sampling setting, the
 * sampler's own time per step (measured natively inside the step) and the whole decode+sample
 * step, min of N steps; the ratio is the target (<= 2%). Also the sampler alone on fresh random
 * logits (addon.sampleLogits), and, for scale, a plain decode step (logits copied to JS).
 *
 *   node dist/bench/sampling.js [--shape mamba-130m] [--steps 20] [--json]
 */
import { loadAddon } from '../bindings';
import { rngFromSeed, type SamplingParams } from '../lib/engine/lm';
import { randomModel } from '../lib/engine/load';
import { packSampling } from '../lib/engine/sampling';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const SETTINGS: Record<string, Omit<SamplingParams, 'rng'>> = {
  greedy: { temperature: 0 },
  'T=0.8 top-k 40 top-p 0.95': { temperature: 0.8, topK: 40, topP: 0.95 },
  'T=1 top-p 0.95': { temperature: 1, topP: 0.95 },
  'T=1 (full vocabulary)': { temperature: 1 },
  'T=0.8 min-p 0.05 + penalties + 5 logprobs': {
    temperature: 0.8,
    minP: 0.05,
    presencePenalty: 0.5,
    frequencyPenalty: 0.5,
    logprobs: 5,
  },
};

async function main(): Promise<void> {
  const shape = arg('shape', 'mamba-130m');
  const steps = Number(arg('steps', '20'));
  const model = await randomModel(shape, { seed: 1 });
  const V = model.config.vocabSize;
  const rows: { batch: number; setting: string; sampleMs: number; stepMs: number; share: number; aloneMs: number }[] = [];
  const plain: Record<number, number> = {};
  for (const B of [1, 32]) {
    const seqs = Array.from({ length: B }, () => model.newSequence());
    await model.prefill(
      seqs.map((sequence, i) => ({ sequence, tokens: [1 + i, 2, 3, 4, 5, 6, 7, 8] })),
      { logits: 'none' },
    );
    let best = Infinity;
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      await model.decode(
        seqs,
        seqs.map((_, i) => (s * 31 + i) % 50000),
      );
      best = Math.min(best, performance.now() - t0);
    }
    plain[B] = best;
    const lg = new Float32Array(B * V);
    for (let i = 0; i < lg.length; i++) lg[i] = Math.sin(i * 12.9898) * 8;
    for (const [name, base] of Object.entries(SETTINGS)) {
      const params = seqs.map((_, i) => ({ ...base, rng: rngFromSeed(i), history: [5, 6, 7, 5] }));
      let sampleMs = Infinity,
        stepMs = Infinity,
        aloneMs = Infinity;
      let toks = seqs.map((_, i) => i + 10);
      for (let s = 0; s < steps; s++) {
        const t0 = performance.now();
        const r = await model.step(seqs.map((sequence, i) => ({ sequence, tokens: [toks[i]], sample: [params[i]] })));
        stepMs = Math.min(stepMs, performance.now() - t0);
        sampleMs = Math.min(sampleMs, r.sampleMs);
        toks = r.samples.map((x) => x[0].token);
        const packed = packSampling(
          params.map((p, row) => ({ row, params: p })),
          V,
        );
        aloneMs = Math.min(aloneMs, loadAddon().sampleLogits(lg, V, packed).sampleMs);
      }
      rows.push({ batch: B, setting: name, sampleMs, stepMs, share: sampleMs / stepMs, aloneMs });
    }
  }
  model.dispose();
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify({ shape, steps, plainDecodeMs: plain, rows }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `native sampling, ${shape} (V=${V}), min of ${steps} steps; plain decode step: B=1 ${plain[1].toFixed(2)} ms, B=32 ${plain[32].toFixed(2)} ms\n\n`,
  );
  process.stdout.write(
    '| B | setting | sampling ms (in step) | step ms (decode+sample) | share | sampling ms (random logits) |\n| --- | --- | --- | --- | --- | --- |\n',
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.batch} | ${r.setting} | ${r.sampleMs.toFixed(3)} | ${r.stepMs.toFixed(2)} | ${(100 * r.share).toFixed(2)}% | ${r.aloneMs.toFixed(3)} |\n`,
    );
}

void main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`);
  process.exit(1);
});
