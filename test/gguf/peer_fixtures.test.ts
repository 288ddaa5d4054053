/**
 * GGUF files written by the peer's converters (llama.cpp's gguf-py; test/fixtures/gguf/make_fixtures.sh)
 * from tiny random HF folders (Mamba-1, Falcon-Mamba untied, Mamba-2 with 2 groups), committed next
 * to the folders they came from: each loads and gives the folder's logits (f32: 1e-5; Q8_0, stored
 * as int8: within the int8 tolerance), its config and its tokenizer are the folder's.
 */
import * as path from 'path';

import { loadModel } from '../../lib/engine/load';
import { loadTokenizer } from '../../lib/checkpoint/tokenizer';
import { maxRowErr, randTokens } from '../helpers/util';

const FIX = path.join(__dirname, '..', 'fixtures', 'gguf');
const INT8_TOL = 6e-2; // as test/int8.test.ts

/** Logits of every position of `ids` from a model folder or file, with the model's config and weights format. */
async function logitsOf(src: string, ids: number[], weights?: 'f32' | 'int8') {
  const m = await loadModel(src, weights ? { weights } : undefined);
  try {
    return { logits: (await m.logits(ids, 'all')).logits, config: m.config, info: m.info(), tokenizer: m.tokenizer };
  } finally {
    m.dispose();
  }
}

describe.each([
  ['mamba', 'mamba-f32.gguf', 'mamba'],
  ['falcon', 'falcon-f32.gguf', 'falcon-mamba'],
  ['mamba2', 'mamba2-f32.gguf', 'mamba2'],
] as const)('%s: %s', (folder, file, family) => {
  const ids = randTokens(12, 283, 7);

  test('same config and logits as the folder (f32, 1e-5)', async () => {
    const want = await logitsOf(path.join(FIX, folder), ids);
    const got = await logitsOf(path.join(FIX, file), ids);
    expect(got.info.family).toBe(family);
    expect(got.info.weights).toBe('f32');
    expect(got.config).toEqual(want.config);
    expect(maxRowErr(got.logits, want.logits)).toBeLessThan(1e-5);
  });
});

test('Q8_0 loads as int8 by default and stays within the int8 tolerance of the f32 folder', async () => {
  const ids = randTokens(12, 283, 8);
  const want = await logitsOf(path.join(FIX, 'mamba'), ids);
  const got = await logitsOf(path.join(FIX, 'mamba-q8_0.gguf'), ids);
  expect(got.info.weights).toBe('int8');
  const err = maxRowErr(got.logits, want.logits);
  expect(err).toBeLessThan(INT8_TOL);
  expect(err).toBeGreaterThan(1e-6); // really quantized
  // Loaded as f32, the Q8_0 values are those of the file: closer than int8 on top of Q8_0
  const f32 = await logitsOf(path.join(FIX, 'mamba-q8_0.gguf'), ids, 'f32');
  expect(f32.info.weights).toBe('f32');
  expect(maxRowErr(f32.logits, want.logits)).toBeLessThan(err);
});

test("the tokenizer of tokenizer.ggml.* encodes and decodes as the folder's tokenizer.json", async () => {
  const ref = loadTokenizer(path.join(FIX, 'mamba'));
  const m = await loadModel(path.join(FIX, 'mamba-f32.gguf'));
  try {
    const tok = m.tokenizer!;
    expect(tok.vocabSize).toBe(ref.vocabSize); // the padded rows (UNUSED) are not token ids
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId]).toEqual([ref.bosTokenId, ref.eosTokenId, ref.padTokenId]);
    const text = 'The fox and the dog  ran there<|endoftext|>then  they met, 42 times: café ümlaut\n\tend';
    const ids = ref.encode(text);
    expect(tok.encode(text)).toEqual(ids);
    expect(ids).toContain(0); // <|endoftext|> as one special token
    expect(ids).toContain(282); // the two-space added token
    expect(tok.decode(ids)).toBe(ref.decode(ids));
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(ref.decode(ids, { skipSpecialTokens: true }));
  } finally {
    m.dispose();
  }
});
