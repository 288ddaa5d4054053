/**
 * Files of the Batch API in Redis (so every replica and every worker sees them): a hash per file
 * holding its OpenAI file object (`meta`) and its bytes (`content`). Input files come from
 * POST /v1/files; a batch's output and error files are written by its finalize step.
 *
 * Why Redis and not a directory: replicas and workers run on other machines; Redis is already the
 * one thing they all reach (BullMQ's queue lives there), so no shared filesystem is needed.
 *
 * @example
 *   const files = new FileStore(redis, 'simba');
 *   const f = await files.create('batch', 'requests.jsonl', buf);   // {id: 'file-…', object: 'file', …}
 *   await files.content(f.id);                                        // Buffer
 */
import { randomBytes } from 'crypto';
import type Redis from 'ioredis';

export type FilePurpose = 'batch' | 'batch_output';

/** OpenAI's file object. */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: FilePurpose;
  status: 'processed';
  status_details: null;
  expires_at: null;
}

export const newFileId = () => `file-${randomBytes(12).toString('hex')}`;
export const nowSeconds = () => Math.floor(Date.now() / 1000);

export function fileObject(id: string, purpose: FilePurpose, filename: string, bytes: number): FileObject {
  return {
    id,
    object: 'file',
    bytes,
    created_at: nowSeconds(),
    filename,
    purpose,
    status: 'processed',
    status_details: null,
    expires_at: null,
  };
}

/** The well-formed file ids (anything else is not looked up). */
const FILE_ID = /^file-[0-9a-f]{24}$/;

export class FileStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** The Redis key of a file (the finalize script writes output files there too). */
  key(id: string): string {
    return `${this.prefix}:file:${id}`;
  }

  async create(purpose: FilePurpose, filename: string, data: Buffer): Promise<FileObject> {
    const f = fileObject(newFileId(), purpose, filename, data.length);
    await this.redis.hset(this.key(f.id), 'meta', JSON.stringify(f), 'content', data);
    return f;
  }

  async get(id: string): Promise<FileObject | null> {
    if (!FILE_ID.test(id)) return null;
    const meta = await this.redis.hget(this.key(id), 'meta');
    return meta === null ? null : (JSON.parse(meta) as FileObject);
  }

  async content(id: string): Promise<Buffer | null> {
    if (!FILE_ID.test(id)) return null;
    return this.redis.hgetBuffer(this.key(id), 'content');
  }

  /** Whether the file existed. */
  async delete(id: string): Promise<boolean> {
    if (!FILE_ID.test(id)) return false;
    return (await this.redis.del(this.key(id))) === 1;
  }
}
