/**
 * multipart/form-data bodies (RFC 7578) as the official clients send POST /v1/files: the body is
 * buffered by fastify (under the route's size limit) and split here into its fields and files.
 * Anything malformed is a 400 in OpenAI's shape; a body with more than MAX_PARTS parts or a part
 * header over MAX_HEADER bytes is refused.
 *
 * @example
 *   const form = parseMultipart(body, req.headers['content-type']);
 *   form.fields.get('purpose');          // 'batch'
 *   form.files.get('file')?.data;        // Buffer
 */
import { ApiError } from '../errors';

export interface MultipartFile {
  filename: string;
  data: Buffer;
}

export interface MultipartForm {
  fields: Map<string, string>;
  files: Map<string, MultipartFile>;
}

const MAX_PARTS = 16;
const MAX_HEADER = 8192;

const malformed = (why: string) =>
  new ApiError(400, `malformed multipart/form-data body: ${why}`, 'invalid_request_error', null, 'invalid_multipart');

/** The boundary of a multipart/form-data Content-Type, or a 400. */
function boundaryOf(contentType: string | undefined): string {
  const m = /^multipart\/form-data\s*;(?:.*;)?\s*boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType ?? '');
  if (!m) throw malformed('the Content-Type names no boundary');
  return m[1] ?? m[2];
}

/** A part's name and filename from its Content-Disposition header. */
function disposition(head: string): { name: string; filename: string | null } {
  const line = head.split('\r\n').find((l) => /^content-disposition:/i.test(l));
  if (!line || !/:\s*form-data\b/i.test(line)) throw malformed('a part has no Content-Disposition: form-data header');
  const param = (key: string): string | null => {
    const m =
      new RegExp(`;\\s*${key}="((?:[^"\\\\]|\\\\.)*)"`, 'i').exec(line) ?? new RegExp(`;\\s*${key}=([^;\\s]+)`, 'i').exec(line);
    return m ? m[1].replace(/\\(.)/g, '$1') : null;
  };
  const name = param('name');
  if (name === null) throw malformed('a part has no name');
  return { name, filename: param('filename') };
}

export function parseMultipart(body: Buffer, contentType: string | undefined): MultipartForm {
  const boundary = boundaryOf(contentType);
  const open = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const form: MultipartForm = { fields: new Map(), files: new Map() };
  let at = body.indexOf(open);
  if (at < 0) throw malformed('the boundary never occurs');
  at += open.length;
  for (let parts = 0; ; parts++) {
    if (body.subarray(at, at + 2).toString() === '--') return form; // the closing delimiter
    if (body.subarray(at, at + 2).toString() !== '\r\n') throw malformed('a boundary is not followed by a line break');
    if (parts === MAX_PARTS) throw malformed(`more than ${MAX_PARTS} parts`);
    const headEnd = body.indexOf('\r\n\r\n', at + 2);
    if (headEnd < 0 || headEnd - at > MAX_HEADER) throw malformed('a part header is unterminated or too long');
    const { name, filename } = disposition(body.subarray(at + 2, headEnd).toString('latin1'));
    const end = body.indexOf(delimiter, headEnd + 4);
    if (end < 0) throw malformed('the body ends before the closing boundary');
    const data = body.subarray(headEnd + 4, end);
    if (filename !== null) form.files.set(name, { filename: Buffer.from(filename, 'latin1').toString('utf8'), data });
    else form.fields.set(name, data.toString('utf8'));
    at = end + delimiter.length;
  }
}
