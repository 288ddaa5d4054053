/**
 * A tokenizer's vocabulary as the constraint engine's token trie (native/constrain/token_trie.h),
 * built once per tokenizer and end-of-sequence id and kept while the tokenizer lives. Each token
 * stands for the bytes it adds to the decoded text (Tokenizer.tokenBytes); special tokens stand for
 * none, so no grammar ever allows them (the EOS is allowed where the grammar is complete).
 *
 * @example
 *   const vocab = grammarVocab(model.tokenizer!, model.tokenizer!.eosTokenId);
 */
import { loadAddon, type NativeGrammarVocab } from '../../bindings';
import type { Tokenizer } from '../checkpoint/tokenizer';
import { fromNative } from '../errors';

const cache = new WeakMap<Tokenizer, Map<number, NativeGrammarVocab>>();

/** Token t's bytes as the trie sees them (none for special tokens and ids without a token). */
export function constraintBytes(tok: Tokenizer, id: number): number[] {
  if (tok.isSpecial(id) || tok.idToToken(id) === undefined) return [];
  return tok.tokenBytes(id);
}

/** The native vocabulary of `tok` with end-of-sequence id `eos` (null: none), built on first use. */
export function grammarVocab(tok: Tokenizer, eos: number | null): NativeGrammarVocab {
  const key = eos ?? -1;
  let byEos = cache.get(tok);
  if (!byEos) cache.set(tok, (byEos = new Map()));
  const hit = byEos.get(key);
  if (hit) return hit;
  const V = tok.vocabSize;
  const pieces: number[][] = [];
  let total = 0;
  for (let id = 0; id < V; id++) {
    const b = constraintBytes(tok, id);
    pieces.push(b);
    total += b.length;
  }
  const bytes = new Uint8Array(total),
    offsets = new Int32Array(V + 1);
  let at = 0;
  pieces.forEach((b, id) => {
    bytes.set(b, at);
    at += b.length;
    offsets[id + 1] = at;
  });
  let vocab: NativeGrammarVocab;
  try {
    vocab = new (loadAddon().GrammarVocab)(bytes, offsets, key < V ? key : -1);
  } catch (e) {
    throw fromNative(e);
  }
  byEos.set(key, vocab);
  return vocab;
}
