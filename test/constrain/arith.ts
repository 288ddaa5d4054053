/**
 * The constraint tests' arithmetic language: its GBNF, a hand-written recursive-descent parser that
 * knows nothing of GBNF, and a random-weight model with the GPT-NeoX tokenizer whose logits are
 * flattened (norm_f scaled down) so that samples wander over the whole mask.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { writeCheckpoint } from '../helpers/util';
import { randomConfig, randomEngineTensors } from '../reference/random_model';

export const EOS = 0;

export const ARITH = String.raw`
# a small arithmetic language
root   ::= expr
expr   ::= term (ws [-+] ws term)*
term   ::= factor (ws [*/] ws factor)*
factor ::= number | "(" ws expr ws ")" | "-" factor
number ::= [0-9]+ ("." [0-9]+)?
ws     ::= " "?
`;

/** 'ok' (a sentence), 'prefix' (can still become one) or 'bad'. Recursive descent, no backtracking needed. */
export function parseArith(s: string): 'ok' | 'prefix' | 'bad' {
  let i = 0;
  const END = Symbol('end');
  const peek = () => (i < s.length ? s[i] : END);
  const ws = () => {
    if (peek() === ' ') i++;
  };
  const number = () => {
    if (!/[0-9]/.test(String(peek()))) throw peek() === END ? END : new Error('digit');
    while (/[0-9]/.test(String(peek()))) i++;
    if (peek() === '.') {
      i++;
      if (!/[0-9]/.test(String(peek()))) throw peek() === END ? END : new Error('digit');
      while (/[0-9]/.test(String(peek()))) i++;
    }
  };
  const factor = (): void => {
    const c = peek();
    if (c === END) throw END;
    if (c === '(') {
      i++;
      ws();
      expr();
      ws();
      if (peek() === END) throw END;
      if (peek() !== ')') throw new Error(')');
      i++;
    } else if (c === '-') {
      i++;
      factor();
    } else number();
  };
  /** One precedence level: operand (ws op ws operand)*; a trailing " " at the end could still continue. */
  const level = (ops: readonly string[], operand: () => void) => (): void => {
    operand();
    for (;;) {
      const save = i;
      ws();
      const c = peek();
      if (c !== END && ops.includes(c)) {
        i++;
        ws();
        operand();
      } else {
        if (c === END && i > save) throw END;
        i = save;
        return;
      }
    }
  };
  const term = level(['*', '/'], factor);
  const expr: () => void = level(['+', '-'], term);
  try {
    expr();
    return i === s.length ? 'ok' : 'bad';
  } catch (e) {
    return e === END ? 'prefix' : 'bad';
  }
}

/** A 2-layer random model over GPT-NeoX's vocabulary (EOS 0) with nearly flat logits. */
export async function flatNeoxModel(): Promise<MambaModel> {
  const cfg = randomConfig({ vocabSize: 50280, dModel: 32, nLayer: 2, eosTokenId: EOS });
  const tensors = randomEngineTensors(cfg, 3);
  tensors.find((t) => t.name === 'norm_f')!.data.fill(0.05);
  const dir = writeCheckpoint(cfg, tensors);
  fs.copyFileSync(path.join(__dirname, '..', 'fixtures', 'gpt-neox-20b-tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return loadModel(dir);
}
