/**
 * Logprobs of characters split across tokens, over real HTTP on 127.0.0.1: completions'
 * `text_offset` must be the same streamed and whole, and chat's `bytes` must be each token's own
 * bytes, so that they join to the content's UTF-8.
 *
 * The model is built so that greedy decoding follows a fixed cycle of GPT-NeoX tokens: its layers
 * add nothing (out_proj = 0), the cycle's tokens embed as distinct unit vectors and the untied LM
 * head maps each to its successor. The cycle spells "The café costs 5€ 😀!" with é, € and 😀 cut
 * into one-byte tokens.
 */
import * as fs from 'fs';
import * as path from 'path';

import { chatTemplate, PLAIN_CHAT_TEMPLATE } from '../../lib/checkpoint/chat_template';
import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { randomConfig, randomEngineTensors } from '../reference/random_model';
import { writeCheckpoint } from '../helpers/util';
import { post, start, type Running } from './helpers';

const NAME = 'cycle';
const FIXTURE = path.join(__dirname, '..', 'fixtures', 'gpt-neox-20b-tokenizer.json');

/** GPT-2's byte -> symbol table of byte-level BPE: printable Latin-1 bytes stand for themselves, the rest for U+0100 on. */
function byteSymbol(b: number): string {
  const printable = (x: number) => (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
  if (printable(b)) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCharCode(0x100 + n);
}

/** The cycle: [token string in the vocabulary, its bytes]. */
const PIECES: Array<[string, number[]]> = [
  ...['The', ' caf'].map((s): [string, number[]] => [s, [...Buffer.from(s)]]),
  ...[0xc3, 0xa9].map((b): [string, number[]] => [byteSymbol(b), [b]]), // é
  ...[' costs', ' 5'].map((s): [string, number[]] => [s, [...Buffer.from(s)]]),
  ...[0xe2, 0x82, 0xac].map((b): [string, number[]] => [byteSymbol(b), [b]]), // €
  [' ', [0x20]],
  ...[0xf0, 0x9f, 0x98, 0x80].map((b): [string, number[]] => [byteSymbol(b), [b]]), // 😀
  ['!', [0x21]],
];
const TEXT = 'The café costs 5€ 😀!';

let model: MambaModel;
let s: Running;
let cycle: number[];
let chatLast: number;

beforeAll(async () => {
  const vocab = (JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab;
  const idOf = (sym: string) => {
    const id = vocab[sym.replace(/ /g, byteSymbol(0x20))];
    if (id === undefined) throw new Error(`no token ${JSON.stringify(sym)}`);
    return id;
  };
  cycle = PIECES.map(([sym]) => idOf(sym));
  expect(Buffer.from(PIECES.flatMap(([, b]) => b)).toString('utf8')).toBe(TEXT);

  const cfg = randomConfig({ vocabSize: 50280, dModel: 32, nLayer: 1, tieEmbeddings: false, eosTokenId: 0 });
  const tensors = randomEngineTensors(cfg, 7);
  const tensor = (name: string) => tensors.find((t) => t.name === name)!.data;
  const d = cfg.dModel;
  const emb = tensor('embedding').fill(0),
    head = tensor('lm_head').fill(0);
  tensor('norm_f').fill(1);
  tensor('out_proj').fill(0);
  // The chat prompt's last token leads into the cycle too (its own dimension).
  const dir = writeCheckpoint(cfg, tensors);
  fs.copyFileSync(FIXTURE, path.join(dir, 'tokenizer.json'));
  const rendered = chatTemplate('plain', PLAIN_CHAT_TEMPLATE).render([{ role: 'user', content: 'Hi' }]);
  // (the tokenizer is loaded with the model below; encode with the fixture through a throwaway load)
  const probe = await loadModel(dir);
  chatLast = probe.tokenizer!.encode(rendered).at(-1)!;
  probe.dispose();
  const from = [...cycle, chatLast];
  const to = [...cycle.slice(1), cycle[0], cycle[0]];
  from.forEach((id, k) => {
    emb[id * d + k] = 1;
    head[to[k] * d + k] = 1;
  });
  expect(new Set(from).size).toBe(from.length);
  writeCheckpoint(cfg, tensors, { dir });
  model = await loadModel(dir);
  s = await start({ model, modelName: NAME, chatTemplate: chatTemplate('plain', PLAIN_CHAT_TEMPLATE) });
});
afterAll(async () => {
  await s?.server.shutdown(0);
  model?.dispose();
});

const N = 2 * PIECES.length + 2; // two cycles and "The caf": ends on a whole character
const expectedText = TEXT + TEXT + 'The caf';
const expectedBytes = [...PIECES, ...PIECES, ...PIECES.slice(0, 2)].map(([, b]) => b);

/**
 * text_offset by the definition: the UTF-16 index in the text of the character in which the
 * token's first byte lies (a token that continues a character gets that character's start).
 */
function expectedOffsets(): number[] {
  const out: number[] = [];
  const all: number[] = [];
  for (const b of expectedBytes) {
    // the whole characters before the token's first byte, plus any partial one it continues
    let lead = all.length;
    while (lead > 0 && (all[lead - 1] & 0xc0) === 0x80) lead--;
    lead--; // the last character's first byte
    const need = lead < 0 ? 0 : all[lead] >= 0xf0 ? 4 : all[lead] >= 0xe0 ? 3 : all[lead] >= 0xc0 ? 2 : 1;
    const cut = lead >= 0 && all.length - lead < need ? lead : all.length;
    const prefix = all.slice(0, cut);
    // a partial character at the end is no character of its own
    out.push(Buffer.from(prefix).toString('utf8').length);
    all.push(...b);
  }
  return out;
}

/** SSE `data:` payloads of a streamed response (without [DONE]). */
async function sse(pathname: string, body: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  const r = await fetch(`${s.url}${pathname}`, {
    method: 'POST',
    body: JSON.stringify({ ...body, stream: true }),
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(30000),
  });
  expect(r.status).toBe(200);
  const text = await r.text();
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
}

interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}
interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

test('the model follows the cycle (the test is meaningful)', async () => {
  const r = await post(
    s.url,
    '/v1/completions',
    JSON.stringify({ model: NAME, prompt: [cycle.at(-1)], max_tokens: N, temperature: 0 }),
  );
  expect(r.status).toBe(200);
  expect((r.json.choices as { text: string }[])[0].text).toBe(expectedText);
});

test('completions: text_offset identical streamed and whole, at each character start', async () => {
  const req = { model: NAME, prompt: [cycle.at(-1)], max_tokens: N, temperature: 0, logprobs: 2 };
  const whole = await post(s.url, '/v1/completions', JSON.stringify(req));
  expect(whole.status).toBe(200);
  const c = (whole.json.choices as { text: string; logprobs: CompletionLogprobs }[])[0];
  expect(c.text).toBe(expectedText);

  const chunks = await sse('/v1/completions', req);
  const streamed = { text: '', tokens: [] as string[], offsets: [] as number[], logprobs: [] as number[] };
  for (const ch of chunks) {
    const choice = (ch.choices as { text: string; logprobs: CompletionLogprobs | null }[])[0];
    if (!choice) continue;
    streamed.text += choice.text;
    if (choice.logprobs) {
      streamed.tokens.push(...choice.logprobs.tokens);
      streamed.offsets.push(...choice.logprobs.text_offset);
      streamed.logprobs.push(...choice.logprobs.token_logprobs);
    }
  }
  expect(streamed.text).toBe(expectedText);
  expect(streamed.tokens).toEqual(c.logprobs.tokens);
  expect(streamed.logprobs).toEqual(c.logprobs.token_logprobs);
  expect(c.logprobs.text_offset).toEqual(expectedOffsets());
  expect(streamed.offsets).toEqual(c.logprobs.text_offset);
  // e.g. "The"@0, " caf"@3, the two halves of é both @7, " costs"@8
  expect(c.logprobs.text_offset.slice(0, 5)).toEqual([0, 3, 7, 7, 8]);
});

test('chat: bytes are each token own bytes and join to the content, streamed and whole', async () => {
  const req = {
    model: NAME,
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: N,
    temperature: 0,
    logprobs: true,
    top_logprobs: 2,
  };
  const whole = await post(s.url, '/v1/chat/completions', JSON.stringify(req));
  expect(whole.status).toBe(200);
  const c = (whole.json.choices as { message: { content: string }; logprobs: { content: ChatLogprob[] } }[])[0];
  expect(c.message.content).toBe(expectedText);
  expect(c.logprobs.content.map((e) => e.bytes)).toEqual(expectedBytes);
  expect(Buffer.from(c.logprobs.content.flatMap((e) => e.bytes))).toEqual(Buffer.from(c.message.content, 'utf8'));
  for (const e of c.logprobs.content) {
    expect(e.top_logprobs).toHaveLength(2);
    expect(e.top_logprobs[0].bytes).toEqual(e.bytes); // greedy: the top alternative is the token
  }

  const chunks = await sse('/v1/chat/completions', req);
  let content = '';
  const entries: ChatLogprob[] = [];
  for (const ch of chunks) {
    const choice = (ch.choices as { delta: { content?: string }; logprobs: { content: ChatLogprob[] } | null }[])[0];
    if (!choice) continue;
    content += choice.delta.content ?? '';
    if (choice.logprobs) entries.push(...choice.logprobs.content);
  }
  expect(content).toBe(expectedText);
  expect(entries).toEqual(c.logprobs.content);
  expect(Buffer.from(entries.flatMap((e) => e.bytes))).toEqual(Buffer.from(content, 'utf8'));
});
