/**
 * The Batch API against a real redis-server: the official `openai` client's files.create /
 * batches.create / retrieve / list / cancel and files.content, results equal to single requests at
 * temperature 0, per-line errors in the error file, upload limits and malformed files as clear 4xx
 * in OpenAI's error shape, results recorded exactly once, cancel, and the API key on every route.
 */
import OpenAI, { toFile } from 'openai';

import { BatchStore } from '../../lib/serve/batch/batches';
import { parseMultipart } from '../../lib/serve/batch/multipart';
import { openBatchService, type BatchService } from '../../lib/serve/batch/service';
import { BatchWorker } from '../../lib/serve/batch/worker';
import { loadModel } from '../../lib/engine/load';
import { ApiError } from '../../lib/serve/errors';
import { startRedis, type RedisServer } from '../helpers/redis_server';
import { isOpenAIError, post, start, type Running } from '../serve/helpers';
import { completionLines, getJson, jsonl, parseJsonl, upload, waitForBatch } from './helpers';

const KEY = 'test-key';
const AUTH = { authorization: `Bearer ${KEY}` };
let redis: RedisServer;
let srv: Running;
let workerServer: Running;
let workerService: BatchService;
let worker: BatchWorker;
let client: OpenAI;

beforeAll(async () => {
  redis = await startRedis();
  srv = await start({
    model: loadModel(),
    modelName: 'm',
    apiKey: KEY,
    batch: { redis: redis.url, maxFileBytes: 64 << 10, maxFileLines: 50 },
  });
  workerServer = await start({ model: loadModel(), modelName: 'm' });
  await Promise.all([srv.server.ready, workerServer.server.ready]);
  workerService = openBatchService({ redis: redis.url });
  worker = new BatchWorker({ server: workerServer.server, service: workerService, concurrency: 8 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 20000 });
});

afterAll(async () => {
  await worker?.close();
  await workerService?.close();
  await workerServer?.server.shutdown(1000);
  await srv?.server.shutdown(1000);
  workerServer?.server.model?.dispose();
  srv?.server.model?.dispose();
  await redis?.stop();
});

/** The parts of a response body that do not vary between runs (ids and times do). */
function stable(body: Record<string, unknown>): unknown {
  return { choices: body.choices, usage: body.usage, object: body.object, model: body.model };
}

test('the openai client uploads, creates, polls and reads a batch; results equal single requests; a bad line goes to the error file', async () => {
  const lines = Array.from({ length: 5 }, (_, i) => ({
    custom_id: `chat-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'm', messages: [{ role: 'user', content: `Tell me about item ${i}` }], max_tokens: 6, temperature: 0 },
  }));
  const bad = {
    custom_id: 'bad',
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 },
  };
  const file = await client.files.create({
    file: await toFile(Buffer.from(jsonl([...lines, bad])), 'chat.jsonl'),
    purpose: 'batch',
  });
  expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'chat.jsonl', status: 'processed' });
  expect(await client.files.retrieve(file.id)).toEqual(file);
  const created = await client.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
    metadata: { job: 'nightly' },
  });
  expect(created).toMatchObject({ object: 'batch', input_file_id: file.id, metadata: { job: 'nightly' } });
  expect(['in_progress', 'finalizing', 'completed']).toContain(created.status);
  let b = created;
  for (let i = 0; i < 300 && b.status !== 'completed'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    b = await client.batches.retrieve(created.id);
  }
  expect(b.status).toBe('completed');
  expect(b.request_counts).toEqual({ total: 6, completed: 5, failed: 1 });
  for (const t of [b.in_progress_at, b.finalizing_at, b.completed_at]) expect(t).toBeGreaterThanOrEqual(b.created_at);
  const out = parseJsonl(await (await client.files.content(b.output_file_id!)).text());
  expect(out.map((o) => o.custom_id)).toEqual(lines.map((l) => l.custom_id));
  for (const [i, o] of out.entries()) {
    const single = await post(srv.url, '/v1/chat/completions', JSON.stringify(lines[i].body), AUTH);
    expect(single.status).toBe(200);
    const r = o.response as { status_code: number; body: Record<string, unknown> };
    expect(r.status_code).toBe(200);
    expect(stable(r.body)).toEqual(stable(single.json));
    expect(o.error).toBeNull();
  }
  const errs = parseJsonl(await (await client.files.content(b.error_file_id!)).text());
  expect(errs).toHaveLength(1);
  expect(errs[0]).toMatchObject({ custom_id: 'bad', response: { status_code: 400, body: { error: { param: 'max_tokens' } } } });
  expect((await client.batches.list({ limit: 100 })).data.map((x) => x.id)).toContain(b.id);
  expect(await client.files.delete(file.id)).toMatchObject({ id: file.id, deleted: true });
  await expect(client.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
});

test('upload limits and malformed files are clear 4xx in OpenAI shape', async () => {
  const good = completionLines(1, 'm')[0];
  const cases: [string, string | Buffer, Record<string, string>, number, string, RegExp][] = [
    ['too large', 'x'.repeat((64 << 10) + 1), { purpose: 'batch' }, 413, 'file_too_large', /at most 65536/],
    ['too many lines', jsonl(completionLines(51, 'm')), { purpose: 'batch' }, 400, 'too_many_lines', /more than 50/],
    ['not JSON', `${JSON.stringify(good)}\n{oops\n`, { purpose: 'batch' }, 400, 'invalid_batch_line', /line 2 is not valid JSON/],
    [
      'no custom_id',
      jsonl([{ ...good, custom_id: '' }]),
      { purpose: 'batch' },
      400,
      'invalid_batch_line',
      /line 1 needs custom_id/,
    ],
    ['repeated custom_id', jsonl([good, good]), { purpose: 'batch' }, 400, 'invalid_batch_line', /line 2 repeats custom_id/],
    ['GET', jsonl([{ ...good, method: 'GET' }]), { purpose: 'batch' }, 400, 'invalid_batch_line', /method 'POST'/],
    ['url', jsonl([{ ...good, url: '/v1/embeddings' }]), { purpose: 'batch' }, 400, 'invalid_batch_line', /needs url: one of/],
    [
      'stream',
      jsonl([{ ...good, body: { ...good.body, stream: true } }]),
      { purpose: 'batch' },
      400,
      'invalid_batch_line',
      /stream/,
    ],
    ['no model', jsonl([{ ...good, body: { prompt: 'x' } }]), { purpose: 'batch' }, 400, 'invalid_batch_line', /body\.model/],
    ['extra field', jsonl([{ ...good, extra: 1 }]), { purpose: 'batch' }, 400, 'invalid_batch_line', /unknown field 'extra'/],
    ['not UTF-8', Buffer.from([0xff, 0xfe, 0x0a]), { purpose: 'batch' }, 400, 'invalid_file_encoding', /UTF-8/],
    ['empty', '\n\n', { purpose: 'batch' }, 400, 'empty_file', /no requests/],
    ['purpose', jsonl([good]), { purpose: 'fine-tune' }, 400, 'invalid_value', /'purpose' must be 'batch'/],
  ];
  for (const [what, content, fields, status, code, message] of cases) {
    const r = await upload(srv.url, content, fields, AUTH);
    expect({ what, status: r.status, code: r.json.error?.code }).toEqual({ what, status, code });
    expect(r.json.error?.message).toMatch(message);
    expect(isOpenAIError(r.json)).toBe(true);
  }
  // many bad lines: the first five are named, and the count
  const many = await upload(srv.url, Array.from({ length: 8 }, () => '[1]').join('\n'), { purpose: 'batch' }, AUTH);
  expect(many.json.error?.message).toMatch(/^the file has 8 invalid lines: line 1 is not a JSON object; .*line 5 .*; \.\.\.$/);
  // not multipart, a broken multipart body, no file part
  const asJson = await post(srv.url, '/v1/files', JSON.stringify({ purpose: 'batch' }), AUTH);
  expect([asJson.status, asJson.json.error?.code]).toEqual([400, 'invalid_body']);
  const broken = await post(srv.url, '/v1/files', 'garbage', { ...AUTH, 'content-type': 'multipart/form-data; boundary=zz' });
  expect([broken.status, broken.json.error?.code]).toEqual([400, 'invalid_multipart']);
  const noFile = await fetch(`${srv.url}/v1/files`, {
    method: 'POST',
    body: new URLSearchParams({ purpose: 'batch' }),
    headers: AUTH,
  });
  expect(noFile.status).toBe(415);
  const form = new FormData();
  form.append('purpose', 'batch');
  const r = await fetch(`${srv.url}/v1/files`, { method: 'POST', body: form, headers: AUTH });
  expect([r.status, ((await r.json()) as { error: { code: string } }).error.code]).toEqual([400, 'missing_file']);
});

test('the API key guards every batch route; a server without Redis says the Batch API is off', async () => {
  for (const [method, path] of [
    ['POST', '/v1/files'],
    ['GET', '/v1/files/file-000000000000000000000000'],
    ['GET', '/v1/files/file-000000000000000000000000/content'],
    ['DELETE', '/v1/files/file-000000000000000000000000'],
    ['POST', '/v1/batches'],
    ['GET', '/v1/batches'],
    ['GET', '/v1/batches/batch_000000000000000000000000'],
    ['POST', '/v1/batches/batch_000000000000000000000000/cancel'],
  ]) {
    const r = await fetch(`${srv.url}${path}`, { method });
    expect({ path, status: r.status }).toEqual({ path, status: 401 });
  }
  const off = await start({ model: loadModel(), modelName: 'm' });
  try {
    const r = await getJson(off.url, '/v1/batches');
    expect([r.status, r.json.error?.code]).toEqual([404, 'batch_disabled']);
    expect(isOpenAIError(r.json)).toBe(true);
  } finally {
    await off.server.shutdown(1000);
    off.server.model?.dispose();
  }
});

test('batches.create refuses bad parameters; a line naming another endpoint fails the batch with the line', async () => {
  const file = await client.files.create({
    file: await toFile(Buffer.from(jsonl(completionLines(3, 'm'))), 'a.jsonl'),
    purpose: 'batch',
  });
  const create = (extra: Record<string, unknown>) =>
    post(
      srv.url,
      '/v1/batches',
      JSON.stringify({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h', ...extra }),
      AUTH,
    );
  const cases: [Record<string, unknown>, number, string | null][] = [
    [{ input_file_id: 'file-000000000000000000000000' }, 404, 'input_file_id'],
    [{ input_file_id: undefined }, 400, 'input_file_id'],
    [{ endpoint: '/v1/embeddings' }, 400, 'endpoint'],
    [{ completion_window: '1h' }, 400, 'completion_window'],
    [{ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 400, 'metadata'],
    [{ metadata: { k: 5 } }, 400, 'metadata'],
  ];
  for (const [extra, status, param] of cases) {
    const r = await create(extra);
    expect({ extra, status: r.status, param: r.json.error?.param }).toEqual({ extra, status, param });
    expect(isOpenAIError(r.json)).toBe(true);
  }
  const failed = await create({ endpoint: '/v1/chat/completions' });
  expect(failed.status).toBe(200);
  expect(failed.json).toMatchObject({ status: 'failed', request_counts: { total: 3, completed: 0, failed: 0 } });
  const errors = (failed.json.errors as { data: { line: number; code: string }[] }).data;
  expect(errors.map((e) => [e.line, e.code])).toEqual([
    [1, 'mismatched_endpoint'],
    [2, 'mismatched_endpoint'],
    [3, 'mismatched_endpoint'],
  ]);
  expect((failed.json as { failed_at: number | null }).failed_at).not.toBeNull();
});

test('cancel drops the waiting requests (no worker on this prefix): cancelled, nothing ran; cancelling a finished batch is a 409', async () => {
  const solo = await start({ model: loadModel(), modelName: 'm', batch: { redis: redis.url, prefix: 'noworker' } });
  try {
    const up = await upload(solo.url, jsonl(completionLines(20, 'm')));
    const b = await post(
      solo.url,
      '/v1/batches',
      JSON.stringify({ input_file_id: up.json.id, endpoint: '/v1/completions', completion_window: '24h' }),
    );
    expect(b.json.status).toBe('in_progress');
    const c = await post(solo.url, `/v1/batches/${b.json.id as string}/cancel`, '');
    expect(c.status).toBe(200);
    expect(c.json).toMatchObject({
      status: 'cancelled',
      request_counts: { total: 20, completed: 0, failed: 0 },
      output_file_id: null,
    });
    expect(c.json.cancelling_at).not.toBeNull();
    const again = await post(solo.url, `/v1/batches/${b.json.id as string}/cancel`, '');
    expect(again.json.status).toBe('cancelled');
    const missing = await post(solo.url, '/v1/batches/batch_000000000000000000000000/cancel', '');
    expect([missing.status, missing.json.error?.code]).toEqual([404, 'batch_not_found']);
  } finally {
    await solo.server.shutdown(1000);
    solo.server.model?.dispose();
  }
  const done = await client.batches.create({
    input_file_id: (
      await client.files.create({ file: await toFile(Buffer.from(jsonl(completionLines(2, 'm'))), 'b.jsonl'), purpose: 'batch' })
    ).id,
    endpoint: '/v1/completions',
    completion_window: '24h',
  });
  expect((await waitForBatch(srv.url, done.id, ['completed'], 30000, AUTH)).status).toBe('completed');
  await expect(client.batches.cancel(done.id)).rejects.toMatchObject({ status: 409 });
});

test('a result is recorded once per line however often it arrives; finalize commits once', async () => {
  const svc = openBatchService({ redis: redis.url, prefix: 'unit' });
  try {
    const lines = completionLines(2, 'm').map((l) => ({ customId: l.custom_id, url: l.url, text: JSON.stringify(l) }));
    const b = await svc.batches.create({
      inputFileId: 'file-000000000000000000000000',
      endpoint: '/v1/completions',
      metadata: null,
      lines,
    });
    expect(await svc.batches.record(b.id, 0, 'o', '{"first":1}')).toBe(0);
    expect(await svc.batches.record(b.id, 0, 'o', '{"second":1}')).toBe(0);
    expect((await svc.batches.get(b.id))!.request_counts).toEqual({ total: 2, completed: 1, failed: 0 });
    expect(await svc.batches.record(b.id, 1, 'e', '{"err":1}')).toBe(1);
    expect((await svc.batches.get(b.id))!.status).toBe('finalizing');
    const [a, c] = await Promise.all([svc.batches.finalize(b.id), svc.batches.finalize(b.id)]);
    expect([a, c].filter(Boolean)).toHaveLength(1);
    const done = (await svc.batches.get(b.id))!;
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 2, completed: 1, failed: 1 } });
    expect((await svc.files.content(done.output_file_id!))!.toString()).toBe('{"first":1}\n');
    expect((await svc.files.content(done.error_file_id!))!.toString()).toBe('{"err":1}\n');
    // a late duplicate (a recovered job of a dead worker) changes nothing
    expect(await svc.batches.record(b.id, 0, 'o', '{"late":1}')).toBe(-1);
    expect((await svc.batches.get(b.id))!.request_counts.completed).toBe(1);
    expect(BatchStore.jobId(b.id, 7)).toBe(`${b.id}.7`);
  } finally {
    await svc.close();
  }
});

test('a cancel that arrives while the batch is validating ends it cancelled: no job queued, the input dropped', async () => {
  const svc = openBatchService({ redis: redis.url, prefix: 'race' });
  try {
    const lines = completionLines(3, 'm').map((l) => ({ customId: l.custom_id, url: l.url, text: JSON.stringify(l) }));
    // the cancel lands just before create() stores the input lines (the batch is validating then)
    const hset = svc.redis.hset.bind(svc.redis) as (...a: unknown[]) => Promise<number>;
    let cancelled: Promise<unknown> | null = null;
    const before: unknown[] = [];
    jest.spyOn(svc.redis, 'hset').mockImplementation(((key: string, ...rest: unknown[]) => {
      if (cancelled === null && key.endsWith(':input')) {
        const id = /:batch:(batch_[0-9a-f]+):input$/.exec(key)![1];
        cancelled = svc.batches.get(id).then(async (b) => {
          before.push(b!.status);
          before.push(await svc.batches.cancel(id));
        });
        return cancelled.then(() => hset(key, ...rest));
      }
      return hset(key, ...rest);
    }) as never);
    const b = await svc.batches.create({
      inputFileId: 'file-000000000000000000000000',
      endpoint: '/v1/completions',
      metadata: null,
      lines,
    });
    expect(before).toEqual(['validating', 'validating']);
    expect(b).toMatchObject({ status: 'cancelled', in_progress_at: null, request_counts: { total: 3, completed: 0, failed: 0 } });
    expect(b.cancelling_at).not.toBeNull();
    expect(b.cancelled_at).not.toBeNull();
    expect(await svc.batches.queue.getJob(BatchStore.jobId(b.id, 0))).toBeUndefined();
    expect(await svc.batches.queue.count()).toBe(0);
    expect(await svc.redis.exists(`race:batch:${b.id}:input`)).toBe(0);
    expect(await svc.batches.cancel(b.id)).toBe('cancelled');
    expect((await svc.batches.get(b.id))!.status).toBe('cancelled');
  } finally {
    jest.restoreAllMocks();
    await svc.close();
  }
});

test('a batch past its completion window expires: the requests not yet run go to the error file as batch_expired', async () => {
  const svc = openBatchService({ redis: redis.url, prefix: 'expiry' });
  let w: BatchWorker | null = null;
  try {
    const lines = completionLines(4, 'm').map((l) => ({ customId: l.custom_id, url: l.url, text: JSON.stringify(l) }));
    const b = await svc.batches.create({
      inputFileId: 'file-000000000000000000000000',
      endpoint: '/v1/completions',
      metadata: null,
      lines,
    });
    expect(b.expires_at - b.created_at).toBe(86400);
    // lines 0 and 1 ran before the window ended; then it ends (no worker had taken the others)
    expect(await svc.batches.record(b.id, 0, 'o', '{"custom_id":"req-0"}')).toBe(0);
    expect(await svc.batches.record(b.id, 1, 'e', '{"custom_id":"req-1"}')).toBe(0);
    const key = `expiry:batch:${b.id}`;
    const meta = JSON.parse((await svc.redis.hget(key, 'meta'))!) as { expires_at: number };
    await svc.redis.hset(key, 'meta', JSON.stringify({ ...meta, expires_at: Math.floor(Date.now() / 1000) - 1 }));
    const ticks0 = workerServer.server.scheduler!.counters.ticks;
    w = new BatchWorker({ server: workerServer.server, service: svc, concurrency: 4 });
    let done = (await svc.batches.get(b.id))!;
    for (let i = 0; i < 300 && done.status !== 'expired'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      done = (await svc.batches.get(b.id))!;
    }
    expect(done).toMatchObject({ status: 'expired', completed_at: null, request_counts: { total: 4, completed: 1, failed: 1 } });
    expect(done.expired_at).not.toBeNull();
    // nothing ran after the window: the worker's scheduler did not step; the input was dropped
    expect(workerServer.server.scheduler!.counters.ticks).toBe(ticks0);
    expect(await svc.redis.exists(`${key}:input`)).toBe(0);
    expect((await svc.files.content(done.output_file_id!))!.toString()).toBe('{"custom_id":"req-0"}\n');
    const errors = parseJsonl((await svc.files.content(done.error_file_id!))!.toString());
    expect(errors[0]).toEqual({ custom_id: 'req-1' });
    expect(errors.slice(1).map((e) => [e.custom_id, e.response, (e.error as { code: string }).code])).toEqual([
      ['req-2', null, 'batch_expired'],
      ['req-3', null, 'batch_expired'],
    ]);
    // an expired batch is final: cancelling it changes nothing
    expect(await svc.batches.cancel(b.id)).toBe('expired');
  } finally {
    await w?.close();
    await svc.close();
  }
});

test('multipart bodies: fields and files; malformed ones are 400 naming the problem', () => {
  const body = Buffer.from(
    '--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n' +
      '--b\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n{"a":1}\r\n\r\n--b--\r\n',
  );
  const form = parseMultipart(body, 'multipart/form-data; boundary=b');
  expect(form.fields.get('purpose')).toBe('batch');
  expect(form.files.get('file')).toEqual({ filename: 'x.jsonl', data: Buffer.from('{"a":1}\r\n') });
  const bad: [Buffer, string | undefined, RegExp][] = [
    [body, 'multipart/form-data', /no boundary/],
    [body, 'multipart/form-data; boundary=c', /never occurs/],
    [
      Buffer.from('--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nunterminated'),
      'multipart/form-data; boundary=b',
      /ends before/,
    ],
    [Buffer.from('--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--'), 'multipart/form-data; boundary=b', /Content-Disposition/],
    [Buffer.from('--bXX'), 'multipart/form-data; boundary=b', /line break/],
    [Buffer.from('--b\r\n' + 'x'.repeat(9000)), 'multipart/form-data; boundary=b', /unterminated or too long/],
  ];
  for (const [b, ct, why] of bad) {
    let err: unknown = null;
    try {
      parseMultipart(b, ct);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    expect((err as ApiError).message).toMatch(why);
  }
  const parts =
    Array.from({ length: 17 }, (_, i) => `--b\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nv\r\n`).join('') + '--b--';
  expect(() => parseMultipart(Buffer.from(parts), 'multipart/form-data; boundary=b')).toThrow(/more than 16 parts/);
});

test('a batch of /v1/responses requests: each output body is the response a single request gets', async () => {
  const lines = Array.from({ length: 3 }, (_, i) => ({
    custom_id: `resp-${i}`,
    method: 'POST',
    url: '/v1/responses',
    body: { model: 'm', input: `Tell me about item ${i}`, max_output_tokens: 6, temperature: 0, store: false },
  }));
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), 'resp.jsonl'), purpose: 'batch' });
  const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' });
  const b = await waitForBatch(srv.url, created.id, ['completed', 'failed'], 30000, AUTH);
  expect(b).toMatchObject({ status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 } });
  const out = parseJsonl(await (await client.files.content(b.output_file_id as string)).text());
  expect(out.map((o) => o.custom_id)).toEqual(lines.map((l) => l.custom_id));
  const text = (body: Record<string, unknown>) =>
    (body.output as { content: { text: string }[] }[]).map((m) => m.content.map((c) => c.text).join('')).join('');
  for (const [i, o] of out.entries()) {
    const single = await post(srv.url, '/v1/responses', JSON.stringify(lines[i].body), AUTH);
    expect(single.status).toBe(200);
    const body = (o.response as { status_code: number; body: Record<string, unknown> }).body;
    expect(body.object).toBe('response');
    expect({ text: text(body), usage: body.usage, status: body.status }).toEqual({
      text: text(single.json),
      usage: single.json.usage,
      status: single.json.status,
    });
    expect(text(body).length).toBeGreaterThan(0);
  }
});
