/**
 * Falcon-Mamba's GGUF files carry tokenizer.ggml.pre 'falcon': llama.cpp splits their text with its
 * own three regexes (punctuation runs, GPT-2's split, [0-9]{3}) before BPE. The ids we give equal
 * llama.cpp's (node-llama-cpp 3.21.1, llama.cpp v0.4.0) for 729 texts (digit, punctuation and white
 * space runs, contractions, unicode, code, held-out prose, 400 random strings of awkward characters)
 * and the held-out slice, recorded in test/fixtures/gguf/falcon-tokenizer-cases.json by
 * falcon_tokenizer_cases.mjs from a GGUF with GPT-NeoX-20B's tokens; the file here is that GGUF's
 * tokenizer metadata, written the way the peer's converter writes it.
 */
import * as fs from 'fs';
import * as path from 'path';

import { encodeGguf, type GgufWriteValue } from '../../bench/gguf_writer';
import { openGguf } from '../../lib/checkpoint/gguf';
import { ggufTokenizer } from '../../lib/checkpoint/gguf_model';
import type { Tokenizer } from '../../lib/checkpoint/tokenizer';
import { SimbaError } from '../../lib/errors';
import { tmpDir } from '../helpers/util';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'gguf', 'falcon-tokenizer-cases.json'), 'utf8')) as {
  peer: string;
  cases: [string, number[]][];
  slice: { file: string; ids: number[] };
};
const SLICE = fs.readFileSync(path.join(FIXTURES, fixture.slice.file), 'utf8');
const N_VOCAB = 50280; // the embedding rows of the converted model: ids past the tokenizer are padding
const work = tmpDir('simba-falcon-tok-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** tokenizer.ggml.* of GPT-NeoX-20B's tokenizer.json, as ../shared/peers/hf_to_gguf_mamba.py writes them. */
function neoxMetadata(pre: string): Record<string, GgufWriteValue> {
  const json = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'gpt-neox-20b-tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number>; merges: string[] };
    added_tokens: { id: number; content: string; special: boolean }[];
  };
  const tokens: string[] = Array.from({ length: N_VOCAB }, (_, i) => `[PAD${i}]`);
  const types: number[] = new Array<number>(N_VOCAB).fill(5); // UNUSED
  for (const [t, id] of Object.entries(json.model.vocab)) [tokens[id], types[id]] = [t, 1]; // NORMAL
  for (const a of json.added_tokens) [tokens[a.id], types[a.id]] = [a.content, a.special ? 3 : 4]; // CONTROL / USER_DEFINED
  return {
    'general.architecture': 'mamba',
    'tokenizer.ggml.model': 'gpt2',
    'tokenizer.ggml.pre': pre,
    'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.token_type': types,
    'tokenizer.ggml.merges': json.model.merges,
    'tokenizer.ggml.bos_token_id': 0,
    'tokenizer.ggml.eos_token_id': 0,
  };
}

async function tokenizerOf(pre: string): Promise<Tokenizer> {
  const file = path.join(work, `neox-${pre}.gguf`);
  fs.writeFileSync(file, encodeGguf(neoxMetadata(pre), []));
  return ggufTokenizer(await openGguf(file));
}

let falcon: Tokenizer;
beforeAll(async () => {
  falcon = await tokenizerOf('falcon');
});

test("the fixture is llama.cpp's, and covers the cases that make 'falcon' differ", () => {
  expect(fixture.peer).toBe('node-llama-cpp 3.21.1 (llama.cpp v0.4.0)');
  expect(fixture.cases.length).toBe(729);
  const ids = new Map(fixture.cases);
  // llama.cpp's own split, as its regexes say (GPT-NeoX ids: 1249 ' 12', 209 ' ', 10683 '123', 25133 '456', 270 ' b')
  expect(ids.get('a 12 b')).toEqual([66, 1249, 270]); // ' 12' stays whole (HF's Digits step would cut it)
  expect(ids.get('a 123456 b')).toEqual([66, 209, 10683, 25133, 270]); // ' 123456' -> ' ' '123' '456'
  expect(ids.get("don't")!.map((i) => falcon.idToToken(i))).toEqual(['don', "'", 't']);
});

test("ids equal llama.cpp's for every text of the fixture", () => {
  const differ = fixture.cases.filter(([text, ids]) => JSON.stringify(falcon.encode(text)) !== JSON.stringify(ids));
  expect(differ.map(([text]) => text)).toEqual([]);
});

test("the held-out slice: the same ids as llama.cpp's, whole and through encodeAsync's slices, and decoded back", async () => {
  expect(falcon.encode(SLICE)).toEqual(fixture.slice.ids);
  // the slices are cut at white space after a non-space, where the split is provably the same
  expect(await falcon.encodeAsync(SLICE, { sliceChars: 200 })).toEqual(fixture.slice.ids);
  // ... really in slices: only a sliced encode stops at maxTokens + 1 ids
  expect(await falcon.encodeAsync(SLICE, { sliceChars: 200, maxTokens: 10 })).toEqual(fixture.slice.ids.slice(0, 11));
  expect(falcon.decode(fixture.slice.ids)).toBe(SLICE);
});

test('every text decodes back from its ids (byte-level, no normalizer)', () => {
  const differ = fixture.cases.filter(([text, ids]) => falcon.decode(ids) !== text);
  expect(differ.map(([text]) => text)).toEqual([]);
});

test("'falcon' is not GPT-2's split: the same tokens with pre 'gpt-2' give other ids for a quarter of the texts", async () => {
  const gpt2 = await tokenizerOf('gpt-2');
  const differ = fixture.cases.filter(([text, ids]) => JSON.stringify(gpt2.encode(text)) !== JSON.stringify(ids));
  expect(differ.length).toBeGreaterThan(729 / 4); // 190 with llama.cpp v0.4.0's ids
  expect(gpt2.encode('a 12 b')).toEqual([66, 1249, 270]);
  expect(gpt2.encode('a 123456 b')).not.toEqual([66, 209, 10683, 25133, 270]);
});

test.each(['llama3', 'qwen2', 'default', ''])('tokenizer.ggml.pre %j is still refused, naming the value', async (pre) => {
  const err = await tokenizerOf(pre).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SimbaError);
  expect((err as SimbaError).code).toBe('E_TOKENIZER');
  expect((err as SimbaError).message).toContain(`tokenizer.ggml.pre ${JSON.stringify(pre)} is not supported`);
  expect((err as SimbaError).message).toContain('known: gpt-2, mpt, olmo, falcon');
});
