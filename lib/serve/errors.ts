/**
 * OpenAI-shaped HTTP errors: `{"error": {"message", "type", "param", "code"}}` with the status
 * the official clients expect (400 bad request, 401 auth, 404 not found, 413 body too large,
 * 422 prompt too long, 429 queue full, 503 loading / shutting down).
 *
 * @example
 *   throw badParam('temperature', 'must be a number in [0, 2]');   // 400, param 'temperature'
 */
import { STATUS_CODES } from 'http';

import { SimbaError } from '../errors';

export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the parameter. */
export function badParam(param: string, problem: string, code = 'invalid_value'): ApiError {
  return new ApiError(400, `'${param}' ${problem}`, 'invalid_request_error', param, code);
}

/**
 * Runs library checks on request fields: a SimbaError they throw (E_ARG, E_TOKEN) becomes a 400
 * naming `param`, or with param null the field the error names (its `param` up to the first '.' or '[').
 */
export function asParam<T>(param: string | null, check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (!(e instanceof SimbaError) || (e.code !== 'E_ARG' && e.code !== 'E_TOKEN')) throw e;
    const p = param ?? e.param?.split(/[.[]/)[0] ?? null;
    throw new ApiError(400, e.message, 'invalid_request_error', p, e.code === 'E_TOKEN' ? 'invalid_token' : 'invalid_value');
  }
}

export const notFound = (message: string, code = 'not_found', param: string | null = null) =>
  new ApiError(404, message, 'not_found_error', param, code);
export const unavailable = (message: string, code: string) => new ApiError(503, message, 'service_unavailable', null, code);

/** A request the scheduler refused: 429 (queue full, with Retry-After) or 503 (shutting down). */
export function refused(kind: 'queue_full' | 'shutting_down', message: string, retryAfter: number): ApiError {
  if (kind === 'queue_full')
    return new ApiError(429, message, 'rate_limit_error', null, 'queue_full', { 'retry-after': String(retryAfter) });
  return unavailable(message, 'shutting_down');
}

/**
 * fastify's own errors by code: the status, our error code and the message a client reads. Every
 * error fastify raises (body parsing, routing, framework errors) goes through toApiError.
 */
const FASTIFY_ERRORS: Record<string, { status: number; code: string; message: (m: string) => string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large', message: () => 'the request body is too large' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid_json', message: () => 'malformed JSON body: the body is empty' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: 'unsupported_media_type',
    message: () => 'unsupported Content-Type: send the body as application/json',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    status: 400,
    code: 'invalid_content_length',
    message: () => 'the body length does not match its Content-Length header',
  },
  FST_ERR_BAD_URL: { status: 400, code: 'invalid_url', message: (m) => `the URL is not valid: ${m}` },
  FST_ERR_MAX_PARAM_LENGTH: { status: 414, code: 'invalid_url', message: (m) => `the URL is too long: ${m}` },
};

/** Any error as an ApiError: fastify's own (by code, else its 4xx status), SimbaError (bad input: 400), others 500. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof SimbaError) {
    if (e.code === 'E_ARG' || e.code === 'E_TOKEN') return new ApiError(400, e.message, 'invalid_request_error', null, e.code);
    return new ApiError(500, e.message, 'server_error', null, e.code);
  }
  const fe = e as { statusCode?: unknown; code?: unknown; message?: unknown } | null;
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  const message = (typeof fe?.message === 'string' ? fe.message : String(e)).slice(0, 500);
  const code = typeof fe?.code === 'string' ? fe.code : null;
  const known = code !== null ? FASTIFY_ERRORS[code] : undefined;
  if (known) return new ApiError(known.status, known.message(message), 'invalid_request_error', null, known.code);
  if (status >= 400 && status < 500) {
    // JSON.parse's SyntaxError and secure-json-parse's prototype-poisoning error reach here with status 400
    const json = e instanceof SyntaxError || /JSON/i.test(message);
    return new ApiError(
      status,
      json ? `malformed JSON body: ${message}` : message,
      'invalid_request_error',
      null,
      json ? 'invalid_json' : (code?.toLowerCase() ?? 'invalid_request'),
    );
  }
  return new ApiError(500, `internal error: ${message}`, 'server_error', null, 'internal_error');
}

/** An HTTP/1.1 response (head and body) for an error, for sockets fastify's reply does not reach. */
export function rawErrorResponse(a: ApiError): string {
  const body = JSON.stringify(a.body());
  const headers = Object.entries(a.headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return (
    `HTTP/1.1 ${a.status} ${STATUS_CODES[a.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n${headers.join('')}Connection: close\r\n\r\n${body}`
  );
}

/** A malformed HTTP request that node's parser refused (before fastify saw it). */
export function clientError(e: NodeJS.ErrnoException): ApiError {
  if (e.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return new ApiError(408, 'the request took too long to arrive', 'invalid_request_error', null, 'request_timeout');
  if (e.code === 'HPE_HEADER_OVERFLOW')
    return new ApiError(431, 'the request headers are too large', 'invalid_request_error', null, 'headers_too_large');
  return new ApiError(400, `malformed HTTP request (${e.code ?? 'parse error'})`, 'invalid_request_error', null, 'invalid_http');
}
