/**
 * Grammars that constrain generation: GBNF text (llama.cpp's syntax) compiled natively over a
 * model's vocabulary (native/constrain/). A compiled grammar is reusable: each generation takes its
 * own matcher, which the native sampler reads to mask the tokens the grammar does not allow (before
 * temperature, top-k, top-p, min-p and greedy) and which advances on each chosen token.
 *
 * @example
 *   const g = compileGrammar(model, 'root ::= [0-9]+ ("+" [0-9]+)*');
 *   for await (const p of generate(model, 'Sum: ', { grammar: g, maxTokens: 16 })) out += p.text;
 */
import { loadAddon, type NativeGrammar, type NativeGrammarMatcher } from '../../bindings';
import type { Tokenizer } from '../checkpoint/tokenizer';
import { checkModel, type LanguageModel } from '../engine/lm';
import { fromNative, SimbaError } from '../errors';
import { LIMITS } from '../limits';
import * as v from '../validate';
import { grammarVocab } from './vocab';

export type GrammarMatcher = NativeGrammarMatcher;

/** A GBNF grammar compiled for one tokenizer (and its end-of-sequence token). */
export class Grammar {
  /** @internal */
  constructor(
    /** The GBNF text. */
    readonly source: string,
    /** The tokenizer it was compiled for. */
    readonly tokenizer: Tokenizer,
    /** The end-of-sequence id, allowed where the grammar is complete (null: none). */
    readonly eos: number | null,
    private readonly native: NativeGrammar,
  ) {}

  /** A matcher at the grammar's start (one per generated sequence). */
  matcher(): GrammarMatcher {
    return new (loadAddon().GrammarMatcher)(this.native);
  }

  /** Parse states and masks computed and cached so far (cache hits: masks served without a trie walk). */
  stats(): ReturnType<NativeGrammar['stats']> {
    return this.native.stats();
  }

  /** Forgets the cached masks (the bench measures cold masks with it). */
  clearCache(): void {
    this.native.clearCache();
  }
}

const COMPILE_KEYS = ['tokenizer'] as const;

/**
 * Compiles GBNF text for the model's tokenizer (or `options.tokenizer`, for a model served with
 * another one). E_ARG naming the line, the column and the problem for bad GBNF (undefined rule, bad
 * escape, unbalanced parentheses, left recursion, empty grammar, limits).
 */
export function compileGrammar(model: LanguageModel, gbnf: string, options?: { tokenizer?: Tokenizer }): Grammar {
  const w = 'compileGrammar';
  checkModel(w, model);
  const o = v.options(w, options, COMPILE_KEYS);
  const tok = (o.tokenizer as Tokenizer | undefined) ?? model.tokenizer;
  if (!tok) throw new SimbaError('E_ARG', `${w}: the model has no tokenizer (a grammar constrains text)`, { param: 'grammar' });
  const eos = tok.eosTokenId ?? model.config.eosTokenId;
  return compileFor(w, gbnf, tok, eos);
}

/** Grammars compiled by compileCached, most recently used last. */
const recent = new Map<string, Grammar>();
const RECENT_MAX = 16;

/**
 * compileFor, reusing one of the last 16 grammars compiled with the same text, tokenizer and EOS
 * (the server: clients send the same grammar again and again; the masks it cached are kept too).
 */
export function compileCached(where: string, gbnf: unknown, tok: Tokenizer, eos: number | null): Grammar {
  if (typeof gbnf !== 'string') return compileFor(where, gbnf, tok, eos);
  const hit = recent.get(gbnf);
  if (hit && hit.tokenizer === tok && hit.eos === eos) {
    recent.delete(gbnf);
    recent.set(gbnf, hit);
    return hit;
  }
  const g = compileFor(where, gbnf, tok, eos);
  recent.set(gbnf, g);
  if (recent.size > RECENT_MAX) recent.delete(recent.keys().next().value!);
  return g;
}

/** The grammar `gbnf` over `tok` (E_ARG starting with `where`, param 'grammar'). */
export function compileFor(where: string, gbnf: unknown, tok: Tokenizer, eos: number | null): Grammar {
  if (typeof gbnf !== 'string')
    throw v.argError(where, `grammar must be GBNF text (a string), got ${v.describeType(gbnf)}`, 'grammar');
  if (Buffer.byteLength(gbnf, 'utf8') > LIMITS.grammarBytes)
    throw v.argError(where, `grammar too large: more than ${LIMITS.grammarBytes} bytes`, 'grammar');
  const vocab = grammarVocab(tok, eos);
  try {
    return new Grammar(gbnf, tok, eos, new (loadAddon().Grammar)(gbnf, vocab));
  } catch (e) {
    const err = fromNative(e);
    // (read the message itself: an addon error may come from another realm, e.g. under jest)
    const msg = (e as { message?: unknown } | null)?.message;
    throw new SimbaError(err.code, `${where ? `${where}: ` : ''}bad grammar: ${typeof msg === 'string' ? msg : err.message}`, {
      cause: e,
      param: 'grammar',
    });
  }
}
