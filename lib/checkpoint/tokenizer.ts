/**
 * tokenizer.json (GPT-NeoX byte-level BPE, as used by all Mamba checkpoints) via @huggingface/tokenizers,
 * plus a streaming decoder that never emits a partial UTF-8 character.
 *
 * Deviations from the library's defaults, on purpose:
 *   - decode() never applies `clean_up_tokenization_spaces` (it would break the text round trip and
 *     make streamed and one-shot decoding differ).
 *   - the ByteLevel pre-tokenizer's split pattern (alone or as a step of a Sequence) uses Unicode
 *     White_Space for `\s`, as the Rust `tokenizers` crate (Oniguruma) and llama.cpp do;
 *     JavaScript's `\s` differs on U+0085 and U+FEFF.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfTokenizer, ByteLevelPreTokenizer, SequencePreTokenizer } from '@huggingface/tokenizers';
import { SimbaError, describeValue } from '../errors';
import * as v from '../validate';

export interface EncodeOptions {
  /** Let the post-processor add special tokens (none for GPT-NeoX). Default false. */
  addSpecialTokens?: boolean;
}

export interface EncodeAsyncOptions extends EncodeOptions {
  /**
   * Stop once the text is known to have more than this many tokens: the result is then its first
   * maxTokens + 1 ids (so `ids.length > maxTokens` tells), and the rest of the text is not tokenized.
   */
  maxTokens?: number;
  /** Checked between slices: an aborted signal rejects with E_ABORTED. */
  signal?: AbortSignal;
  /** Characters per slice (default 4096, about 4 ms of work); mostly for tests. */
  sliceChars?: number;
}

export interface DecodeOptions {
  /** Drop special tokens (e.g. `<|endoftext|>`). Default false. */
  skipSpecialTokens?: boolean;
}

/** Incremental ids -> text. The concatenation of all push() results and flush() equals decode(all ids). */
export interface StreamDecoder {
  /** Add one or more ids; returns the text that became complete (possibly ''). */
  push(ids: number | ArrayLike<number>): string;
  /** Text still held back (an incomplete UTF-8 sequence is rendered as U+FFFD). Resets the decoder. */
  flush(): string;
}

export interface LoadTokenizerOptions {
  /** Overrides the eos token id found in tokenizer_config.json / config.json. */
  eosTokenId?: number;
}

// GPT-2's reversible byte <-> printable unicode map (byte-level BPE alphabet).
function bytesToUnicode(): Map<number, string> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return new Map(bs.map((b, i) => [b, String.fromCodePoint(cs[i])]));
}
const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map([...BYTE_TO_CHAR].map(([b, c]) => [c, b]));

/** GPT-2 split pattern with Unicode White_Space in place of JavaScript's `\s` (as in Oniguruma). */
const BYTE_LEVEL_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

type Json = Record<string, unknown>;

const WHITE_SPACE = /\p{White_Space}/u;
/** encodeAsync's default slice: a few milliseconds of tokenizer work between event-loop turns. */
const SLICE_CHARS = 4096;
const ENCODE_ASYNC_KEYS = ['addSpecialTokens', 'maxTokens', 'signal', 'sliceChars'] as const;

/**
 * Whether tokenizing a text in slices cut right before an ASCII space, tab, CR or LF that follows
 * a non-white-space character gives exactly the ids of the whole text. That holds when:
 *   - the normalizer is none or NFC: a white-space character is a starter that composes with
 *     nothing before it, so NFC(a + b) = NFC(a) + NFC(b) at such a cut;
 *   - the pre-tokenizer is ByteLevel without a prefix space: no match of its split pattern holds a
 *     non-white-space character followed by a white-space one, so a match ends at the cut, and the
 *     pattern looks only ahead, so matching from the cut is the same in the slice as in the text;
 *   - every added token is either all white space or has none (none spans the cut: the splitter
 *     is a left-to-right longest match and restarts at the cut either way), and none has `rstrip`
 *     (it would strip the white space after the cut only when the two sides are tokenized together).
 */
function sliceable(json: Json, addedList: unknown[]): boolean {
  const norm = json['normalizer'];
  if (!(norm === null || norm === undefined || (isObject(norm) && norm['type'] === 'NFC'))) return false;
  if (!sliceablePre(json['pre_tokenizer'])) return false;
  return addedList.every((t) => {
    const content = (t as Json)['content'] as string;
    const ws = [...content].filter((c) => WHITE_SPACE.test(c)).length;
    return (t as Json)['rstrip'] !== true && (ws === 0 || ws === [...content].length);
  });
}

function isSplittingByteLevel(pre: unknown): boolean {
  return isObject(pre) && pre['type'] === 'ByteLevel' && pre['add_prefix_space'] !== true && pre['use_regex'] !== false;
}

/**
 * The pre-tokenizer side of `sliceable`: a ByteLevel one as above, or a Sequence of Punctuation
 * steps, then that ByteLevel step, then Digits / Split steps (llama.cpp's 'falcon' split). A
 * punctuation run holds no white space, so the pieces of the slice are those of the text cut at the
 * cut, and the ByteLevel split cuts there anyway (above); the pieces it makes are then the same, and
 * a later step works inside each piece alone.
 */
function sliceablePre(pre: unknown): boolean {
  const steps = preTokenizerSteps(pre);
  const at = steps.findIndex(isSplittingByteLevel);
  return (
    at >= 0 &&
    steps.slice(0, at).every((p) => isObject(p) && p['type'] === 'Punctuation') &&
    steps.slice(at + 1).every((p) => isObject(p) && (p['type'] === 'Digits' || p['type'] === 'Split'))
  );
}

/** The pre-tokenizer's steps: its own list for a Sequence, else itself. */
function preTokenizerSteps(pre: unknown): unknown[] {
  return isObject(pre) && pre['type'] === 'Sequence' && Array.isArray(pre['pretokenizers']) ? pre['pretokenizers'] : [pre];
}

/** The first cut at or after `from` (see sliceable), or text.length. */
function nextCut(text: string, from: number): number {
  for (let p = Math.max(from, 1); p < text.length; p++) {
    const c = text.charCodeAt(p);
    if ((c === 32 || c === 10 || c === 9 || c === 13) && !WHITE_SPACE.test(text[p - 1])) return p;
  }
  return text.length;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(source: string, msg: string, cause?: unknown): never {
  throw new SimbaError('E_TOKENIZER', `${source}: ${msg}`, cause === undefined ? undefined : { cause });
}

/** Token string of a config entry like "<|endoftext|>" or {content: "<|endoftext|>"}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v['content'] === 'string') return v['content'];
  return null;
}

export class Tokenizer {
  /** Number of token ids (model vocabulary plus added tokens): valid ids are 0..vocabSize-1. */
  readonly vocabSize: number;
  readonly eosTokenId: number | null;
  readonly bosTokenId: number | null;
  readonly padTokenId: number | null;
  /** File (or label) the tokenizer came from, for messages. */
  readonly source: string;

  private readonly hf: HfTokenizer;
  private readonly idToTok: Array<string | undefined>;
  private readonly special: Set<number>;
  private readonly added: Map<number, string>;
  private readonly byteLevelDecoder: boolean;
  private readonly sliceable: boolean;

  /**
   * @param json parsed tokenizer.json
   * @param config parsed tokenizer_config.json (optional)
   * @param source label for error messages
   * @param modelConfig parsed config.json of the model (optional; eos/bos/pad id fallback)
   */
  constructor(
    json: unknown,
    config: unknown = {},
    source = 'tokenizer.json',
    modelConfig: unknown = {},
    opts: LoadTokenizerOptions = {},
  ) {
    this.source = source;
    if (!isObject(json)) bad(source, `expected a JSON object, found ${describeValue(json)}`);
    const model = json['model'];
    if (!isObject(model)) bad(source, `missing or invalid 'model' section (found ${describeValue(model)})`);
    if (model['type'] !== undefined && model['type'] !== 'BPE') {
      bad(source, `model type ${describeValue(model['type'])} is not supported; expected "BPE"`);
    }
    if (!isObject(model['vocab'])) bad(source, `'model.vocab' must be an object of token -> id`);
    if (!Array.isArray(model['merges'])) bad(source, `'model.merges' must be a list`);
    const addedList = json['added_tokens'] ?? [];
    if (!Array.isArray(addedList)) bad(source, `'added_tokens' must be a list, found ${describeValue(addedList)}`);
    for (const t of addedList) {
      if (!isObject(t) || typeof t['content'] !== 'string' || typeof t['id'] !== 'number' || !Number.isInteger(t['id'])) {
        bad(source, `malformed added token ${describeValue(t)}`);
      }
    }
    this.sliceable = sliceable(json, addedList);
    const cfg: Json = isObject(config) ? { ...config } : {};
    cfg['clean_up_tokenization_spaces'] = false;
    try {
      const full = {
        normalizer: null,
        pre_tokenizer: null,
        post_processor: null,
        decoder: null,
        ...json,
        added_tokens: addedList,
      };
      this.hf = new HfTokenizer(full, cfg);
    } catch (e) {
      bad(source, `cannot build tokenizer: ${(e as Error).message}`, e);
    }
    const pre = this.hf.pre_tokenizer;
    for (const step of pre instanceof SequencePreTokenizer ? pre.tokenizers : [pre])
      if (step instanceof ByteLevelPreTokenizer) step.pattern = BYTE_LEVEL_PATTERN;

    // id -> token (model vocab + added tokens; ids without a token stay undefined)
    this.idToTok = Array.from(this.hf.model?.vocab ?? [], (t) => (typeof t === 'string' ? t : undefined));
    this.vocabSize = this.idToTok.length;
    if (this.vocabSize === 0) bad(source, `empty vocabulary`);

    this.added = new Map();
    this.special = new Set();
    for (const [id, t] of this.hf.get_added_tokens_decoder()) {
      this.added.set(id, t.content);
      if (t.special) this.special.add(id);
    }
    const extraSpecial = cfg['additional_special_tokens'];
    if (Array.isArray(extraSpecial)) {
      for (const t of extraSpecial) {
        const content = tokenContent(t);
        const id = content === null ? undefined : this.hf.token_to_id(content);
        if (id !== undefined) this.special.add(id);
      }
    }
    const decoder = json['decoder'];
    this.byteLevelDecoder = isObject(decoder) && decoder['type'] === 'ByteLevel';
    if (preTokenizerSteps(json['pre_tokenizer']).some((p) => isObject(p) && p['type'] === 'ByteLevel')) {
      // Every byte that can occur in UTF-8 must have a symbol, else the library drops it silently.
      const missing: string[] = [];
      for (let b = 0; b < 0xf5; b++) {
        if (b === 0xc0 || b === 0xc1) continue;
        if (this.hf.token_to_id(BYTE_TO_CHAR.get(b)!) === undefined) missing.push(`0x${b.toString(16).padStart(2, '0')}`);
      }
      if (missing.length > 0)
        bad(
          source,
          `byte-level vocabulary lacks the symbol(s) of byte(s) ${missing.slice(0, 16).join(', ')}${missing.length > 16 ? '...' : ''}`,
        );
    }

    const mc: Json = isObject(modelConfig) ? modelConfig : {};
    const idOf = (key: string, configKey: string, fallback: string | null): number | null => {
      const content = tokenContent(cfg[key]);
      if (content !== null) {
        const id = this.tokenToId(content);
        if (id === undefined) bad(source, `tokenizer_config '${key}' ${describeValue(content)} is not in the vocabulary`);
        return id;
      }
      const v = mc[configKey];
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < this.vocabSize) return v;
      if (fallback !== null) return this.tokenToId(fallback) ?? null;
      return null;
    };
    this.eosTokenId = opts.eosTokenId ?? idOf('eos_token', 'eos_token_id', '<|endoftext|>');
    this.bosTokenId = idOf('bos_token', 'bos_token_id', null);
    this.padTokenId = idOf('pad_token', 'pad_token_id', null);
  }

  /** Text -> token ids. */
  encode(text: string, options?: EncodeOptions): number[] {
    const opts: EncodeOptions = {
      addSpecialTokens: v.bool(
        'encode',
        'addSpecialTokens',
        v.options('encode', options, ['addSpecialTokens'] as const).addSpecialTokens,
      ),
    };
    if (typeof text !== 'string') throw new SimbaError('E_ARG', `encode: expected a string, found ${describeValue(text)}`);
    return this.encodeChecked(text, opts.addSpecialTokens ?? false);
  }

  /**
   * Text -> token ids without holding the event loop: a long text is tokenized in slices cut at
   * white space where the ids are provably those of the whole text (see `sliceable`), with a turn
   * of the event loop between slices, and tokenizing stops once `maxTokens` is passed. Tokenizers
   * of another kind (other normalizers or pre-tokenizers) tokenize the whole text in one go.
   * @example
   *   const ids = await tok.encodeAsync(text, { maxTokens: 65536 });
   *   if (ids.length > 65536) throw new Error('prompt too long');
   */
  async encodeAsync(text: string, options?: EncodeAsyncOptions): Promise<number[]> {
    const w = 'encodeAsync',
      o = v.options(w, options, ENCODE_ASYNC_KEYS);
    const special = v.bool(w, 'addSpecialTokens', o.addSpecialTokens) ?? false;
    const maxTokens = v.int(w, 'maxTokens', o.maxTokens, 0) ?? Infinity;
    const signal = v.signal(w, 'signal', o.signal);
    const sliceChars = v.int(w, 'sliceChars', o.sliceChars, 1) ?? SLICE_CHARS;
    if (typeof text !== 'string') throw new SimbaError('E_ARG', `${w}: expected a string, found ${describeValue(text)}`);
    const aborted = () => {
      if (signal?.aborted) throw new SimbaError('E_ABORTED', `${w}: aborted`, { cause: signal.reason });
    };
    aborted();
    if (!this.sliceable || special || text.length <= sliceChars) return this.encodeChecked(text, special);
    const ids: number[] = [];
    for (let at = 0; at < text.length && ids.length <= maxTokens;) {
      if (at > 0) {
        await nextTurn();
        aborted();
      }
      const end = nextCut(text, at + sliceChars);
      for (const id of this.encodeChecked(text.slice(at, end), false)) ids.push(id);
      at = end;
    }
    if (ids.length > maxTokens) ids.length = maxTokens + 1;
    return ids;
  }

  private encodeChecked(text: string, addSpecialTokens: boolean): number[] {
    if (text.length === 0) return [];
    const ids = this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    for (const id of ids) {
      if (typeof id !== 'number')
        throw new SimbaError('E_TOKEN', `${this.source}: encode produced an unknown token for ${describeValue(text)}`);
    }
    return ids;
  }

  private checkIds(ids: ArrayLike<number>): number[] {
    const out = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.idToTok[id] === undefined) {
        throw new SimbaError(
          'E_TOKEN',
          `${this.source}: token id ${describeValue(id)} at position ${i} is not in the vocabulary (valid ids 0..${this.vocabSize - 1})`,
        );
      }
      out[i] = id;
    }
    return out;
  }

  /** Token ids -> text. Invalid UTF-8 byte sequences become U+FFFD. */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string {
    const opts = checkDecodeOptions('decode', options);
    if (!v.is.arrayLike(ids)) throw v.argError('decode', `ids must be an array of token ids, got ${v.describeType(ids)}`);
    let list = this.checkIds(ids);
    if (opts.skipSpecialTokens) list = list.filter((id) => !this.special.has(id));
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.idToTok[id] : undefined;
  }

  /**
   * The bytes token `id` stands for in the decoded text: a byte-level token's own bytes (which may
   * be part of a UTF-8 character, so the bytes of consecutive tokens concatenate to the text's
   * UTF-8), an added token's UTF-8; with other decoders, the UTF-8 of decode([id]).
   */
  tokenBytes(id: number): number[] {
    const token = this.idToToken(id);
    if (token === undefined)
      throw new SimbaError(
        'E_TOKEN',
        `${this.source}: token id ${describeValue(id)} is not in the vocabulary (valid ids 0..${this.vocabSize - 1})`,
      );
    const added = this.added.get(id);
    if (!this.byteLevelDecoder || added !== undefined) return [...utf8.encode(added ?? this.decode([id]))];
    const out: number[] = [];
    pushSymbolBytes(token, out);
    return out;
  }

  /** True for special added tokens (e.g. `<|endoftext|>`). */
  isSpecial(id: number): boolean {
    return this.special.has(id);
  }

  /** A decoder for generated ids that holds back incomplete UTF-8 characters. */
  createStreamDecoder(options?: DecodeOptions): StreamDecoder {
    const opts = checkDecodeOptions('createStreamDecoder', options);
    return this.byteLevelDecoder ? new ByteLevelStreamDecoder(this, this.added, opts) : new GenericStreamDecoder(this, opts);
  }
}

function checkDecodeOptions(where: string, options: unknown): DecodeOptions {
  const o = v.options(where, options, ['skipSpecialTokens'] as const);
  return { skipSpecialTokens: v.bool(where, 'skipSpecialTokens', o.skipSpecialTokens) };
}

const utf8 = new TextEncoder();

/** Appends the bytes of a byte-level token's symbols to `out`. */
function pushSymbolBytes(token: string, out: number[]): void {
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) {
      // Not a byte-level symbol: pass its UTF-8 through.
      for (const x of utf8.encode(ch)) out.push(x);
    } else {
      out.push(b);
    }
  }
}

/** ByteLevel decoding, byte by byte: tokens -> bytes -> TextDecoder in streaming mode. */
class ByteLevelStreamDecoder implements StreamDecoder {
  private td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(
    private readonly tok: Tokenizer,
    private readonly added: Map<number, string>,
    private readonly opts: DecodeOptions,
  ) {}

  push(ids: number | ArrayLike<number>): string {
    const list = typeof ids === 'number' ? [ids] : ids;
    let out = '';
    const bytes: number[] = [];
    for (let i = 0; i < list.length; i++) {
      const id = list[i];
      const token = this.tok.idToToken(id);
      if (token === undefined) {
        throw new SimbaError(
          'E_TOKEN',
          `${this.tok.source}: token id ${describeValue(id)} is not in the vocabulary (valid ids 0..${this.tok.vocabSize - 1})`,
        );
      }
      const addedContent = this.added.get(id);
      if (addedContent !== undefined) {
        if (this.opts.skipSpecialTokens && this.tok.isSpecial(id)) continue;
        out += this.td.decode(Uint8Array.from(bytes)); // ends the byte run (like the one-shot decoder)
        bytes.length = 0;
        out += addedContent;
        continue;
      }
      pushSymbolBytes(token, bytes);
    }
    if (bytes.length > 0) out += this.td.decode(Uint8Array.from(bytes), { stream: true });
    return out;
  }

  flush(): string {
    return this.td.decode();
  }
}

/** Any decoder: re-decode the ids since the last emitted character boundary, emit the new suffix. */
class GenericStreamDecoder implements StreamDecoder {
  private pending: number[] = [];
  private emitted = 0;

  constructor(
    private readonly tok: Tokenizer,
    private readonly opts: DecodeOptions,
  ) {}

  push(ids: number | ArrayLike<number>): string {
    const list = typeof ids === 'number' ? [ids] : Array.from(ids);
    this.pending.push(...list);
    const text = this.tok.decode(this.pending, this.opts);
    if (text.endsWith('\uFFFD')) return '';
    const out = text.slice(this.emitted);
    // Keep the last token as context (decoders may treat a leading token specially).
    const last = this.pending[this.pending.length - 1];
    this.pending = [last];
    this.emitted = this.tok.decode(this.pending, this.opts).length;
    return out;
  }

  flush(): string {
    const text = this.pending.length > 0 ? this.tok.decode(this.pending, this.opts) : '';
    const out = text.slice(this.emitted);
    this.pending = [];
    this.emitted = 0;
    return out;
  }
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SimbaError('E_IO', `${file}: cannot read ${what} (${(e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    bad(file, `${what} is not valid JSON (${(e as Error).message})`, e);
  }
}

/**
 * Load `tokenizer.json` from a model directory (or the given file). `tokenizer_config.json` and
 * `config.json` next to it, when present, supply the special token ids.
 */
export function loadTokenizer(dirOrFile: string, options?: LoadTokenizerOptions): Tokenizer {
  const o = v.options('loadTokenizer', options, ['eosTokenId'] as const);
  const opts: LoadTokenizerOptions = { eosTokenId: v.int('loadTokenizer', 'eosTokenId', o.eosTokenId, 0) };
  if (typeof dirOrFile !== 'string')
    throw v.argError('loadTokenizer', `the path must be a string, got ${v.describeType(dirOrFile)}`);
  let file = dirOrFile;
  try {
    if (fs.statSync(dirOrFile).isDirectory()) file = path.join(dirOrFile, 'tokenizer.json');
  } catch (e) {
    throw new SimbaError('E_IO', `${dirOrFile}: tokenizer directory or file not found`, { cause: e });
  }
  if (!fs.existsSync(file)) {
    throw new SimbaError('E_TOKENIZER', `${path.dirname(file)}: no tokenizer.json (expected at ${file})`);
  }
  const json = readJson(file, 'tokenizer.json');
  const dir = path.dirname(file);
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const config = fs.existsSync(cfgFile) ? readJson(cfgFile, 'tokenizer_config.json') : {};
  const modelCfgFile = path.join(dir, 'config.json');
  let modelConfig: unknown = {};
  if (fs.existsSync(modelCfgFile)) {
    try {
      modelConfig = JSON.parse(fs.readFileSync(modelCfgFile, 'utf8'));
    } catch {
      modelConfig = {}; // config.json problems are reported by loadConfig
    }
  }
  return new Tokenizer(json, config, file, modelConfig, opts);
}
