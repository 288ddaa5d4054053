/**
 * A ~4 MB text prompt beside a running stream, over real HTTP on 127.0.0.1: the prompt is
 * tokenized in slices between event-loop turns and only up to the first token past the server's
 * limit, so the stream keeps flowing, /health answers, and the prompt gets its 422 quickly.
 * Bounds are relative to a baseline taken in the same test, with generous margins (the box is a
 * noisy 2-core machine); before slicing, the stream stalled for the whole tokenization (seconds).
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { start, type Running } from './helpers';

const NAME = 'brown-mamba-s';
const SLICE = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'brown-heldout-slice.txt'), 'utf8');

let model: MambaModel;
let s: Running;

beforeAll(async () => {
  model = await loadModel();
  s = await start({ model, modelName: NAME, maxTokens: 100000, bodyLimit: 8 << 20, maxPromptTokens: 65536 });
});
afterAll(async () => {
  await s.server.shutdown(0);
  model.dispose();
});

/** A streaming completion that records when each network chunk arrives; stop() cancels it. */
function stream(url: string) {
  const ac = new AbortController();
  const arrivals: number[] = [];
  const body = JSON.stringify({
    model: NAME,
    prompt: 'The jury said',
    max_tokens: 100000,
    temperature: 0,
    stream: true,
    logit_bias: { '0': -100 }, // no end-of-text: the stream runs until cancelled
  });
  const done = (async () => {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
      signal: ac.signal,
    });
    const reader = r.body!.getReader();
    for (;;) {
      const { done } = await reader.read();
      if (done) return;
      arrivals.push(performance.now());
    }
  })().catch((e: unknown) => {
    if (!ac.signal.aborted) throw e;
  });
  return { arrivals, stop: () => (ac.abort(), done) };
}

/** Largest gap between consecutive arrivals within [t0, t1] (the edges count as arrivals). */
function maxGap(arrivals: number[], t0: number, t1: number): number {
  const ts = [t0, ...arrivals.filter((t) => t > t0 && t < t1), t1];
  let max = 0;
  for (let i = 1; i < ts.length; i++) max = Math.max(max, ts[i] - ts[i - 1]);
  return max;
}

/**
 * /health, one request after another (5 ms apart) until `until` settles (at most 400 requests):
 * the time from one answer to the next. Client and server share this process's event loop, so a
 * stall between two requests counts too, not only one inside a request.
 */
async function pollHealth(url: string, until: Promise<unknown>): Promise<number[]> {
  let settled = false;
  void until.finally(() => (settled = true)).catch(() => undefined);
  const out: number[] = [];
  let last = performance.now();
  while (!settled && out.length < 400) {
    const r = await fetch(`${url}/health`);
    expect(r.status).toBe(200);
    await r.text();
    const now = performance.now();
    out.push(now - last);
    last = now;
    await new Promise((res) => setTimeout(res, 5));
  }
  return out;
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

test('a 4 MB prompt gets its 422 quickly while a stream keeps flowing and /health answers', async () => {
  let big = '';
  while (big.length < 4_000_000) big += SLICE;
  const bigBody = JSON.stringify({ model: NAME, prompt: big, max_tokens: 4 });
  expect(bigBody.length).toBeLessThan(8 << 20);

  const st = stream(s.url);
  try {
    // wait for the stream to flow, then a baseline: 1.5 s of the stream and /health alone
    const t = performance.now();
    while (st.arrivals.length < 20 && performance.now() - t < 20000) await sleep(10);
    expect(st.arrivals.length).toBeGreaterThanOrEqual(20);
    const b0 = performance.now();
    const baseHealth = await pollHealth(s.url, sleep(1500));
    const baseGap = maxGap(st.arrivals, b0, performance.now());

    const p0 = performance.now();
    const bigReq = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      body: bigBody,
      headers: { 'content-type': 'application/json' },
    }).then(async (r) => ({ status: r.status, json: (await r.json()) as { error?: { code?: string; message?: string } } }));
    const health = await pollHealth(s.url, bigReq);
    const res = await bigReq;
    const p1 = performance.now();
    const bigMs = p1 - p0;
    const gap = maxGap(st.arrivals, p0, p1);
    const arrived = st.arrivals.filter((x) => x > p0 && x < p1).length;

    // the same prompt tokenized whole, on the event loop: what the 422 used to wait for
    const w0 = performance.now();
    const wholeTokens = model.tokenizer!.encode(big).length;
    const wholeMs = performance.now() - w0;

    const fmt = (xs: number[]) => Math.max(...xs).toFixed(0);
    console.log(
      `4 MB prompt (${wholeTokens} tokens, whole encode ${wholeMs.toFixed(0)} ms): 422 after ${bigMs.toFixed(0)} ms; ` +
        `stream largest gap ${gap.toFixed(0)} ms (baseline ${baseGap.toFixed(0)} ms, ${arrived} chunks meanwhile); ` +
        `/health answers at most ${fmt(health)} ms apart over ${health.length} (baseline ${fmt(baseHealth)} ms)`,
    );
    expect(res.status).toBe(422);
    expect(res.json.error?.code).toBe('context_length_exceeded');
    expect(res.json.error?.message).toMatch(/more than 65536 tokens/);
    expect(wholeTokens).toBeGreaterThan(65536 * 10);
    // The 422 comes after ~65,536 tokens' worth of slices, not the whole text's tokenization.
    expect(bigMs).toBeLessThan(wholeMs / 3);
    // The loop stays free: gaps of a few slices plus reading and parsing the 4 MB JSON body (about
    // 100-150 ms here), not the whole tokenization (seconds).
    const bound = (base: number) => Math.max(6 * base, base + 600);
    expect(gap).toBeLessThan(bound(baseGap));
    expect(Math.max(...health)).toBeLessThan(bound(Math.max(...baseHealth)));
    expect(arrived).toBeGreaterThan(0);
  } finally {
    await st.stop();
  }
}, 120000);
