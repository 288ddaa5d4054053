import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadTokenizer, Tokenizer } from '../lib/checkpoint/tokenizer';
import { SimbaError } from '../lib/errors';
import { ReferenceBPE, gpt2Split } from './reference/bpe';

const ROOT = path.join(__dirname, '..');
const SHIPPED_DIR = path.join(ROOT, 'models', 'brown-mamba-s');
const NEOX_FILE = path.join(__dirname, 'fixtures', 'gpt-neox-20b-tokenizer.json');
const SLICE = fs.readFileSync(path.join(__dirname, 'fixtures', 'brown-heldout-slice.txt'), 'utf8');
const PARAGRAPH = SLICE.split('\n\n').find((p) => p.length > 400)!;

const STRINGS: string[] = [
  'Hello world',
  'Hello, world! How are you?',
  'The quick brown fox jumps over the lazy dog.',
  "I'm, you're, he's, we've, they'll, I'd, can't, don't",
  "UPPER 'S 'LL 'RE and ''''' quotes ' s",
  'It\'s "double quoted" and (parenthesised) [bracketed] {braced}',
  '1234567890',
  '3.14159 and 2,718 and -42 and 1e-5 and 0x1F',
  'Year 2024: 365 days, 24/7, 9:30am',
  'multiple   spaces    here      and  two',
  'trailing spaces   ',
  '   leading spaces',
  'tabs\tand\t\ttabs \t mixed',
  'line one\nline two\n\nparagraph\n',
  '\n\n\n',
  'windows\r\nline endings\r\n',
  ' ',
  'a',
  'café naïve résumé façade',
  'cafe\u0301 and A\u030Angstro\u0308m (decomposed, NFC-composed by the normalizer)',
  'Ångström, Zürich, São Paulo, Kraków, Ærøskøbing',
  '日本語のテキストです。',
  '中文字符和标点，还有数字１２３。',
  '한국어 텍스트',
  'Привет, мир! Ёлка.',
  'Γειά σου κόσμε',
  'مرحبا بالعالم',
  'emoji 😀🎉👍🏽 and 👨‍👩‍👧‍👦 family 🇯🇵',
  'math: ∑ ∫ √ ≠ ≤ ≥ ∞ π ½ ²',
  'symbols: © ® ™ € £ ¥ § ¶ • … — –',
  'code: function f(x) { return x * 2; } // done',
  '    indented code\n        more indented\n\tdef f():\n\t\tpass',
  'URL: https://example.com/path?query=1&b=2#frag',
  'email: someone@example.com',
  '<|endoftext|>start and end<|endoftext|>',
  'x<|padding|>y <|padding|> z',
  'snake_case_name and camelCaseName and ALLCAPS',
  'x \u0085y and a \ufeffb',
  'nbsp\u00a0here and\u2003em space and\u3000ideographic',
  'zero\u200bwidth and soft\u00adhyphen',
  '!!!???...,,,;;;:::---___',
  'control \u0000 \u0007 chars \u001b[0m',
  PARAGRAPH,
];

let shipped: Tokenizer;
let neox: Tokenizer;
let shippedRef: ReferenceBPE;
let neoxRef: ReferenceBPE;

beforeAll(() => {
  shipped = loadTokenizer(SHIPPED_DIR);
  neox = loadTokenizer(NEOX_FILE);
  shippedRef = new ReferenceBPE(JSON.parse(fs.readFileSync(path.join(SHIPPED_DIR, 'tokenizer.json'), 'utf8')));
  neoxRef = new ReferenceBPE(JSON.parse(fs.readFileSync(NEOX_FILE, 'utf8')));
});

describe('loading', () => {
  // Speed is not asserted (no timed tests: they are flaky on shared machines).
  it('loads both tokenizers, with vocabulary size and special ids', () => {
    expect(shipped.vocabSize).toBe(4096);
    expect(neox.vocabSize).toBe(50277);
    expect(shipped.eosTokenId).toBe(0);
    expect(shipped.padTokenId).toBe(1);
    expect(neox.eosTokenId).toBe(0); // no tokenizer_config: '<|endoftext|>'
    expect(neox.tokenToId('<|endoftext|>')).toBe(0);
    expect(neox.idToToken(1)).toBe('<|padding|>');
    expect(neox.idToToken(50276)).toBe('  ');
    expect(neox.idToToken(50277)).toBeUndefined();
    expect(neox.isSpecial(0)).toBe(true);
    expect(neox.isSpecial(50276)).toBe(false);
  });

  it('known GPT-NeoX ids', () => {
    expect(neox.encode('Hello world')).toEqual([12092, 1533]);
    expect(neox.encode('<|endoftext|>')).toEqual([0]);
    expect(neox.encode('')).toEqual([]);
  });
});

describe('round trip on the held-out slice', () => {
  it.each([['shipped'], ['neox']])('%s tokenizer', (which) => {
    const tok = which === 'shipped' ? shipped : neox;
    const ids = tok.encode(SLICE);
    expect(ids.length).toBeGreaterThan(SLICE.length / 8);
    expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize)).toBe(true);
    expect(tok.decode(ids)).toBe(SLICE);
  });

  it('the shipped tokenizer is a prefix of GPT-NeoX: same ids where the vocabulary allows', () => {
    const s = 'the of and to in';
    expect(shipped.encode(s)).toEqual(neox.encode(s));
  });
});

describe('agreement with the independent reference BPE', () => {
  it('reference split rule sanity', () => {
    expect(gpt2Split("Hello  world's 42!! \n")).toEqual(['Hello', ' ', ' world', "'s", ' 42', '!!', ' \n']);
    expect(gpt2Split('a  ')).toEqual(['a', '  ']);
  });

  it.each(STRINGS.map((s, i) => [i, s]))('string %i: %j', (_i, s) => {
    const text = s as string;
    const a = neox.encode(text);
    expect(a).toEqual(neoxRef.encode(text));
    const b = shipped.encode(text);
    expect(b).toEqual(shippedRef.encode(text));
    expect(shipped.decode(b)).toBe(text.normalize('NFC'));
    expect(neox.decode(a)).toBe(text.normalize('NFC'));
  });

  it('whole slice, both tokenizers', () => {
    expect(neox.encode(SLICE)).toEqual(neoxRef.encode(SLICE));
    expect(shipped.encode(SLICE)).toEqual(shippedRef.encode(SLICE));
  });

  it('GPT-NeoX multi-space added tokens are matched before BPE', () => {
    const ids = neox.encode('a    b');
    expect(ids).toContain(neox.tokenToId('    '));
  });
});

describe('decode', () => {
  it('skips special tokens on request', () => {
    const ids = neox.encode('<|endoftext|>Hi there<|endoftext|>');
    expect(neox.decode(ids)).toBe('<|endoftext|>Hi there<|endoftext|>');
    expect(neox.decode(ids, { skipSpecialTokens: true })).toBe('Hi there');
  });

  it('does not "clean up" spaces before punctuation', () => {
    const s = "Hello , world . isn 't";
    expect(neox.decode(neox.encode(s))).toBe(s);
  });

  it('rejects ids outside the vocabulary, accepts empty input', () => {
    expect(neox.decode([])).toBe('');
    expect(() => neox.decode([5, 50277])).toThrow(
      expect.objectContaining({
        code: 'E_TOKEN',
        message: expect.stringMatching(/token id 50277 at position 1 is not in the vocabulary/),
      }),
    );
    expect(() => shipped.decode([4096])).toThrow(/valid ids 0\.\.4095/);
    expect(() => shipped.decode([1.5])).toThrow(SimbaError);
    expect(() => shipped.decode([-1])).toThrow(SimbaError);
  });

  it('renders invalid UTF-8 as U+FFFD', () => {
    const f0 = shipped.tokenToId('ð')!; // byte 0xF0 (starts a 4-byte sequence)
    const a = shipped.tokenToId('a')!;
    expect(shipped.decode([f0, a])).toBe('\uFFFDa');
    expect(shipped.decode([f0])).toBe('\uFFFD');
  });
});

describe('stream decoder', () => {
  function streamAll(tok: Tokenizer, ids: number[], chunk = 1, opts = {}): string[] {
    const d = tok.createStreamDecoder(opts);
    const parts: string[] = [];
    for (let i = 0; i < ids.length; i += chunk) parts.push(d.push(chunk === 1 ? ids[i] : ids.slice(i, i + chunk)));
    parts.push(d.flush());
    return parts;
  }

  it('holds back a character split across tokens', () => {
    const ids = neox.encode(' 😀');
    expect(ids).toEqual([49042, 211]); // 'ĠðŁĺ' + 'Ģ': the emoji's 4 bytes span two tokens
    const d = neox.createStreamDecoder();
    expect(d.push(ids[0])).toBe(' ');
    expect(d.push(ids[1])).toBe('😀');
    expect(d.flush()).toBe('');
  });

  it('byte-by-byte tokens of the shipped tokenizer never emit a broken character', () => {
    const text = 'emoji 😀🎉👍🏽 日本語 café <|endoftext|>x 👨‍👩‍👧‍👦';
    const ids = shipped.encode(text);
    const parts = streamAll(shipped, ids);
    expect(parts.join('')).toBe(text);
    expect(parts.some((p) => p.includes('\uFFFD'))).toBe(false);
    expect(parts.filter((p) => p === '').length).toBeGreaterThan(5); // held-back bytes
  });

  it.each([[1], [3], [64]])('equals one-shot decode on the slice (chunks of %i)', (chunk) => {
    const ids = neox.encode(SLICE + ' 😀 <|endoftext|> ☃');
    expect(streamAll(neox, ids, chunk).join('')).toBe(neox.decode(ids));
  });

  it('matches one-shot decode on invalid and truncated byte sequences', () => {
    const f0 = shipped.tokenToId('ð')!;
    const a = shipped.tokenToId('a')!;
    for (const ids of [
      [f0, a],
      [a, f0],
      [f0, 0, a],
      [f0, f0, a],
    ]) {
      expect(streamAll(shipped, ids).join('')).toBe(shipped.decode(ids));
    }
  });

  it('skips special tokens on request and rejects bad ids', () => {
    const ids = neox.encode('<|endoftext|>Hi<|endoftext|>');
    expect(streamAll(neox, ids, 1, { skipSpecialTokens: true }).join('')).toBe('Hi');
    expect(() => neox.createStreamDecoder().push(99999)).toThrow(expect.objectContaining({ code: 'E_TOKEN' }));
  });

  it('generic (non byte-level) decoders stream through re-decoding', () => {
    // A tiny SentencePiece-style BPE with byte fallback: '€' is the three byte tokens <0xE2><0x82><0xAC>.
    const vocab: Record<string, number> = { '<unk>': 0, '▁': 1, a: 2, b: 3, '▁a': 4, '<0xE2>': 5, '<0x82>': 6, '<0xAC>': 7 };
    const json = {
      added_tokens: [{ id: 0, content: '<unk>', special: true, normalized: false }],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: 'Sequence',
        decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }],
      },
      model: { type: 'BPE', vocab, merges: ['▁ a'], byte_fallback: true, unk_token: '<unk>' },
    };
    const tok = new Tokenizer(json, {}, 'tiny');
    expect(new Tokenizer({ model: json.model }, {}, 'minimal').encode('a')).toEqual([2]); // absent sections = null
    const ids = [4, 5, 6, 7, 3];
    expect(tok.decode(ids)).toBe(' a€b');
    const d = tok.createStreamDecoder();
    expect([d.push(4), d.push(5), d.push(6), d.push(7), d.push(3), d.flush()]).toEqual([' a', '', '', '€', 'b', '']);
  });
});

describe('errors', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-tok-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('missing tokenizer.json', () => {
    expect(() => loadTokenizer(tmp)).toThrow(
      expect.objectContaining({ code: 'E_TOKENIZER', message: expect.stringMatching(/no tokenizer\.json/) }),
    );
    expect(() => loadTokenizer(path.join(tmp, 'nope', 'tokenizer.json'))).toThrow(expect.objectContaining({ code: 'E_IO' }));
  });

  it('garbled tokenizer.json', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'g-'));
    fs.writeFileSync(
      path.join(dir, 'tokenizer.json'),
      fs.readFileSync(path.join(SHIPPED_DIR, 'tokenizer.json'), 'utf8').slice(0, 5000),
    );
    expect(() => loadTokenizer(dir)).toThrow(
      expect.objectContaining({
        code: 'E_TOKENIZER',
        message: expect.stringMatching(/tokenizer\.json: tokenizer\.json is not valid JSON/),
      }),
    );
  });

  it('structurally wrong tokenizer.json', () => {
    expect(() => new Tokenizer([1], {}, 'arr.json')).toThrow(/arr\.json: expected a JSON object/);
    expect(() => new Tokenizer({ added_tokens: [] }, {}, 't.json')).toThrow(/t\.json: missing or invalid 'model' section/);
    expect(() => new Tokenizer({ model: { type: 'Unigram', vocab: [] } }, {}, 't.json')).toThrow(
      /model type "Unigram" is not supported/,
    );
    expect(
      () => new Tokenizer({ model: { type: 'BPE', vocab: {}, merges: [] }, added_tokens: [{ id: 'x' }] }, {}, 't.json'),
    ).toThrow(/malformed added token/);
  });

  it('a byte-level vocabulary missing byte symbols is refused', () => {
    const json = JSON.parse(fs.readFileSync(path.join(SHIPPED_DIR, 'tokenizer.json'), 'utf8'));
    delete json.model.vocab['Ġ'];
    json.model.merges = json.model.merges.filter((m: string) => !m.split(' ').includes('Ġ'));
    expect(() => new Tokenizer(json, {}, 'cut.json')).toThrow(/byte-level vocabulary lacks the symbol\(s\) of byte\(s\) 0x20/);
  });

  it('eos from tokenizer_config must exist', () => {
    const json = JSON.parse(fs.readFileSync(path.join(SHIPPED_DIR, 'tokenizer.json'), 'utf8'));
    expect(() => new Tokenizer(json, { eos_token: '</s>' }, 'x.json')).toThrow(/'eos_token' "<\/s>" is not in the vocabulary/);
    expect(new Tokenizer(json, { eos_token: { content: '<|padding|>' } }, 'x.json').eosTokenId).toBe(1);
  });
});
