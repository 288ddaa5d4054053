/**
 * The trie-walked mask of native/constrain equals a brute-force one: every token's bytes fed, one
 * by one, to the tests' own NFA (reference_grammar.ts) after the text matched so far, on random
 * grammars at random positions reached by accepting random allowed tokens. Also on GPT-NeoX's 50k
 * vocabulary for a fixed grammar; and the masks the engine caches are the ones it walks.
 */
import * as path from 'path';

import fc from 'fast-check';

import { loadTokenizer, type Tokenizer } from '../../lib/checkpoint/tokenizer';
import { compileFor, type Grammar } from '../../lib/constrain/grammar';
import { constraintBytes } from '../../lib/constrain/vocab';
import { feed, hasNullableLoop, Nfa, nodeArb, render, type Node, type RefPosition } from './reference_grammar';

const ROOT = path.join(__dirname, '..', '..');
const brown = loadTokenizer(path.join(ROOT, 'models', 'brown-mamba-s'));
const neox = loadTokenizer(path.join(ROOT, 'test', 'fixtures', 'gpt-neox-20b-tokenizer.json'));

function tokenTable(tok: Tokenizer): number[][] {
  return Array.from({ length: tok.vocabSize }, (_, id) => constraintBytes(tok, id));
}
const tables = new Map<Tokenizer, number[][]>([
  [brown, tokenTable(brown)],
  [neox, tokenTable(neox)],
]);

/** The allowed ids by brute force: each token fed to the NFA after `pos`; EOS where the text is a sentence. */
function bruteMask(nfa: Nfa, pos: RefPosition, tok: Tokenizer, eos: number): number[] {
  const out: number[] = [];
  tables.get(tok)!.forEach((bytes, id) => {
    if (id === eos) {
      if (pos.partial.length === 0 && nfa.accepts(pos.set)) out.push(id);
    } else if (bytes.length > 0 && feed(nfa, pos, bytes)) out.push(id);
  });
  return out;
}

/** Walks `steps` random allowed tokens, comparing the masks at each position; returns the positions checked. */
function compareWalk(g: Grammar, nfa: Nfa, tok: Tokenizer, eos: number, picks: number[]): number {
  const m = g.matcher();
  let pos: RefPosition = { set: nfa.closure([nfa.start]), partial: [] };
  let checked = 0;
  for (const pick of picks) {
    const native = [...m.allowed()];
    expect(native).toEqual(bruteMask(nfa, pos, tok, eos));
    expect([...m.allowed(true)]).toEqual(native); // the cached mask is the walked one
    expect(m.complete()).toBe(pos.partial.length === 0 && nfa.accepts(pos.set));
    checked++;
    const choices = native.filter((t) => t !== eos);
    if (choices.length === 0) break;
    const t = choices[pick % choices.length];
    expect(m.accept(t)).toBe(true);
    pos = feed(nfa, pos, tables.get(tok)![t])!;
  }
  return checked;
}

describe('trie mask = brute-force mask', () => {
  test('random grammars, random positions (brown-mamba-s 4096-token vocabulary)', () => {
    let compared = 0;
    fc.assert(
      fc.property(nodeArb, fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), (node: Node, picks: number[]) => {
        const gbnf = `root ::= ${render(node)}\n`;
        if (hasNullableLoop(node)) {
          expect(() => compileFor('test', gbnf, brown, 0)).toThrow(/left recursion/);
          return;
        }
        const g = compileFor('test', gbnf, brown, 0);
        compared += compareWalk(g, new Nfa(node), brown, 0, picks);
      }),
      { numRuns: 60, seed: 29 },
    );
    expect(compared).toBeGreaterThan(60);
  });

  test('a fixed grammar over GPT-NeoX (50k tokens), UTF-8 split across tokens', () => {
    const node: Node = {
      k: 'seq',
      xs: [
        { k: 'lit', s: '"' },
        {
          k: 'star',
          x: {
            k: 'alt',
            xs: [
              {
                k: 'cls',
                ranges: [
                  [0x22, 0x22],
                  [0x5c, 0x5c],
                ],
                neg: true,
              },
              { k: 'lit', s: '\\"' },
            ],
          },
        },
        { k: 'lit', s: '"' },
        {
          k: 'opt',
          x: {
            k: 'seq',
            xs: [
              { k: 'lit', s: ' €' },
              { k: 'plus', x: { k: 'cls', ranges: [[0x30, 0x39]], neg: false } },
            ],
          },
        },
      ],
    };
    const g = compileFor('test', `root ::= ${render(node)}\n`, neox, 0);
    // picks that reach inside the string, a multi-byte character and the digits
    expect(compareWalk(g, new Nfa(node), neox, 0, [0, 7, 123, 4567, 89, 3, 0, 11])).toBeGreaterThanOrEqual(4);
  });
});
