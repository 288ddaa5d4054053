/**
 * The HTTP server through the official `openai` client (and raw fetch for malformed requests), on
 * the shipped brown-mamba-s, on 127.0.0.1 with an ephemeral port.
 */
import OpenAI from 'openai';

import { loadChatTemplate } from '../../lib/checkpoint/chat_template';
import { DEFAULT_MODEL_DIR, loadModel, randomModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { generate } from '../../lib/generate/generate';
import { isOpenAIError, metrics, post, start as startServer, until, type Running as Server } from './helpers';

type Running = Server & { client: OpenAI };
/** A server on 127.0.0.1:0 and an official client for it (no retries). */
async function start(opts: Parameters<typeof startServer>[0], apiKey = 'unused'): Promise<Running> {
  const r = await startServer(opts);
  return { ...r, client: new OpenAI({ baseURL: `${r.url}/v1`, apiKey, maxRetries: 0, timeout: 30000 }) };
}

let model: MambaModel;
let s: Running;
const NAME = 'brown-mamba-s';

beforeAll(async () => {
  model = await loadModel();
  s = await start({
    model,
    modelName: NAME,
    chatTemplate: loadChatTemplate(DEFAULT_MODEL_DIR),
    maxRunning: 32,
    cacheMb: 64,
    maxTokens: 100000,
    bodyLimit: 256 << 10,
    maxPromptTokens: 4096,
  });
});
afterAll(async () => {
  await s.server.shutdown(0);
  model.dispose();
});

async function greedyText(prompt: string, maxTokens: number): Promise<string> {
  let t = '';
  for await (const p of generate(model, prompt, { maxTokens, temperature: 0 })) t += p.text;
  return t;
}

describe('completions', () => {
  test('non-streaming: OpenAI shape, greedy text equals generate()', async () => {
    const r = await s.client.completions.create({ model: NAME, prompt: 'The jury said', max_tokens: 12, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.model).toBe(NAME);
    expect(typeof r.created).toBe('number');
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].text).toBe(await greedyText('The jury said', 12));
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage).toMatchObject({
      prompt_tokens: model.tokenizer!.encode('The jury said').length,
      completion_tokens: 12,
      total_tokens: expect.any(Number),
    });
  });

  test('streaming with include_usage: the pieces concatenate to the non-streamed text', async () => {
    const stream = await s.client.completions.create({
      model: NAME,
      prompt: 'It was a cold morning',
      max_tokens: 20,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '',
      finish: string | null = null,
      usage: OpenAI.CompletionUsage | null | undefined,
      chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe('text_completion');
      if (c.choices.length) {
        text += c.choices[0].text;
        finish = c.choices[0].finish_reason ?? finish;
      }
      if (c.usage) usage = c.usage;
    }
    expect(chunks).toBeGreaterThan(5);
    expect(text).toBe(await greedyText('It was a cold morning', 20));
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(20);
  });

  test('n = 2 with a seed: two choices, each reproducible, choice j = seed + j alone', async () => {
    const req = { model: NAME, prompt: 'The jury said', max_tokens: 16, temperature: 1, n: 2, seed: 42 };
    const a = await s.client.completions.create(req);
    const b = await s.client.completions.create(req);
    expect(a.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text));
    expect(a.choices[0].text).not.toBe(a.choices[1].text);
    const one = await s.client.completions.create({ ...req, n: 1, seed: 43 });
    expect(one.choices[0].text).toBe(a.choices[1].text);
    const other = await s.client.completions.create({ ...req, seed: 7 });
    expect(other.choices[0].text).not.toBe(a.choices[0].text);
    expect(a.usage?.completion_tokens).toBe(32);
  });

  test('stop strings end the text before the stop string (finish_reason stop)', async () => {
    const full = (await s.client.completions.create({ model: NAME, prompt: 'The jury said', max_tokens: 24, temperature: 0 }))
      .choices[0].text;
    const stop = full.slice(8, 11);
    const r = await s.client.completions.create({
      model: NAME,
      prompt: 'The jury said',
      max_tokens: 24,
      temperature: 0,
      stop: [stop, 'zzzz'],
    });
    expect(r.choices[0].text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.choices[0].finish_reason).toBe('stop');
  });

  test('logprobs: one entry per token, top n, token logprob <= 0; penalties and logit_bias act', async () => {
    const r = await s.client.completions.create({
      model: NAME,
      prompt: 'The jury said',
      max_tokens: 6,
      temperature: 0,
      logprobs: 3,
    });
    const lp = r.choices[0].logprobs!;
    expect(lp.tokens).toHaveLength(6);
    expect(lp.token_logprobs!.every((x) => x <= 0)).toBe(true);
    expect(lp.top_logprobs!.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 3)).toBe(true);
    expect(lp.tokens!.join('')).toBe(r.choices[0].text);
    // greedy: the chosen token is the most likely
    lp.top_logprobs!.forEach((t, i) => expect(Math.max(...Object.values(t))).toBeCloseTo(lp.token_logprobs![i], 5));
    const ids = model.tokenizer!.encode(r.choices[0].text);
    const banned = await s.client.completions.create({
      model: NAME,
      prompt: 'The jury said',
      max_tokens: 6,
      temperature: 0,
      logit_bias: { [String(ids[0])]: -100 },
    });
    expect(model.tokenizer!.encode(banned.choices[0].text)[0]).not.toBe(ids[0]);
    const pen = await s.client.completions.create({
      model: NAME,
      prompt: 'the the the the',
      max_tokens: 12,
      temperature: 0,
      frequency_penalty: 2,
      presence_penalty: 2,
    });
    const pids = model.tokenizer!.encode(pen.choices[0].text);
    expect(new Set(pids).size).toBeGreaterThan(pids.length / 2);
  });

  test('token-id prompts and several prompts', async () => {
    const ids = model.tokenizer!.encode('The jury said');
    const r = await s.client.completions.create({
      model: NAME,
      prompt: [ids, model.tokenizer!.encode('He')],
      max_tokens: 5,
      temperature: 0,
    });
    expect(r.choices).toHaveLength(2);
    expect(r.choices[0].text).toBe(await greedyText('The jury said', 5));
    expect(r.choices[1].text).toBe(await greedyText('He', 5));
  });

  test('temperature-0 outputs of 16 concurrent requests equal each request alone', async () => {
    const prompts = Array.from(
      { length: 16 },
      (_, i) =>
        ['The jury said', 'He was', 'In the city of', 'She'][i % 4] + ' '.repeat(i % 3) + ['', ' a', ' the', ' that'][i >> 2],
    );
    const alone: string[] = [];
    for (const p of prompts)
      alone.push((await s.client.completions.create({ model: NAME, prompt: p, max_tokens: 16, temperature: 0 })).choices[0].text);
    const together = await Promise.all(
      prompts.map((p) => s.client.completions.create({ model: NAME, prompt: p, max_tokens: 16, temperature: 0 })),
    );
    expect(together.map((r) => r.choices[0].text)).toEqual(alone);
  });
});

describe('chat', () => {
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Tell me about the jury.' },
  ];

  test('non-streaming and streaming agree; shapes as the client expects', async () => {
    const r = await s.client.chat.completions.create({ model: NAME, messages, max_tokens: 12, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices[0].message.role).toBe('assistant');
    const prompt = 'System: Be brief.\nUser: Tell me about the jury.\nAssistant:'; // the plain template
    expect(r.choices[0].message.content).toBe(await greedyText(prompt, 12));
    expect(r.usage?.prompt_tokens).toBe(model.tokenizer!.encode(prompt).length);
    const stream = await s.client.chat.completions.create({
      model: NAME,
      messages,
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '',
      role: string | undefined,
      finish: string | null = null,
      usage: unknown;
    for await (const c of stream) {
      expect(c.object).toBe('chat.completion.chunk');
      if (c.choices.length) {
        role ??= c.choices[0].delta.role;
        text += c.choices[0].delta.content ?? '';
        finish = c.choices[0].finish_reason ?? finish;
      }
      if (c.usage) usage = c.usage;
    }
    expect(role).toBe('assistant');
    expect(text).toBe(r.choices[0].message.content);
    expect(finish).toBe('length');
    expect(usage).toMatchObject({ completion_tokens: 12 });
  });

  test('logprobs with top_logprobs, n = 2, content parts', async () => {
    const r = await s.client.chat.completions.create({
      model: NAME,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }],
      max_tokens: 5,
      temperature: 0.7,
      seed: 1,
      n: 2,
      logprobs: true,
      top_logprobs: 2,
    });
    expect(r.choices).toHaveLength(2);
    for (const c of r.choices) {
      expect(c.logprobs!.content).toHaveLength(5);
      for (const t of c.logprobs!.content!) {
        expect(t.top_logprobs.length).toBeLessThanOrEqual(2);
        expect(t.logprob).toBeLessThanOrEqual(0);
      }
    }
  });
});

describe('errors', () => {
  const body = (o: object) => JSON.stringify({ model: NAME, prompt: 'x', max_tokens: 2, ...o });
  const isError = (j: unknown) => expect(isOpenAIError(j)).toBe(true);

  test('400: malformed JSON, bad parameters (named), missing fields', async () => {
    const bad = await post(s.url, '/v1/completions', '{"model": ');
    expect(bad.status).toBe(400);
    isError(bad.json);
    for (const [o, param] of [
      [{ temperature: 101 }, 'temperature'], // above LIMITS.temperature, the bound generate() has too
      [{ top_p: 0 }, 'top_p'],
      [{ n: 0 }, 'n'],
      [{ max_tokens: -1 }, 'max_tokens'],
      [{ stop: [1] }, 'stop'],
      [{ logit_bias: { abc: 1 } }, 'logit_bias'],
      [{ seed: 1.5 }, 'seed'],
      [{ prompt: 5 }, 'prompt'],
      [{ prompt: [999999] }, 'prompt'],
      [{ simba: { flops: 7 } }, 'simba'],
      [{ presence_penalty: 'a' }, 'presence_penalty'],
      [{ model: 5 }, 'model'],
    ] as const) {
      const r = await post(s.url, '/v1/completions', body(o));
      expect({ o, status: r.status, param: r.json.error?.param }).toEqual({ o, status: 400, param });
      isError(r.json);
    }
    const chat = await post(
      s.url,
      '/v1/chat/completions',
      JSON.stringify({ model: NAME, messages: [{ role: 'wizard', content: 'x' }] }),
    );
    expect(chat.status).toBe(400);
    expect(chat.json.error?.param).toBe('messages[0].role');
    // through the client: a BadRequestError naming the parameter
    await expect(s.client.completions.create({ model: NAME, prompt: 'x', temperature: -1 })).rejects.toMatchObject({
      status: 400,
      param: 'temperature',
    });
  });

  test('404: unknown route and unknown model; 413: body too large; 422: prompt too long', async () => {
    const r = await fetch(`${s.url}/v1/nothing`);
    expect(r.status).toBe(404);
    isError(await r.json());
    await expect(s.client.completions.create({ model: 'gpt-4', prompt: 'x' })).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
    });
    const big = await post(s.url, '/v1/completions', body({ prompt: 'word '.repeat(60000) }));
    expect(big.status).toBe(413);
    isError(big.json);
    const long = await post(s.url, '/v1/completions', body({ prompt: Array.from({ length: 5000 }, (_, i) => i % 4000) }));
    expect(long.status).toBe(422);
    expect(long.json.error?.code).toBe('context_length_exceeded');
  });

  test('401: missing or wrong bearer key; the right key works; /health needs none', async () => {
    const k = await start({ model, modelName: NAME, apiKey: 'sekret-key' }, 'sekret-key');
    try {
      expect((await k.client.completions.create({ model: NAME, prompt: 'The', max_tokens: 2 })).choices).toHaveLength(1);
      const wrong = new OpenAI({ baseURL: `${k.url}/v1`, apiKey: 'sekret-kez', maxRetries: 0 });
      await expect(wrong.completions.create({ model: NAME, prompt: 'x' })).rejects.toMatchObject({
        status: 401,
        code: 'invalid_api_key',
      });
      const none = await post(k.url, '/v1/completions', body({}));
      expect(none.status).toBe(401);
      isError(none.json);
      expect((await fetch(`${k.url}/health`)).status).toBe(200);
    } finally {
      await k.server.shutdown(0);
    }
  });

  test('429 with Retry-After when the queue is full; a retrying client gets through', async () => {
    const q = await start({ model, modelName: NAME, maxRunning: 1, maxQueue: 0, retryAfter: 1 });
    try {
      const first = q.client.completions.create({
        model: NAME,
        prompt: 'The',
        max_tokens: 40,
        temperature: 0,
        logit_bias: { 0: -100 },
      });
      await until(() => q.server.scheduler!.runningCount === 1);
      const err = await q.client.completions.create({ model: NAME, prompt: 'The', max_tokens: 2 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toBe('1');
      expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('queue_full');
      const retrying = new OpenAI({ baseURL: `${q.url}/v1`, apiKey: 'x', maxRetries: 5 });
      const ok = await retrying.completions.create({ model: NAME, prompt: 'The', max_tokens: 2 });
      expect(ok.choices).toHaveLength(1);
      expect((await first).usage?.completion_tokens).toBe(40);
    } finally {
      await q.server.shutdown(0);
    }
  });

  test('503 with an OpenAI error while the model loads, then 200', async () => {
    let resolve!: (m: MambaModel) => void;
    const l = await start({
      model: new Promise<MambaModel>((r) => {
        resolve = r;
      }),
      modelName: NAME,
    });
    try {
      const h = await fetch(`${l.url}/health`);
      expect(h.status).toBe(503);
      expect(((await h.json()) as { error: { code: string } }).error.code).toBe('model_loading');
      await expect(l.client.completions.create({ model: NAME, prompt: 'x' })).rejects.toMatchObject({ status: 503 });
      resolve(model);
      await l.server.ready;
      expect((await fetch(`${l.url}/health`)).status).toBe(200);
    } finally {
      await l.server.shutdown(0);
    }
  });
});

describe('cancellation, metrics, models', () => {
  test('aborting a stream mid-way frees its slot (metrics show it)', async () => {
    const m0 = await metrics(s.url);
    const cancelled0 = m0.get('simba_request_success_total{outcome="cancelled",finished_reason="none"}') ?? 0;
    const stream = await s.client.completions.create({
      model: NAME,
      prompt: 'The jury',
      max_tokens: 90000,
      temperature: 0.8,
      stream: true,
    });
    let n = 0;
    for await (const c of stream) {
      void c;
      if (++n === 5) break;
    } // break aborts the request
    expect(await until(async () => (await metrics(s.url)).get('simba_num_requests_running') === 0)).toBe(true);
    const m1 = await metrics(s.url);
    expect(m1.get('simba_request_success_total{outcome="cancelled",finished_reason="none"}')).toBe(cancelled0 + 1);
    expect(s.server.scheduler!.slotsUsed).toBe(0);
  });

  test('/metrics parses and counts tokens, latencies, batch sizes and cache queries; /v1/models lists the model', async () => {
    await s.client.completions.create({ model: NAME, prompt: 'The jury said that the', max_tokens: 4 });
    const m = await metrics(s.url);
    for (const name of [
      'simba_num_requests_running',
      'simba_num_requests_waiting',
      'simba_prompt_tokens_total',
      'simba_generation_tokens_total',
      'simba_time_to_first_token_seconds_count',
      'simba_inter_token_latency_seconds_count',
      'simba_e2e_request_latency_seconds_count',
      'simba_request_queue_time_seconds_count',
      'simba_batch_size_count',
      'simba_prefix_cache_queries_total',
      'simba_prefix_cache_hits_total',
    ])
      expect({ name, has: m.has(name) }).toEqual({ name, has: true });
    expect(m.get('simba_generation_tokens_total')).toBeGreaterThan(0);
    expect(m.get('simba_prefix_cache_queries_total')).toBeGreaterThan(0);
    const models = await s.client.models.list();
    expect(models.data.map((x) => x.id)).toEqual([NAME]);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
  });
});

test('random-weight models whose tokens are not valid UTF-8 stream without crashing', async () => {
  const cfg = { ...model.config };
  const rnd = await randomModel(cfg, { seed: 3 });
  const r = await start({ model: rnd, modelName: 'rnd', tokenizer: model.tokenizer });
  try {
    for (const seed of [1, 2, 3]) {
      const stream = await r.client.completions.create({
        model: 'rnd',
        prompt: 'The',
        max_tokens: 48,
        temperature: 1.5,
        seed,
        stream: true,
        logprobs: 1,
      });
      let text = '',
        n = 0;
      for await (const c of stream) {
        if (c.choices.length) {
          text += c.choices[0].text;
          n++;
        }
      }
      expect(n).toBeGreaterThan(0);
      expect(typeof text).toBe('string');
      const chat = await r.client.chat.completions.create({
        model: 'rnd',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 16,
        seed,
        temperature: 2,
      });
      expect(typeof chat.choices[0].message.content).toBe('string');
    }
  } finally {
    await r.server.shutdown(0);
    rnd.dispose();
  }
});
