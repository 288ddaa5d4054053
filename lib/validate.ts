/**
 * One validation vocabulary for every public entry point: type predicates (`is.*`), descriptions of
 * what was received ("the string '5'"), and checkers that throw SimbaError E_ARG with the place,
 * the name, what was expected and what was got. An options object is checked with `options()`:
 * `undefined` is no options, anything but a plain object is refused (never a TypeError), and an
 * unknown key is refused with the nearest valid key suggested.
 *
 * @example
 *   const o = options('generate', opts, ['maxTokens', 'seed']);  // "generate: unknown option 'maxToken' (did you mean 'maxTokens'?)"
 *   const n = int('generate', 'maxTokens', o.maxTokens, 0, 1_000_000) ?? 64;
 *   // "generate: maxTokens must be an integer in [0, 1000000], got the string '5'"
 */
import { SimbaError } from './errors';

/** Type predicates. */
export const is = {
  defined: (v: unknown): boolean => v !== undefined,
  /** A plain options-like object: not null, not an array, not a typed array. */
  object: (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v),
  /** An object literal (or Object.create(null)), not a class instance such as a Map or a boxed value. */
  plain: (v: object): boolean => {
    const proto: unknown = Object.getPrototypeOf(v);
    return proto === Object.prototype || proto === null;
  },
  bool: (v: unknown): v is boolean => typeof v === 'boolean',
  string: (v: unknown): v is string => typeof v === 'string',
  /** A finite number. */
  number: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v),
  /** A safe integer. */
  integer: (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v),
  inRange: (v: number, lo: number, hi: number): boolean => v >= lo && v <= hi,
  oneOf: <T>(v: unknown, list: readonly T[]): v is T => list.includes(v as T),
  fn: (v: unknown): v is (...args: never[]) => unknown => typeof v === 'function',
  /** An array or a typed array (not a string). */
  arrayLike: (v: unknown): v is ArrayLike<unknown> => Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView)),
  signal: (v: unknown): v is AbortSignal => typeof AbortSignal !== 'undefined' && v instanceof AbortSignal,
};

/** What a received value is, for messages: "the string '5'", "null", "an array", "the number -1". */
export function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  switch (typeof v) {
    case 'string': {
      const s = v.length > 40 ? `${v.slice(0, 37)}...` : v;
      return `the string ${JSON.stringify(s).replace(/^"|"$/g, "'")}`;
    }
    case 'number':
      return `the number ${String(v)}`;
    case 'boolean':
      return `the boolean ${String(v)}`;
    case 'bigint':
      return `the bigint ${String(v)}n`;
    case 'symbol':
      return 'a symbol';
    case 'function':
      return 'a function';
  }
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/** An E_ARG error: `${where}: ${message}` (just the message when where is ''), about `param` when given. */
export function argError(where: string, message: string, param?: string): SimbaError {
  return new SimbaError('E_ARG', where ? `${where}: ${message}` : message, param !== undefined ? { param } : undefined);
}

/** Edit distance (insertions, deletions, substitutions; an adjacent swap counts 1). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** The known name closest to `key` (case-insensitive), when it is close enough to be a typo. */
export function nearest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined,
    bestD = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/**
 * Checks an options object: `undefined` gives `{}`; null, arrays and non-objects are E_ARG; every
 * own key must be in `known` (else E_ARG naming it and the nearest valid key). `name` is what the
 * object is called in messages ('options', 'simba', 'simba.protect', ...).
 */
export function options<K extends string>(
  where: string,
  v: unknown,
  known: readonly K[],
  name = 'options',
): Partial<Record<K, unknown>> {
  if (v === undefined) return {};
  if (!is.object(v) || !is.plain(v)) throw argError(where, `${name} must be an object, got ${describeType(v)}`, name);
  for (const k of Object.keys(v)) {
    if ((known as readonly string[]).includes(k)) continue;
    const near = nearest(k, known);
    const opt = name === 'options' ? 'option' : `${name} option`;
    throw argError(where, `unknown ${opt} '${k}'${near ? ` (did you mean '${near}'?)` : ` (known: ${known.join(', ')})`}`, name);
  }
  return v as Partial<Record<K, unknown>>;
}

/** An optional integer in [min, max]. */
export function int(
  where: string,
  name: string,
  v: unknown,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined) return undefined;
  if (!is.integer(v) || !is.inRange(v, min, max)) {
    const range = max === Number.MAX_SAFE_INTEGER ? ` >= ${min}` : ` in [${min}, ${max}]`;
    throw argError(where, `${name} must be an integer${range}, got ${describeType(v)}`, name);
  }
  return v;
}

/** An optional finite number in [lo, hi] (or (lo, hi] with openLo). */
export function number(where: string, name: string, v: unknown, lo: number, hi: number, openLo = false): number | undefined {
  if (v === undefined) return undefined;
  if (!is.number(v) || v > hi || (openLo ? v <= lo : v < lo))
    throw argError(where, `${name} must be a number in ${openLo ? '(' : '['}${lo}, ${hi}], got ${describeType(v)}`, name);
  return v;
}

export function bool(where: string, name: string, v: unknown): boolean | undefined {
  if (v === undefined) return undefined;
  if (!is.bool(v)) throw argError(where, `${name} must be true or false, got ${describeType(v)}`, name);
  return v;
}

export function string(where: string, name: string, v: unknown, nonEmpty = false): string | undefined {
  if (v === undefined) return undefined;
  if (!is.string(v) || (nonEmpty && v.length === 0))
    throw argError(where, `${name} must be a ${nonEmpty ? 'non-empty ' : ''}string, got ${describeType(v)}`, name);
  return v;
}

/** An optional value from a fixed list ('f32' | 'bf16' ...). */
export function oneOf<T extends string>(where: string, name: string, v: unknown, list: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!is.oneOf(v, list)) {
    const near = typeof v === 'string' ? nearest(v, list) : undefined;
    const quoted = list.map((x) => `'${x}'`);
    const expected = quoted.length <= 2 ? quoted.join(' or ') : `one of ${quoted.join(', ')}`;
    throw argError(
      where,
      `${name} must be ${expected}, got ${describeType(v)}` + (near ? ` (did you mean '${near}'?)` : ''),
      name,
    );
  }
  return v;
}

export function func<F extends (...args: never[]) => unknown>(where: string, name: string, v: unknown): F | undefined {
  if (v === undefined) return undefined;
  if (!is.fn(v)) throw argError(where, `${name} must be a function, got ${describeType(v)}`, name);
  return v as F;
}

export function signal(where: string, name: string, v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!is.signal(v)) throw argError(where, `${name} must be an AbortSignal, got ${describeType(v)}`, name);
  return v;
}

/** An optional array of strings (each non-empty when asked). */
export function stringArray(where: string, name: string, v: unknown, nonEmpty = false): string[] | undefined {
  if (v === undefined) return undefined;
  const what = `${name} must be an array of ${nonEmpty ? 'non-empty ' : ''}strings`;
  if (!Array.isArray(v)) throw argError(where, `${what}, got ${describeType(v)}`, name);
  v.forEach((s: unknown, i) => {
    if (!is.string(s) || (nonEmpty && s.length === 0))
      throw argError(where, `${what} (${name}[${i}] is ${describeType(s)})`, name);
  });
  return v as string[];
}

/** An optional array of numbers, each checked by `item` (given `${name}[i]`). */
export function arrayOf<T>(
  where: string,
  name: string,
  v: unknown,
  item: (name: string, x: unknown) => T,
  minLength = 0,
): T[] | undefined {
  if (v === undefined) return undefined;
  if (!is.arrayLike(v)) throw argError(where, `${name} must be an array, got ${describeType(v)}`, name);
  if (v.length < minLength)
    throw argError(
      where,
      `${name} must be a ${minLength === 1 ? 'non-empty list' : `list of at least ${minLength}`}, got ${describeType(v)}`,
      name,
    );
  return Array.from(v, (x, i) => item(`${name}[${i}]`, x));
}
