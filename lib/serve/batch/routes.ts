/**
 * The Batch API's HTTP routes on the server (OpenAI's shapes; the server's API key guards them like
 * every /v1 route):
 *   POST /v1/files (multipart/form-data: purpose=batch, file=<JSONL>), GET /v1/files/{id},
 *   GET /v1/files/{id}/content, DELETE /v1/files/{id};
 *   POST /v1/batches {input_file_id, endpoint, completion_window: "24h", metadata}, GET /v1/batches
 *   (?after, ?limit), GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.
 * Without a Redis (`simba serve --redis URL`) every one of them is a 404 saying so.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';

import * as v from '../../validate';
import { ApiError, badParam, notFound } from '../errors';
import type { BatchObject } from './batches';
import { parseInputFile } from './input_file';
import { parseMultipart } from './multipart';
import type { BatchService } from './service';

/** The routes a batch line may name (those of them this server has). */
export const BATCHABLE = ['/v1/chat/completions', '/v1/completions', '/v1/responses'] as const;

/** Bytes of a multipart body beyond its file (the other fields, the part headers). */
const FORM_OVERHEAD = 1 << 20;

interface RawForm {
  multipart: Buffer;
}

const field = (b: Record<string, unknown>, k: string): unknown => (b[k] === null ? undefined : b[k]);

function checkMetadata(m: unknown): Record<string, string> | null {
  if (m === undefined) return null;
  if (!v.is.object(m)) throw badParam('metadata', 'must be an object of up to 16 string values');
  const entries = Object.entries(m);
  if (entries.length > 16) throw badParam('metadata', 'holds more than 16 keys');
  for (const [k, x] of entries)
    if (k.length > 64 || typeof x !== 'string' || x.length > 512)
      throw badParam('metadata', 'keys must be at most 64 characters and values strings of at most 512');
  return m as Record<string, string>;
}

export function registerBatchRoutes(app: FastifyInstance, svc: BatchService | null): void {
  const need = (): BatchService => {
    if (svc) return svc;
    throw notFound('the Batch API is off on this server: start it with --redis URL (simba serve --redis ...)', 'batch_disabled');
  };
  const endpoints = () => BATCHABLE.filter((url) => app.hasRoute({ method: 'POST', url }));
  const fileId = (req: FastifyRequest) => (req.params as { id: string }).id;
  const noFile = (id: string) => notFound(`no file '${id.slice(0, 100)}'`, 'file_not_found', 'file_id');
  const noBatch = (id: string) => notFound(`no batch '${id.slice(0, 100)}'`, 'batch_not_found', 'batch_id');

  app.addContentTypeParser(
    'multipart/form-data',
    { parseAs: 'buffer', bodyLimit: (svc?.maxFileBytes ?? 0) + FORM_OVERHEAD },
    (_req, body, done) => done(null, { multipart: body as Buffer } satisfies RawForm),
  );

  app.post('/v1/files', async (req) => {
    const s = need();
    const raw = req.body as RawForm | undefined;
    if (!raw || !Buffer.isBuffer(raw.multipart))
      throw new ApiError(
        400,
        'upload the file as multipart/form-data (fields purpose and file)',
        'invalid_request_error',
        null,
        'invalid_body',
      );
    const form = parseMultipart(raw.multipart, req.headers['content-type']);
    const purpose = form.fields.get('purpose');
    if (purpose !== 'batch') throw badParam('purpose', "must be 'batch' (the only purpose this server stores files for)");
    const file = form.files.get('file');
    if (!file) throw badParam('file', 'is required: the JSONL file as a multipart file part', 'missing_file');
    if (file.data.length > s.maxFileBytes)
      throw new ApiError(
        413,
        `the file has ${file.data.length} bytes; this server takes at most ${s.maxFileBytes}`,
        'invalid_request_error',
        'file',
        'file_too_large',
      );
    parseInputFile(file.data, { maxLines: s.maxFileLines, endpoints: endpoints() });
    return s.files.create('batch', file.filename.slice(0, 255) || 'upload.jsonl', file.data);
  });
  app.get('/v1/files/:id', async (req) => (await need().files.get(fileId(req))) ?? Promise.reject(noFile(fileId(req))));
  app.get('/v1/files/:id/content', async (req, reply) => {
    const data = await need().files.content(fileId(req));
    if (data === null) throw noFile(fileId(req));
    return reply.type('application/octet-stream').send(data);
  });
  app.delete('/v1/files/:id', async (req) => {
    if (!(await need().files.delete(fileId(req)))) throw noFile(fileId(req));
    return { id: fileId(req), object: 'file', deleted: true };
  });

  app.post('/v1/batches', async (req) => {
    const s = need();
    const b = req.body;
    if (!v.is.object(b))
      throw new ApiError(400, 'the request body must be a JSON object', 'invalid_request_error', null, 'invalid_body');
    const inputFileId = field(b, 'input_file_id');
    if (typeof inputFileId !== 'string')
      throw badParam('input_file_id', 'is required: the id POST /v1/files returned', 'missing_input_file_id');
    const endpoint = field(b, 'endpoint');
    if (typeof endpoint !== 'string' || !endpoints().includes(endpoint as (typeof BATCHABLE)[number]))
      throw badParam('endpoint', `must be one of ${endpoints().join(', ')}`);
    if (field(b, 'completion_window') !== '24h') throw badParam('completion_window', "must be '24h'");
    const metadata = checkMetadata(field(b, 'metadata'));
    const meta = await s.files.get(inputFileId);
    if (!meta) throw notFound(`no file '${inputFileId.slice(0, 100)}'`, 'file_not_found', 'input_file_id');
    if (meta.purpose !== 'batch') throw badParam('input_file_id', `names a file of purpose '${meta.purpose}', not 'batch'`);
    const data = await s.files.content(inputFileId);
    if (data === null) throw notFound(`no file '${inputFileId.slice(0, 100)}'`, 'file_not_found', 'input_file_id');
    const lines = parseInputFile(data, { maxLines: s.maxFileLines, endpoints: endpoints() });
    return s.batches.create({ inputFileId, endpoint, metadata, lines });
  });
  app.get('/v1/batches', async (req) => {
    const q = req.query as Record<string, string | undefined>;
    const limit = q.limit === undefined ? 20 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badParam('limit', 'must be an integer in [1, 100]');
    const { data, hasMore } = await need().batches.list(q.after ?? null, limit);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
  });
  app.get('/v1/batches/:id', async (req) => (await need().batches.get(fileId(req))) ?? Promise.reject(noBatch(fileId(req))));
  app.post('/v1/batches/:id/cancel', { config: { emptyBody: true } }, async (req): Promise<BatchObject> => {
    const s = need();
    const id = fileId(req);
    const before = await s.batches.cancel(id);
    if (before === null) throw noBatch(id);
    if (before === 'completed' || before === 'expired' || before === 'failed' || before === 'finalizing')
      throw new ApiError(
        409,
        `the batch is ${before}; only a validating or in_progress batch can be cancelled`,
        'invalid_request_error',
        null,
        'batch_not_cancellable',
      );
    return (await s.batches.get(id))!;
  });
}
