/**
 * Property-based tests of the tokenizer (lib/checkpoint/tokenizer.ts) with the shipped brown-mamba-s
 * tokenizer and GPT-NeoX-20B's (test/fixtures), on random Unicode strings and random id lists.
 *
 * Where the round trip is lossless and where not:
 *   - both tokenizers NFC-normalise the input, so decode(encode(s)) === s.normalize('NFC');
 *   - a lone UTF-16 surrogate has no UTF-8 form: it comes back as U+FFFD (s.toWellFormed());
 *   - special tokens written in the text ("<|endoftext|>") are matched as such and decode to
 *     themselves, so they round-trip too (with skipSpecialTokens they are dropped).
 * Every other outcome, including ids outside the vocabulary, is a SimbaError (E_TOKEN / E_ARG).
 */
import * as path from 'path';
import fc from 'fast-check';

import { loadTokenizer, type Tokenizer } from '../../lib/checkpoint/tokenizer';
import { SimbaError } from '../../lib/errors';
import { fuzzParams } from './params';

const ROOT = path.join(__dirname, '..', '..');
const tokenizers: Array<[string, Tokenizer]> = [
  ['brown-mamba-s', loadTokenizer(path.join(ROOT, 'models', 'brown-mamba-s'))],
  ['gpt-neox-20b', loadTokenizer(path.join(ROOT, 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json'))],
];

/** What the round trip gives back for any JS string (see the header). */
const expectedRoundTrip = (s: string): string =>
  s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd').normalize('NFC');

/** Text worth tokenizing: any code points, graphemes, whitespace runs, special-token strings, lone surrogates. */
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'grapheme-composite', maxLength: 20 }),
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          ' ',
          '  ',
          '\t',
          '\n',
          '\r\n',
          '\u00a0',
          '\u0085',
          '\u2028',
          '\ufeff',
          '\u3000',
          '<|endoftext|>',
          '<|padding|>',
          "'s",
          "'ll",
          'e\u0301',
          '\u1100\u1161',
          '\ud83d\udc68\u200d\ud83d\udc69',
          '\u0000',
          '\ud800',
          '\udfff',
          '123',
          'The',
        ),
        fc.string({ unit: 'binary-ascii', maxLength: 4 }),
      ),
      { maxLength: 12 },
    )
    .map((parts) => parts.join('')),
);

/** Splits ids into consecutive chunks of random sizes. */
function chunks(ids: number[], cuts: number[]): number[][] {
  const out: number[][] = [];
  let at = 0;
  for (const c of cuts) {
    if (at >= ids.length) break;
    const n = 1 + (c % 4);
    out.push(ids.slice(at, at + n));
    at += n;
  }
  if (at < ids.length) out.push(ids.slice(at));
  return out;
}

describe.each(tokenizers)('tokenizer %s', (label, tok) => {
  test('decode(encode(s)) gives s back, up to NFC and lone surrogates; streaming decodes the same', () => {
    fc.assert(
      fc.property(text, fc.array(fc.nat(), { maxLength: 16 }), (s, cuts) => {
        const ids = tok.encode(s);
        for (const id of ids) expect(Number.isInteger(id) && id >= 0 && id < tok.vocabSize).toBe(true);
        expect(tok.decode(ids)).toBe(expectedRoundTrip(s));
        const stream = tok.createStreamDecoder();
        let streamed = '';
        for (const part of chunks(ids, cuts)) streamed += stream.push(part);
        streamed += stream.flush();
        expect(streamed).toBe(expectedRoundTrip(s));
      }),
      fuzzParams(150, { offset: label.length }),
    );
  });

  test('special tokens in the text round-trip, and skipSpecialTokens drops exactly them', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 6 }), fc.constant('<|endoftext|>')), { maxLength: 6 }),
        (parts) => {
          const s = parts.join('');
          const ids = tok.encode(s);
          expect(tok.decode(ids)).toBe(expectedRoundTrip(s));
          const kept = ids.filter((id) => !tok.isSpecial(id));
          expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(tok.decode(kept));
        },
      ),
      fuzzParams(80, { offset: 20 + label.length }),
    );
  });

  test('random id lists: a string (stream decoder agreeing) or E_TOKEN, never another error', () => {
    const id = fc.oneof(
      fc.integer({ min: 0, max: tok.vocabSize - 1 }),
      fc.constantFrom(-1, tok.vocabSize, 2 ** 31, 0.5, NaN, Infinity, -0),
    );
    fc.assert(
      fc.property(fc.array(id, { maxLength: 24 }), fc.array(fc.nat(), { maxLength: 8 }), (ids, cuts) => {
        let one: string;
        try {
          one = tok.decode(ids);
        } catch (e) {
          expect(e).toBeInstanceOf(SimbaError);
          expect((e as SimbaError).code).toBe('E_TOKEN');
          return;
        }
        expect(typeof one).toBe('string');
        const stream = tok.createStreamDecoder();
        let streamed = '';
        for (const part of chunks(ids, cuts)) streamed += stream.push(part);
        expect(streamed + stream.flush()).toBe(one);
      }),
      fuzzParams(150, { offset: 40 + label.length }),
    );
  });

  test('non-string input to encode is E_ARG', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.constant(null), fc.constant(undefined), fc.object(), fc.array(fc.string())), (v) => {
        let err: unknown = null;
        try {
          tok.encode(v as unknown as string);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(SimbaError);
        expect((err as SimbaError).code).toBe('E_ARG');
      }),
      fuzzParams(50, { offset: 60 }),
    );
  });
});
