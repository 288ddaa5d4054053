/**
 * OpenAI-shaped HTTP errors: `{"error": {"message", "type", "param", "code"}}` with the status
 * the official clients expect (400 bad request, 401 auth, 404 not found, 413 body too large,
 * 422 prompt too long, 429 queue full, 503 loading / shutting down).
 *
 * @example
 *   throw badParam('temperature', 'must be a number in [0, 2]');   // 400, param 'temperature'
 */
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

export const notFound = (message: string, code = 'not_found', param: string | null = null) =>
  new ApiError(404, message, 'not_found_error', param, code);
export const unavailable = (message: string, code: string) => new ApiError(503, message, 'service_unavailable', null, code);

/** Any error as an ApiError: fastify's own (status 4xx / 413), SimbaError (bad input: 400), others 500. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof SimbaError) {
    if (e.code === 'E_ARG' || e.code === 'E_TOKEN') return new ApiError(400, e.message, 'invalid_request_error', null, e.code);
    return new ApiError(500, e.message, 'server_error', null, e.code);
  }
  const fe = e as { statusCode?: unknown; code?: unknown; message?: unknown } | null;
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  const message = typeof fe?.message === 'string' ? fe.message : String(e);
  if (fe?.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new ApiError(413, 'the request body is too large', 'invalid_request_error', null, 'body_too_large');
  if (status >= 400 && status < 500) {
    const code = typeof fe?.code === 'string' ? fe.code : null;
    const msg = /JSON/i.test(message) || code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ? `malformed JSON body: ${message}` : message;
    return new ApiError(status, msg, 'invalid_request_error', null, status === 400 ? 'invalid_json' : code);
  }
  return new ApiError(500, `internal error: ${message}`, 'server_error', null, 'internal_error');
}
