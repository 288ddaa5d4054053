/**
 * POST /v1/responses, GET and DELETE /v1/responses/{id}: through the official `openai` client
 * (streaming and not), strict request checks, and a 5-turn conversation by previous_response_id
 * alternating between two replicas on one Redis, surviving a restart of both, that gives the same
 * temperature-0 text as one process prefilling the whole token history every turn.
 */
import Redis from 'ioredis';
import OpenAI from 'openai';

import { loadChatTemplate, type ChatMessage } from '../../lib/checkpoint/chat_template';
import { DEFAULT_MODEL_DIR } from '../../lib/engine/load';
import { generate } from '../../lib/generate/generate';
import { continuationText, firstTurnText } from '../../lib/serve/responses/conversation';
import { isOpenAIError, metrics, post, start, until, type Running, modelAndRedis } from './helpers';

const NAME = 'brown-mamba-s';
const template = loadChatTemplate(DEFAULT_MODEL_DIR);
const env = modelAndRedis();

const servers: Running[] = [];
async function server(extra: Record<string, unknown> = {}): Promise<Running & { client: OpenAI }> {
  const r = await start({ model: env.model, modelName: NAME, chatTemplate: template, log: () => undefined, ...extra });
  servers.push(r);
  await r.server.ready;
  if (extra.stateStore) expect(await until(async () => (await fetch(`${r.url}/health/ready`)).status === 200)).toBe(true);
  const apiKey = typeof extra.apiKey === 'string' ? extra.apiKey : 'none';
  return { ...r, client: new OpenAI({ baseURL: `${r.url}/v1`, apiKey, maxRetries: 0, timeout: 30000 }) };
}
async function stopAll(): Promise<void> {
  for (const r of servers.splice(0)) await r.server.shutdown(0);
}
afterEach(stopAll);

describe('the official openai client', () => {
  test('responses.create (not streamed), retrieve, delete: then 404', async () => {
    const s = await server();
    const r = await s.client.responses.create({
      model: NAME,
      input: 'The jury said',
      instructions: 'Answer briefly.',
      max_output_tokens: 10,
      temperature: 0,
    });
    expect(r.object).toBe('response');
    expect(r.id).toMatch(/^resp_/);
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.output_text.length).toBeGreaterThan(0);
    const prompt = env.model.tokenizer!.encode(
      firstTurnText(template, 'Answer briefly.', [{ role: 'user', content: 'The jury said' }]),
    );
    let want = '';
    for await (const p of generate(env.model, prompt, { maxTokens: 10, temperature: 0 })) want += p.text;
    expect(r.output_text).toBe(want);
    expect(r.usage).toMatchObject({ input_tokens: prompt.length, output_tokens: 10, total_tokens: prompt.length + 10 });
    const got = await s.client.responses.retrieve(r.id);
    expect(got.id).toBe(r.id);
    expect(got.output_text).toBe(r.output_text);
    await s.client.responses.delete(r.id);
    await expect(s.client.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404 });
    const raw = await fetch(`${s.url}/v1/responses/${r.id}`);
    expect(raw.status).toBe(404);
    expect(isOpenAIError(await raw.json())).toBe(true);
  });

  test('responses.create streamed: the event sequence the client parses, deltas joining to the text', async () => {
    const s = await server();
    const stream = await s.client.responses.create({
      model: NAME,
      input: [{ role: 'user', content: 'It was a cold morning' }],
      max_output_tokens: 16,
      temperature: 0,
      stream: true,
    });
    const types: string[] = [];
    let deltas = '';
    let final: OpenAI.Responses.Response | null = null;
    const seqs: number[] = [];
    for await (const ev of stream) {
      types.push(ev.type);
      seqs.push(ev.sequence_number);
      if (ev.type === 'response.output_text.delta') deltas += ev.delta;
      if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
    }
    const distinct = types.filter((t, i) => t !== types[i - 1]);
    expect(distinct).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      final!.status === 'completed' ? 'response.completed' : 'response.incomplete',
    ]);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(final!.output_text ?? (final!.output[0] as { content: { text: string }[] }).content[0].text).toBe(deltas);
    const nonStreamed = await s.client.responses.create({
      model: NAME,
      input: [{ role: 'user', content: 'It was a cold morning' }],
      max_output_tokens: 16,
      temperature: 0,
    });
    expect(nonStreamed.output_text).toBe(deltas);
    // stored: GET finds it
    expect((await s.client.responses.retrieve(final!.id)).status).toBe(final!.status);
  });
});

describe('checks', () => {
  test('unknown fields, bad values, unknown previous_response_id and the API key, in OpenAI error shape', async () => {
    const s = await server({ apiKey: 'k3y' });
    const auth = { authorization: 'Bearer k3y' };
    const call = (body: unknown, headers: Record<string, string> = auth) =>
      post(s.url, '/v1/responses', JSON.stringify(body), headers);
    const base = { model: NAME, input: 'Hello' };
    expect((await call(base, {})).status).toBe(401);
    expect((await fetch(`${s.url}/v1/responses/resp_x`)).status).toBe(401);
    expect((await fetch(`${s.url}/v1/responses/resp_x`, { method: 'DELETE' })).status).toBe(401);
    const cases: [unknown, number, string | null][] = [
      [{ ...base, frobnicate: 1 }, 400, 'frobnicate'],
      [{ ...base, temperature: 3 }, 400, 'temperature'],
      [{ ...base, max_output_tokens: 0 }, 400, 'max_output_tokens'],
      [{ ...base, input: [] }, 400, 'input'],
      [{ ...base, input: [{ role: 'wizard', content: 'x' }] }, 400, 'input[0].role'],
      [{ ...base, tools: [{ type: 'function' }] }, 400, 'tools'],
      [{ ...base, previous_response_id: 'resp_nope' }, 404, 'previous_response_id'],
      [{ ...base, model: 'other' }, 404, 'model'],
    ];
    for (const [body, status, param] of cases) {
      const r = await call(body);
      expect([r.status, r.json.error?.param]).toEqual([status, param]);
      expect(isOpenAIError(r.json)).toBe(true);
    }
    const ok = await call({ ...base, max_output_tokens: 2, store: false });
    expect(ok.status).toBe(200);
    // store: false is not kept
    expect((await fetch(`${s.url}/v1/responses/${ok.json.id as string}`, { headers: auth })).status).toBe(404);
  });
});

describe('a conversation over two replicas', () => {
  const questions = ['The jury said', 'What did the city say?', 'Tell me more.', 'And then?', 'Thank you.'];
  const MAX = 12;

  /** One process keeping the whole token history: each turn prefills all of it from scratch. */
  async function reference(): Promise<string[]> {
    const tok = env.model.tokenizer!;
    const history: number[] = [];
    const messages: ChatMessage[] = [];
    const out: string[] = [];
    for (let k = 0; k < questions.length; k++) {
      const turn: ChatMessage[] = [{ role: 'user', content: questions[k] }];
      history.push(...tok.encode(k === 0 ? firstTurnText(template, null, turn) : continuationText(template, messages, turn)));
      let text = '';
      for await (const p of generate(env.model, history, { maxTokens: MAX, temperature: 0 })) {
        history.push(p.token);
        text += p.text;
      }
      messages.push(...turn, { role: 'assistant', content: text });
      out.push(text);
    }
    return out;
  }

  test('5 turns by previous_response_id alternating A and B, both restarted after turn 3: the same text as the whole history in one process', async () => {
    const store = { url: env.redis.url, prefix: 'conv', timeoutMs: 2000 };
    const pair = async () => [
      await server({ stateStore: store, replicaId: 'a' }),
      await server({ stateStore: store, replicaId: 'b' }),
    ];
    let [a, b] = await pair();
    const texts: string[] = [];
    let prev: string | undefined;
    let inputTokens = 0;
    for (let k = 0; k < questions.length; k++) {
      if (k === 3) {
        await stopAll(); // both replicas go; Redis keeps the conversation
        [a, b] = await pair();
      }
      const s = k % 2 === 0 ? a : b;
      if (k === 4) {
        // the stored state of turn 4 damaged in Redis: refused (counted), the whole history is prefilled instead
        const c = new Redis(env.redis.url, { maxRetriesPerRequest: 0 });
        const key = `conv:{${a.server.fingerprint}}:r:${prev!}`;
        const state = (await c.hgetBuffer(key, 'state'))!;
        state[state.length - 8] ^= 0x20;
        await c.hset(key, 'state', state);
        c.disconnect();
      }
      const r = await s.client.responses.create({
        model: NAME,
        input: questions[k],
        previous_response_id: prev,
        max_output_tokens: MAX,
        temperature: 0,
      });
      texts.push(r.output_text);
      if (k > 0 && k < 4) {
        // the state after the previous turn was restored: only the new input (and the last output token) was prefilled
        expect(r.usage!.input_tokens_details.cached_tokens).toBeGreaterThanOrEqual(inputTokens - 1);
        expect(r.usage!.input_tokens - r.usage!.input_tokens_details.cached_tokens).toBeLessThan(30);
      }
      inputTokens = r.usage!.input_tokens + r.usage!.output_tokens;
      prev = r.id;
    }
    expect(texts).toEqual(await reference());
    expect((await metrics(a.url)).get('simba_state_tier_rejected_total{tier="redis",reason="checksum"}')).toBe(1);
    // after the restart, b restored turn 3's stored state ('initial'), not a cold prefill
    expect((await metrics(b.url)).get('simba_state_restored_total{source="initial"}')).toBe(1);
  });
});
