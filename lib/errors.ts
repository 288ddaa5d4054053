/**
 * The one error type of simba-ssm. Every error we raise on purpose is a SimbaError with a stable
 * `code`; the message names the file / key / tensor concerned and what was expected vs found.
 */

/**
 * Stable error codes.
 *   E_CONFIG       config.json missing, malformed, unsupported or inconsistent
 *   E_SAFETENSORS  a safetensors file or shard index is malformed or unreadable
 *   E_SHAPE        a tensor's shape disagrees with the config
 *   E_WEIGHTS      tensors missing, unexpected, of an unusable dtype, or not finite
 *   E_TOKENIZER    tokenizer.json missing, malformed or unsupported
 *   E_TOKEN        a token id out of range (or text that cannot be tokenized)
 *   E_ARG          a bad argument from the caller
 *   E_IO           a file that cannot be found or read
 *   E_DISPOSED     use of a model / sequence after dispose()
 *   E_BUSY         a resource in use by another call
 *   E_OOM          host or GPU memory exhausted (loading weights, activations of a long prompt)
 *   E_CUDA         the CUDA runtime or driver failed, or the CUDA backend / a GPU is not available
 *   E_NATIVE       any other error raised by the native addon (a bug: please report it)
 *   E_ABORTED      the caller's AbortSignal fired
 * The native addon classifies its own errors with the same names (native/common/backend_api.h
 * simba_status_t) and sets them as `code` on what it throws.
 */
export const SIMBA_ERROR_CODES = [
  'E_CONFIG',
  'E_SAFETENSORS',
  'E_SHAPE',
  'E_WEIGHTS',
  'E_TOKENIZER',
  'E_TOKEN',
  'E_ARG',
  'E_IO',
  'E_DISPOSED',
  'E_BUSY',
  'E_OOM',
  'E_CUDA',
  'E_NATIVE',
  'E_ABORTED',
] as const;
export type SimbaErrorCode = (typeof SIMBA_ERROR_CODES)[number];

export class SimbaError extends Error {
  readonly code: SimbaErrorCode;
  /**
   * The argument or option at fault, as the message names it ('temperature', 'simba.flops',
   * 'logitBias[7]'), where the error is about one; the server answers it as the 400's `param`.
   */
  readonly param?: string;

  constructor(code: SimbaErrorCode, message: string, options?: { cause?: unknown; param?: string }) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'SimbaError';
    this.code = code;
    if (options?.param !== undefined) this.param = options.param;
  }
}

/** True when `e` is a SimbaError (with the given code, if one is given). */
export function isSimbaError(e: unknown, code?: SimbaErrorCode): e is SimbaError {
  return e instanceof SimbaError && (code === undefined || e.code === code);
}

/** Short, single-line rendering of a found value for error messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * An error thrown by the native addon as a SimbaError of the class the addon set as its `code`;
 * anything without a known code is E_NATIVE. The original is the `cause`. The class is never
 * guessed from the message.
 */
export function fromNative(e: unknown): SimbaError {
  if (e instanceof SimbaError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: unknown } | null)?.code;
  const known = typeof code === 'string' && (SIMBA_ERROR_CODES as readonly string[]).includes(code);
  return new SimbaError(known ? (code as SimbaErrorCode) : 'E_NATIVE', msg, { cause: e });
}
