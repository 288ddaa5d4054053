/**
 * A batch input file: JSONL, one request a line, as OpenAI's Batch API takes it:
 *   {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
 * checked whole on upload (POST /v1/files): UTF-8, at most `maxLines` requests, each line a JSON
 * object with a unique non-empty custom_id, method POST, a url this server batches, a body object
 * with a `model` and without `stream: true`. A bad line is a 400 naming its line number; the body's
 * other fields are checked when the request runs, and a request they fail goes to the error file.
 *
 * @example
 *   const lines = parseInputFile(buf, { maxLines: 50000, endpoints: ['/v1/completions'] });
 */
import { ApiError } from '../errors';
import * as v from '../../validate';

/** One request of a batch input file. */
export interface BatchLine {
  customId: string;
  url: string;
  /** The line as uploaded (what a worker runs). */
  text: string;
}

export interface InputFileLimits {
  maxLines: number;
  /** The urls a line may name (the server's batchable routes). */
  endpoints: readonly string[];
}

const MAX_CUSTOM_ID = 512;
/** At most this many bad lines are named in one error message. */
const SHOWN_ERRORS = 5;

const invalid = (message: string, code: string) => new ApiError(400, message, 'invalid_request_error', 'file', code);

/** The problem with one parsed line, or null. */
function lineProblem(j: unknown, endpoints: readonly string[], seen: Set<string>): string | null {
  if (!v.is.object(j)) return 'is not a JSON object';
  const keys = Object.keys(j).filter((k) => !['custom_id', 'method', 'url', 'body'].includes(k));
  if (keys.length > 0) return `has unknown field '${keys[0].slice(0, 40)}' (a line holds custom_id, method, url, body)`;
  if (typeof j.custom_id !== 'string' || j.custom_id.length === 0 || j.custom_id.length > MAX_CUSTOM_ID)
    return `needs custom_id: a non-empty string of at most ${MAX_CUSTOM_ID} characters`;
  if (seen.has(j.custom_id)) return `repeats custom_id ${JSON.stringify(j.custom_id.slice(0, 60))} (each must be unique)`;
  seen.add(j.custom_id);
  if (j.method !== 'POST') return "needs method 'POST'";
  if (typeof j.url !== 'string' || !endpoints.includes(j.url)) return `needs url: one of ${endpoints.join(', ')}`;
  if (!v.is.object(j.body)) return 'needs body: the request as a JSON object';
  if (typeof j.body.model !== 'string') return 'needs body.model (a string: see GET /v1/models)';
  if (j.body.stream === true) return 'asks for stream: true, which a batch request cannot';
  return null;
}

/** Parses and checks an uploaded input file; throws a 400 ApiError naming the bad lines. */
export function parseInputFile(data: Buffer, limits: InputFileLimits): BatchLine[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw invalid('the file is not UTF-8 text', 'invalid_file_encoding');
  }
  const lines: BatchLine[] = [];
  const errors: string[] = [];
  let bad = 0;
  const seen = new Set<string>();
  const rows = text.split('\n');
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i].endsWith('\r') ? rows[i].slice(0, -1) : rows[i];
    if (row.trim() === '') continue;
    if (lines.length + bad >= limits.maxLines)
      throw invalid(`the file has more than ${limits.maxLines} requests (the limit of this server)`, 'too_many_lines');
    let j: unknown;
    let problem: string | null;
    try {
      j = JSON.parse(row);
      problem = lineProblem(j, limits.endpoints, seen);
    } catch {
      problem = 'is not valid JSON';
    }
    if (problem === null) {
      const o = j as { custom_id: string; url: string };
      lines.push({ customId: o.custom_id, url: o.url, text: row });
    } else if (++bad <= SHOWN_ERRORS) errors.push(`line ${i + 1} ${problem}`);
  }
  if (bad > 0)
    throw invalid(
      `the file has ${bad} invalid line${bad > 1 ? 's' : ''}: ${errors.join('; ')}${bad > SHOWN_ERRORS ? '; ...' : ''}`,
      'invalid_batch_line',
    );
  if (lines.length === 0) throw invalid('the file holds no requests (one JSON object a line)', 'empty_file');
  return lines;
}
