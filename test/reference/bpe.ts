/**
 * An independent, deliberately simple reference of byte-level BPE encoding as the Rust `tokenizers`
 * crate does it for GPT-2 / GPT-NeoX tokenizer.json files. Used only by tests, to check the library.
 *
 * Steps (each written from the algorithm, sharing no code with lib/ or @huggingface/tokenizers):
 *   1. split off added tokens that are not normalized (leftmost-longest match on the raw text)
 *   2. NFC-normalise the remaining pieces (the tokenizer.json `normalizer`)
 *   3. split off normalized added tokens (leftmost-longest, on the normalized text)
 *   4. pre-tokenize with the split rule of the `pre_tokenizer` (ByteLevel: the GPT-2 pattern
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ , hand-coded
 *      here as a scanner with `\s` = Unicode White_Space, as in Oniguruma)
 *   5. map each piece's UTF-8 bytes through GPT-2's byte -> unicode table
 *   6. BPE: repeatedly merge the adjacent pair with the lowest merge rank (leftmost on ties);
 *      integer ranks only, one merge at a time
 *   7. look the symbols up in the vocabulary (no unk token: a miss is an error)
 */

type Json = Record<string, unknown>;

interface AddedTok {
  id: number;
  content: string;
  normalized: boolean;
}

export function gpt2ByteToUnicode(): string[] {
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : next++);
  }
  return table;
}

const isLetter = (c: string): boolean => /^\p{L}$/u.test(c);
const isNumber = (c: string): boolean => /^\p{N}$/u.test(c);
const isSpace = (c: string): boolean => /^\p{White_Space}$/u.test(c);

/** The GPT-2 split pattern as a hand-written scanner over code points. */
export function gpt2Split(text: string): string[] {
  const cs = Array.from(text);
  const n = cs.length;
  const out: string[] = [];
  let i = 0;
  const runOf = (start: number, pred: (c: string) => boolean): number => {
    let j = start;
    while (j < n && pred(cs[j])) j++;
    return j;
  };
  const isOther = (c: string): boolean => !isSpace(c) && !isLetter(c) && !isNumber(c);
  while (i < n) {
    const c = cs[i];
    // 's 't 're 've 'm 'll 'd
    if (c === "'" && i + 1 < n) {
      const c1 = cs[i + 1];
      const c2 = i + 2 < n ? cs[i + 2] : '';
      let len = 0;
      if (c1 === 's' || c1 === 't' || c1 === 'm' || c1 === 'd') len = 2;
      else if ((c1 === 'r' || c1 === 'v') && c2 === 'e') len = 3;
      else if (c1 === 'l' && c2 === 'l') len = 3;
      if (len > 0) {
        out.push(cs.slice(i, i + len).join(''));
        i += len;
        continue;
      }
    }
    // ' ?' then a run of letters, numbers or "other" (tried with the space first, then without)
    let matched = false;
    for (const start of c === ' ' ? [i + 1, i] : [i]) {
      if (start >= n) continue;
      const d = cs[start];
      let end = start;
      if (isLetter(d)) end = runOf(start, isLetter);
      else if (isNumber(d)) end = runOf(start, isNumber);
      else if (isOther(d)) end = runOf(start, isOther);
      if (end > start) {
        out.push(cs.slice(i, end).join(''));
        i = end;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    // \s+(?!\S) | \s+
    const end = runOf(i, isSpace);
    if (end === i) throw new Error(`reference split: stuck at ${JSON.stringify(c)}`);
    const take = end === n || end - i === 1 ? end : end - 1;
    out.push(cs.slice(i, take).join(''));
    i = take;
  }
  return out;
}

/** Leftmost-longest split of `text` on the given literals; returns [piece, addedIdOrNull][]. */
function splitOnLiterals(text: string, toks: AddedTok[]): Array<[string, number | null]> {
  const out: Array<[string, number | null]> = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    let best: AddedTok | null = null;
    for (const t of toks) {
      if (t.content.length > 0 && text.startsWith(t.content, i) && (best === null || t.content.length > best.content.length))
        best = t;
    }
    if (best) {
      if (i > start) out.push([text.slice(start, i), null]);
      out.push([best.content, best.id]);
      i += best.content.length;
      start = i;
    } else {
      i++;
    }
  }
  if (start < text.length) out.push([text.slice(start), null]);
  return out;
}

export class ReferenceBPE {
  private readonly vocab = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly added: AddedTok[] = [];
  private readonly byteToChar = gpt2ByteToUnicode();
  private readonly nfc: boolean;
  private readonly addPrefixSpace: boolean;
  private readonly useRegex: boolean;
  private readonly cache = new Map<string, number[]>();

  constructor(json: Json) {
    const model = json['model'] as Json;
    if (model['type'] !== 'BPE') throw new Error('reference: only BPE models');
    for (const [tok, id] of Object.entries(model['vocab'] as Record<string, number>)) this.vocab.set(tok, id);
    const merges = model['merges'] as Array<string | [string, string]>;
    merges.forEach((m, rank) => {
      const [a, b] = typeof m === 'string' ? m.split(' ') : m;
      const key = `${a}\u0000${b}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    });
    for (const t of (json['added_tokens'] as Json[]) ?? []) {
      this.added.push({ id: t['id'] as number, content: t['content'] as string, normalized: t['normalized'] === true });
    }
    const norm = json['normalizer'] as Json | null;
    if (norm !== null && norm !== undefined && norm['type'] !== 'NFC')
      throw new Error(`reference: normalizer ${String(norm['type'])}`);
    this.nfc = norm !== null && norm !== undefined;
    const pre = json['pre_tokenizer'] as Json;
    if (pre['type'] !== 'ByteLevel') throw new Error(`reference: pre_tokenizer ${String(pre['type'])}`);
    this.addPrefixSpace = pre['add_prefix_space'] === true;
    this.useRegex = pre['use_regex'] !== false;
  }

  private bpeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const bytes = new TextEncoder().encode(word);
    let syms = Array.from(bytes, (b) => this.byteToChar[b]);
    for (;;) {
      let bestRank = -1;
      let bestAt = -1;
      for (let k = 0; k + 1 < syms.length; k++) {
        const r = this.ranks.get(`${syms[k]}\u0000${syms[k + 1]}`);
        if (r !== undefined && (bestRank < 0 || r < bestRank)) {
          bestRank = r;
          bestAt = k;
        }
      }
      if (bestAt < 0) break;
      syms = [...syms.slice(0, bestAt), syms[bestAt] + syms[bestAt + 1], ...syms.slice(bestAt + 2)];
    }
    const ids = syms.map((s) => {
      const id = this.vocab.get(s);
      if (id === undefined) throw new Error(`reference: symbol ${JSON.stringify(s)} not in vocab`);
      return id;
    });
    this.cache.set(word, ids);
    return ids;
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    const raw = this.added.filter((t) => !t.normalized);
    const normed = this.added
      .filter((t) => t.normalized)
      .map((t) => ({ ...t, content: this.nfc ? t.content.normalize('NFC') : t.content }));
    for (const [piece, id] of splitOnLiterals(text, raw)) {
      if (id !== null) {
        ids.push(id);
        continue;
      }
      const normalized = this.nfc ? piece.normalize('NFC') : piece;
      for (const [sub, id2] of splitOnLiterals(normalized, normed)) {
        if (id2 !== null) {
          ids.push(id2);
          continue;
        }
        let s = sub;
        if (this.addPrefixSpace && !s.startsWith(' ')) s = ` ${s}`;
        for (const word of this.useRegex ? gpt2Split(s) : [s]) ids.push(...this.bpeWord(word));
      }
    }
    return ids;
  }
}
