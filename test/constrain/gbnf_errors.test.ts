/**
 * Bad GBNF is a clear E_ARG naming the line, the column and the problem; fuzzed grammar text
 * (random strings and mutations of good grammars) either compiles or is such an E_ARG: never a
 * crash, a hang or another error. Grammars that llama.cpp ships (in its syntax) compile.
 */
import * as path from 'path';

import fc from 'fast-check';

import { loadTokenizer } from '../../lib/checkpoint/tokenizer';
import { compileFor } from '../../lib/constrain/grammar';
import { isSimbaError } from '../../lib/errors';

const tok = loadTokenizer(path.join(__dirname, '..', '..', 'models', 'brown-mamba-s'));
const compile = (g: string) => compileFor('compileGrammar', g, tok, 0);

const JSON_GBNF = String.raw`
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
`;

test('llama.cpp-style grammars compile (json.gbnf with comments, {m,n}, escapes, empty alternatives)', () => {
  const m = compile(JSON_GBNF).matcher();
  expect(m.complete()).toBe(false);
  expect(m.allowed().length).toBeGreaterThan(0);
  expect(() => compile('root ::= [\\u00e9\\U0001F600] . "\\x41" [^\\]\\-]')).not.toThrow();
});

test.each([
  ['', /line 1, column 1: empty grammar/],
  ['# only a comment\n', /empty grammar/],
  ['root ::= foo', /line 1, column 10: undefined rule 'foo'/],
  ['root ::= "a"\nroot ::= "b"', /line 2, column 1: rule 'root' is defined twice/],
  ['a ::= "x"', /no rule named 'root'/],
  ['root ::= ("a" | "b"', /line 1, column 10: unbalanced parentheses: '\(' is not closed/],
  ['root ::= "a")', /line 1, column 13: unbalanced parentheses: '\)' without a matching '\('/],
  ['root ::= "a\\q"', /line 1, column 12: bad escape '\\q'/],
  ['root ::= "\\x4"', /bad escape: \\x needs 2 hex digits/],
  ['root ::= "\\U00110000"', /beyond U\+10FFFF/],
  ['root ::= "abc', /unterminated string literal/],
  ['root ::= [a-', /unterminated character class/],
  ['root ::= [z-a]', /bad character range/],
  ['root ::= *', /'\*' has nothing to repeat/],
  ['root ::= "a"{2,1}', /n < m/],
  ['root ::= "a"{5000}', /counts above 1000/],
  ['root ::= "a"{2', /expected '}'/],
  ['root := "a"', /line 1, column 6: expected '::=' after the rule name 'root'/],
  ['root ::= "a" @', /line 1, column 14: unexpected '@'/],
  [
    'root ::= expr\nexpr ::= expr "+" "1" | "1"',
    /line 2, column 1: left recursion: rule 'expr' can reach itself without consuming input \(expr -> expr\)/,
  ],
  ['root ::= a\na ::= b? a "x"\nb ::= "y"', /left recursion: rule 'a'/],
  ['root ::= ("a"?)*', /left recursion/],
  ['root ::= ' + '('.repeat(70) + '"a"' + ')'.repeat(70), /nested too deep/],
  ['root ::= "a"{1000}{1000}{1000}', /grammar too large/],
])('%j -> E_ARG %p', (g, re) => {
  let err: unknown;
  try {
    compile(g);
  } catch (e) {
    err = e;
  }
  expect(isSimbaError(err, 'E_ARG')).toBe(true);
  expect((err as Error).message).toMatch(/^compileGrammar: bad grammar: /);
  expect((err as Error).message).toMatch(re);
});

/** Compiles, or fails with E_ARG naming a position; anything else fails the property. */
function compilesOrArgError(g: string): void {
  try {
    compile(g).matcher().allowed();
  } catch (e) {
    if (!isSimbaError(e, 'E_ARG')) throw e;
    expect(e.message).toMatch(/^compileGrammar: bad grammar: (line \d+, column \d+: |grammar)/);
  }
}

describe('fuzz (bounded inputs)', () => {
  const pieces = [
    'root',
    ' ::= ',
    '::=',
    '"',
    '\\',
    '[',
    ']',
    '^',
    '-',
    '(',
    ')',
    '|',
    '*',
    '+',
    '?',
    '{',
    '}',
    ',',
    '2',
    '0',
    'a',
    'x',
    '\n',
    ' ',
    '#',
    '.',
    'é',
    '\\x',
    '\\u00',
    'expr',
  ];
  test('random token soup', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 40 }), (ps) => compilesOrArgError(ps.join(''))),
      { numRuns: 400, seed: 7 },
    );
  });
  test('random strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => compilesOrArgError('root ::= ' + s)),
      { numRuns: 300, seed: 8 },
    );
  });
  test('mutations of json.gbnf (a character changed, inserted or deleted)', () => {
    fc.assert(
      fc.property(
        fc.nat(JSON_GBNF.length - 1),
        fc.constantFrom('', '(', ')', '"', '|', '*', '[', '\\', ' x', '{9}', '?'),
        fc.boolean(),
        (at, ins, del) => compilesOrArgError(JSON_GBNF.slice(0, at) + ins + JSON_GBNF.slice(del ? at + 1 : at)),
      ),
      { numRuns: 300, seed: 9 },
    );
  });
});
