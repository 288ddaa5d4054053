/**
 * regexToGbnf: the grammar's strings are the regex's whole matches. Checked with the independent
 * GBNF recognizer (test/helpers/gbnf_check.ts) against JavaScript's RegExp (u flag, anchored):
 * random regexes (fast-check) x strings sampled from the grammar, from the regex, and random
 * strings over a small alphabet, in both directions; unsupported syntax is an E_ARG naming it.
 */
import fc from 'fast-check';

import { regexToGbnf } from '../../lib/constrain/regex';
import { SimbaError } from '../../lib/errors';
import { mulberry32 } from '../../lib/generate/sampler';
import { rx } from '../helpers/constraint_arbs';
import { parseGbnf } from '../helpers/gbnf_check';
import { repeats } from '../helpers/sanitized';
import { expectArgError } from '../helpers/util';

const anchored = (src: string) => new RegExp(`^(?:${src})$`, 'u');

describe('regexToGbnf', () => {
  test('examples: the grammar text and what it accepts', () => {
    expect(regexToGbnf('[A-Z][a-z]+ \\d{1,3}')).toBe('root ::= [A-Z] [a-z]+ " " [0-9]{1,3}\n');
    const g = parseGbnf(regexToGbnf('^(cat|dog)s?-\\d{2,}$'));
    for (const s of ['cat-12', 'dogs-007', 'cats-99999']) expect(g.accepts(s)).toBe(true);
    for (const s of ['cat-1', 'cow-12', 'cat12', 'cat-12 ', '']) expect(g.accepts(s)).toBe(false);
    // a RegExp object (u flag) works like its source
    expect(regexToGbnf(/a\d/u)).toBe(regexToGbnf('a\\d'));
  });

  test('random regexes: sampled strings match, and the grammar agrees with RegExp on random strings', () => {
    fc.assert(
      fc.property(
        rx,
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.array(fc.string({ unit: fc.constantFrom('a', 'b', 'c', '-', '5', '.', ' ', '"', 'é'), maxLength: 8 }), {
          maxLength: 20,
        }),
        (r, seed, randoms) => {
          const re = anchored(r.src);
          const g = parseGbnf(regexToGbnf(r.src));
          const rng = mulberry32(seed);
          for (let i = 0; i < 10; i++) {
            const fromGrammar = g.sample(rng);
            expect({ src: r.src, s: fromGrammar, ok: re.test(fromGrammar) }).toEqual({ src: r.src, s: fromGrammar, ok: true });
            const fromRegex = r.gen(rng);
            expect(re.test(fromRegex)).toBe(true); // the test's own sampler is right
            expect({ src: r.src, s: fromRegex, ok: g.accepts(fromRegex) }).toEqual({ src: r.src, s: fromRegex, ok: true });
          }
          for (const s of randoms) expect({ src: r.src, s, ok: g.accepts(s) }).toEqual({ src: r.src, s, ok: re.test(s) });
        },
      ),
      { numRuns: repeats(150, 50), seed: 29 },
    );
  });

  test.each([
    ['a(?=b)', /lookahead/],
    ['(?<!a)b', /lookbehind/],
    ['(a)\\1', /backreference \\1/],
    ['(?<x>a)\\k<x>', /backreference \\k/],
    ['a\\bc', /word boundary \\b/],
    ['a^b', /anchor '\^'/],
    ['a$b', /anchor '\$'/],
    ['\\p{L}', /Unicode property/],
    ['a{2,1}', /not a valid regular expression|out of order/],
    ['a{1001}', /past 1000/],
    ['(a', /not a valid regular expression/],
    ['', /must not be empty/],
    ['()', /only the empty string/],
  ])('%j is an E_ARG naming the problem', (src, msg) => {
    expectArgError(() => regexToGbnf(src), msg);
  });

  test('flags other than u, and non-strings, are refused', () => {
    expect(() => regexToGbnf(/a/i)).toThrow(/flags 'i' are not supported/);
    expect(() => regexToGbnf(42)).toThrow(/must be a string or a RegExp, got the number 42/);
  });

  test('fuzzed sources: a grammar or an E_ARG, never another error; grammars agree with RegExp', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(...'ab|()[]{}^$\\*+?.-,0123dwsuxk<>=!:'.split('')), maxLength: 12 }),
        (src) => {
          let gbnf: string;
          try {
            gbnf = regexToGbnf(src);
          } catch (e) {
            expect(e).toBeInstanceOf(SimbaError);
            expect((e as SimbaError).code).toBe('E_ARG');
            return;
          }
          const re = anchored(src);
          const g = parseGbnf(gbnf);
          const rng = mulberry32(src.length + 1);
          for (let i = 0; i < 5; i++) {
            const s = g.sample(rng);
            expect({ src, s, ok: re.test(s) }).toEqual({ src, s, ok: true });
          }
        },
      ),
      { numRuns: 400, seed: 7 },
    );
  });
});
