/**
 * Bad input at the API level: every case is a SimbaError with a code and a message naming the
 * problem; nothing crashes the process or hangs.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadModel, randomModel } from '../lib/engine/load';
import { generate } from '../lib/generate/generate';
import type { MambaModel } from '../lib/engine/model';
import { SimbaError } from '../lib/errors';
import { randomConfig, randomEngineTensors } from './reference/random_model';
import { copyShipped, writeCheckpoint } from './helpers/util';
import { repeats } from './helpers/sanitized';
import { loadAddon } from '../bindings';

/** Live native models and weight bytes (the addon's leak counters). */
function addonStats(): { models: number; alignedBytes: number } {
  return loadAddon().memoryStats!();
}

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');

async function rejects(p: Promise<unknown> | (() => unknown), code: string, msg: RegExp): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SimbaError);
  expect((err as SimbaError).code).toBe(code);
  expect((err as SimbaError).message).toMatch(msg);
}

describe('loading', () => {
  test('missing folder', async () => {
    await rejects(loadModel('/nonexistent/model'), 'E_IO', /does not exist/);
  });

  test('truncated safetensors', async () => {
    const dir = copyShipped();
    const f = path.join(dir, 'model.safetensors');
    fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2));
    await rejects(loadModel(dir), 'E_SAFETENSORS', /model\.safetensors.*(outside|past|end)/i);
  });

  test('garbled header', async () => {
    const dir = copyShipped();
    const f = path.join(dir, 'model.safetensors');
    const b = fs.readFileSync(f);
    b.write('{{{{garbage', 8);
    fs.writeFileSync(f, b);
    await rejects(loadModel(dir), 'E_SAFETENSORS', /JSON/i);
  });

  test('config inconsistent with the tensor shapes', async () => {
    const dir = copyShipped();
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.state_size = 8;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await rejects(loadModel(dir), 'E_SHAPE', /A_log/);
  });

  test('unknown config key is an error unless allowed', async () => {
    const dir = copyShipped();
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.flux_capacitor = 3;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await rejects(loadModel(dir), 'E_CONFIG', /flux_capacitor/);
    const warnings: string[] = [];
    const m = await loadModel(dir, { config: { allowUnknownKeys: true, onWarning: (w) => warnings.push(w) } });
    m.dispose();
    expect(warnings.join()).toMatch(/flux_capacitor/);
  });

  test("NaN in weights: rejected by default, loaded with nonFinite: 'allow' (and then NaN logits)", async () => {
    const cfg = randomConfig({ vocabSize: 50 });
    const tensors = randomEngineTensors(cfg, 1);
    tensors.find((t) => t.name === 'out_proj' && t.layer === 1)!.data[7] = NaN;
    const dir = writeCheckpoint(cfg, tensors);
    await rejects(loadModel(dir), 'E_WEIGHTS', /layers\.1\.mixer\.out_proj\.weight.*index 7/);
    const m = await loadModel(dir, { nonFinite: 'allow' });
    const { logits } = await m.logits([1, 2, 3]);
    expect(Number.isNaN(logits[0][0])).toBe(true);
    m.dispose();
  });

  // The embedding [5000, 64] is 78 chunks of 4096 values and a tail: the chunks are checked on the
  // thread pool, and the first bad value is reported wherever the later ones are.
  test('NaN / Inf in a large tensor: the first one is named, in a parallel chunk or in the tail', async () => {
    const cfg = randomConfig({ vocabSize: 5000, dModel: 64 });
    const tensors = randomEngineTensors(cfg, 2);
    const embed = tensors.find((t) => t.name === 'embedding')!.data;
    embed[300001] = NaN;
    embed[150003] = Infinity;
    await rejects(
      loadModel(writeCheckpoint(cfg, tensors)),
      'E_WEIGHTS',
      /embeddings\.weight' has a non-finite value Infinity at flat index 150003 \(index \[2343, 51\]\)/,
    );
    embed[300001] = embed[150003] = 0.5;
    embed[319999] = -Infinity; // past the last full chunk
    await rejects(loadModel(writeCheckpoint(cfg, tensors)), 'E_WEIGHTS', /-Infinity at flat index 319999/);
  });

  test('onProgress sees every tensor once, in order, before loadModel resolves; its error fails the load', async () => {
    const before = addonStats();
    const seen: { done: number; total: number; tensor: string }[] = [];
    const m = await loadModel(SHIPPED, { onProgress: (p) => seen.push(p) });
    const total = seen[0].total;
    expect(total).toBe(2 + 10 * m.config.nLayer); // embedding, norm_f (the head is tied), 10 per layer
    expect(seen.map((p) => p.done)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(seen.every((p) => p.total === total)).toBe(true);
    expect(seen[0].tensor).toBe('embedding');
    expect(seen[1].tensor).toBe('layers.0.norm');
    m.dispose();
    const after: number[] = [];
    await expect(
      loadModel(SHIPPED, {
        onProgress: (p) => {
          after.push(p.done);
          if (p.done === 3) throw new Error('progress bar broke');
        },
      }),
    ).rejects.toThrow('progress bar broke');
    expect(after).toEqual([1, 2, 3]); // no calls after the one that threw
    expect(addonStats()).toEqual(before); // the half-loaded engine was disposed
  });

  test('a broken tokenizer.json fails the load (the weights upload running meanwhile is disposed)', async () => {
    const dir = copyShipped();
    const before = addonStats();
    const tok = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    tok.model.type = 'WordPiece';
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
    await rejects(loadModel(dir), 'E_TOKENIZER', /model type "WordPiece" is not supported/);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    await rejects(loadModel(dir), 'E_TOKENIZER', /tokenizer\.json is not valid JSON/);
    expect(addonStats()).toEqual(before);
    const m = await loadModel(dir, { tokenizer: false }); // the weights themselves are fine
    expect(m.tokenizer).toBeNull();
    m.dispose();
  });

  test('bad options', async () => {
    await rejects(loadModel(SHIPPED, { weights: 'f8' as 'f32' }), 'E_ARG', /weights must be one of 'f32', 'bf16', 'int8'/);
    await rejects(loadModel(SHIPPED, { device: 'tpu' as 'cpu' }), 'E_ARG', /device must be/);
    await rejects(randomModel('mamba-7b'), 'E_ARG', /unknown shape 'mamba-7b'/);
  });
});

describe('calls', () => {
  let m: MambaModel;
  beforeAll(async () => {
    m = await loadModel(SHIPPED);
  });
  afterAll(() => m.dispose());

  test.each([[-1], [4096], [1.5], [NaN], [1e12]])('token id %p out of range', async (bad) => {
    await rejects(m.logits([1, bad, 3]), 'E_TOKEN', /token id .* at index 1 is outside the vocabulary \[0, 4096\)/);
    const s = m.newSequence();
    await rejects(m.decode([s], [bad]), 'E_TOKEN', /outside the vocabulary/);
  });

  test('empty prompts', async () => {
    await rejects(m.logits([]), 'E_ARG', /empty prompt/);
    await rejects(generate(m, '').next(), 'E_ARG', /empty prompt/);
    await rejects(m.prefill([]), 'E_ARG', /at least one input/);
  });

  test.each([[-1], [1.5], [1e9], [NaN]])('maxTokens %p is refused', async (bad) => {
    await rejects(generate(m, 'The', { maxTokens: bad }).next(), 'E_ARG', /maxTokens must be an integer in \[0, 1000000\]/);
  });

  test('other sampling options are validated', async () => {
    await rejects(generate(m, 'The', { temperature: -1 }).next(), 'E_ARG', /temperature/);
    await rejects(generate(m, 'The', { topP: 0 }).next(), 'E_ARG', /topP/);
    await rejects(generate(m, 'The', { stop: [''] }).next(), 'E_ARG', /stop must be/);
  });

  test('logit positions out of range', async () => {
    await rejects(m.logits([1, 2, 3], [3]), 'E_ARG', /position 3 is outside the 3 tokens/);
  });

  test('concurrent calls on one sequence are refused; on different sequences they run', async () => {
    const s = m.newSequence();
    const first = m.prefill([{ sequence: s, tokens: [1, 2, 3, 4] }]);
    await rejects(m.decode([s], [5]), 'E_BUSY', /already in use/);
    await first;
    const t = m.newSequence();
    const [a, b] = await Promise.all([m.decode([s], [5]), m.prefill([{ sequence: t, tokens: [9, 8] }])]);
    expect(a[0].length).toBe(4096);
    expect(b[0].logits[0].length).toBe(4096);
  });

  test('decode argument mismatches', async () => {
    const s = m.newSequence();
    await rejects(m.decode([s], [1, 2]), 'E_ARG', /1 sequences but 2 tokens/);
    await rejects(m.decode([s, s], [1, 2]), 'E_ARG', /same sequence appears twice/);
    await rejects(m.decode([], []), 'E_ARG', /at least one sequence/);
  });

  test('a snapshot from a model of another shape is refused', async () => {
    const other = await randomModel(randomConfig({ vocabSize: 4096, dModel: 16 }));
    const snap = other.newSequence().snapshot();
    other.dispose();
    expect(() => m.newSequence().restore(snap)).toThrow(/another shape/);
  });

  test('an aborted generation stops with E_ABORTED', async () => {
    const ac = new AbortController();
    const it = generate(m, 'The jury', { maxTokens: 50, signal: ac.signal, seed: 1 });
    await it.next();
    ac.abort();
    await rejects(it.next(), 'E_ABORTED', /aborted/);
  });
});

test('a disposed model refuses every call; a call in flight finishes', async () => {
  const m = await loadModel(SHIPPED);
  const s = m.newSequence();
  const inflight = m.logits([1, 2, 3, 4, 5], 'all');
  m.dispose();
  expect((await inflight).logits).toHaveLength(5);
  await rejects(m.logits([1]), 'E_DISPOSED', /disposed/);
  await rejects(m.decode([s], [1]), 'E_DISPOSED', /disposed/);
  await rejects(() => m.newSequence(), 'E_DISPOSED', /disposed/);
  await rejects(() => m.info(), 'E_DISPOSED', /disposed/);
  await rejects(async () => generate(m, 'x').next(), 'E_DISPOSED', /disposed/);
  m.dispose(); // twice is fine
});

const LOADS = repeats(50, 15);
test(`loading and disposing a model ${LOADS} times keeps RSS bounded`, async () => {
  // ~20 MB of weights per load: a leak of the native weights would show as ~1 GB over 50 (300 MB over 15).
  const cfg = randomConfig({ vocabSize: 8192, dModel: 256, nLayer: 8, dState: 16 });
  const dir = writeCheckpoint(cfg, randomEngineTensors(cfg, 2));
  const rss = (): number => process.memoryUsage().rss / 2 ** 20;
  for (let i = 0; i < repeats(5, 2); i++) (await loadModel(dir)).dispose();
  const base = rss();
  for (let i = 0; i < LOADS; i++) {
    const m = await loadModel(dir);
    await m.logits([1, 2, 3]);
    m.dispose();
  }
  const grown = rss() - base;
  expect(grown).toBeLessThan(100); // MiB; one model is ~20 MiB
}, 180000);

test('generation never samples padded vocabulary ids the tokenizer cannot decode', async () => {
  // A checkpoint whose embedding has more rows than the tokenizer has ids, with the padded rows
  // made to win every argmax: generation must still only produce decodable ids.
  const dir = copyShipped();
  const cfgPath = path.join(dir, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  cfg.vocab_size = 4104;
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  const { openCheckpoint, encodeSafetensors } = await import('../lib/checkpoint/safetensors');
  const ck = openCheckpoint(path.join(SHIPPED, 'model.safetensors'));
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const name of ck.names()) tensors[name] = { dtype: 'F32', shape: ck.info(name).shape, data: ck.readTensorF32(name) };
  ck.close();
  const emb = tensors['backbone.embeddings.weight'];
  // Padded rows = 3 x the row of the shipped model's top token after 'The jury': they out-score it.
  const shipped = await loadModel(SHIPPED);
  const first = (await shipped.logits(shipped.tokenizer!.encode('The jury'))).logits[0];
  shipped.dispose();
  let top = 0;
  first.forEach((v, i) => {
    if (v > first[top]) top = i;
  });
  expect(first[top]).toBeGreaterThan(0);
  const padded = new Float32Array(4104 * 128);
  padded.set(emb.data);
  for (let r = 4096; r < 4104; r++) for (let k = 0; k < 128; k++) padded[r * 128 + k] = 3 * emb.data[top * 128 + k];
  tensors['backbone.embeddings.weight'] = { dtype: 'F32', shape: [4104, 128], data: padded };
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  const m = await loadModel(dir);
  try {
    const { logits } = await m.logits(m.tokenizer!.encode('The jury'));
    let best = 0;
    logits[0].forEach((v, i) => {
      if (v > logits[0][best]) best = i;
    });
    expect(best).toBeGreaterThanOrEqual(4096); // the padded rows do win the raw argmax
    const ids: number[] = [];
    for await (const p of generate(m, 'The jury', { maxTokens: 5, temperature: 0, stopAtEos: false }))
      if (p.token >= 0) ids.push(p.token);
    expect(ids).toHaveLength(5);
    expect(Math.max(...ids)).toBeLessThan(4096);
  } finally {
    m.dispose();
  }
});

test('asking for more logits than fit in memory is refused before any work', async () => {
  const m = await randomModel(randomConfig({ vocabSize: 50000, dModel: 8 }));
  try {
    // 6000 positions x 50000 ids = 1.1 GiB of float32
    await rejects(m.logits(new Array(6000).fill(1), 'all'), 'E_ARG', /6000 logit rows .* ask for fewer positions/);
    expect((await m.logits(new Array(6000).fill(1), 'last')).logits).toHaveLength(1);
  } finally {
    m.dispose();
  }
});
