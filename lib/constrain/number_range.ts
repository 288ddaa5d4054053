/**
 * GBNF for the decimal integers in a range, and for the JSON numbers between bounds (JSON schema
 * `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum`).
 *
 * Integers are written without leading zeros and never as "-0". Bounded numbers are the integers in
 * the bounds, and decimals I.F (F ending in a non-zero digit, at most 16 digits) whose whole open
 * interval (I, I + 1) lies inside the bounds: so no exponent, and a decimal between two bounds
 * closer than an integer step (say 0.2 .. 0.7) is not written (such bounds are refused when they
 * leave no number at all).
 *
 * @example
 *   uintRangeExpr(7, 123);   // '[7-9] | [1-9] [0-9] | "1" ([0-1] [0-9] | "2" [0-3])' (some such)
 */
import { INT_DIGITS } from './json_any';

/** The largest integer a bounded-on-one-side range reaches (INT_DIGITS digits). */
export const INT_CAP = 10 ** INT_DIGITS - 1;

const digitClass = (lo: number, hi: number): string => (lo === hi ? `"${lo}"` : `[${lo}-${hi}]`);
const anyDigits = (n: number): string => (n === 0 ? '' : n === 1 ? '[0-9]' : `[0-9]{${n}}`);
const join = (...parts: string[]): string => parts.filter((p) => p !== '').join(' ');
const alt = (alts: string[]): string => (alts.length === 1 ? alts[0] : `(${alts.join(' | ')})`);

/** Strings of s.length digits >= s (lexicographically = numerically). */
function atLeast(s: string): string {
  if (s.length === 0) return '';
  if (/^0*$/.test(s)) return anyDigits(s.length);
  const d = Number(s[0]);
  const alts = [join(`"${d}"`, atLeast(s.slice(1)))];
  if (d < 9) alts.push(join(digitClass(d + 1, 9), anyDigits(s.length - 1)));
  return alt(alts);
}

/** Strings of s.length digits <= s. */
function atMost(s: string): string {
  if (s.length === 0) return '';
  if (/^9*$/.test(s)) return anyDigits(s.length);
  const d = Number(s[0]);
  const alts = [join(`"${d}"`, atMost(s.slice(1)))];
  if (d > 0) alts.push(join(digitClass(0, d - 1), anyDigits(s.length - 1)));
  return alt(alts);
}

/** Digit strings of equal length in [a, b] (a <= b). */
function sameLength(a: string, b: string): string {
  let k = 0;
  while (k < a.length && a[k] === b[k]) k++;
  const prefix = a.slice(0, k) ? `"${a.slice(0, k)}"` : '';
  if (k === a.length) return prefix;
  const x = Number(a[k]),
    y = Number(b[k]);
  const ra = a.slice(k + 1),
    rb = b.slice(k + 1),
    r = ra.length;
  const lowFull = /^0*$/.test(ra),
    highFull = /^9*$/.test(rb);
  const alts: string[] = [];
  const midLo = lowFull ? x : x + 1,
    midHi = highFull ? y : y - 1;
  if (!lowFull) alts.push(join(`"${x}"`, atLeast(ra)));
  if (midLo <= midHi) alts.push(join(digitClass(midLo, midHi), anyDigits(r)));
  if (!highFull) alts.push(join(`"${y}"`, atMost(rb)));
  return join(prefix, alt(alts));
}

/** The non-negative integers in [lo, hi] (integers, 0 <= lo <= hi <= INT_CAP), as alternatives. */
function uintAlternatives(lo: number, hi: number): string[] {
  const out: string[] = [];
  for (let len = String(lo).length; len <= String(hi).length; len++) {
    const a = Math.max(lo, len === 1 ? 0 : 10 ** (len - 1));
    const b = Math.min(hi, 10 ** len - 1);
    if (a <= b) out.push(sameLength(String(a), String(b)));
  }
  return out;
}

/** GBNF alternatives of the integers in [lo, hi] (integers or +-Infinity, clamped to +-INT_CAP); [] when empty. */
export function intRangeAlternatives(lo: number, hi: number): string[] {
  const a = Math.max(lo, -INT_CAP),
    b = Math.min(hi, INT_CAP);
  if (a > b) return [];
  const out: string[] = [];
  if (a < 0) {
    const neg = uintAlternatives(-Math.min(b, -1), -a);
    out.push(join('"-"', alt(neg)));
  }
  if (b >= 0) out.push(...uintAlternatives(Math.max(a, 0), b));
  return out;
}

export interface NumberBounds {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

/** The tightest lower / upper bound and whether each is exclusive. */
function bounds(b: NumberBounds): { lo: number; loEx: boolean; hi: number; hiEx: boolean } {
  let lo = -Infinity,
    loEx = false,
    hi = Infinity,
    hiEx = false;
  if (b.minimum !== undefined) lo = b.minimum;
  if (b.exclusiveMinimum !== undefined && b.exclusiveMinimum >= lo) [lo, loEx] = [b.exclusiveMinimum, true];
  if (b.maximum !== undefined) hi = b.maximum;
  if (b.exclusiveMaximum !== undefined && b.exclusiveMaximum <= hi) [hi, hiEx] = [b.exclusiveMaximum, true];
  return { lo, loEx, hi, hiEx };
}

/** The integers within the bounds, as [first, last]. */
export function integerBounds(b: NumberBounds): [number, number] {
  const { lo, loEx, hi, hiEx } = bounds(b);
  const first = Number.isInteger(lo) && loEx ? lo + 1 : Math.ceil(lo);
  const last = Number.isInteger(hi) && hiEx ? hi - 1 : Math.floor(hi);
  return [first, last];
}

/** GBNF of the integers within the bounds (null when there is none). */
export function integerExpr(b: NumberBounds): string | null {
  const alts = intRangeAlternatives(...integerBounds(b));
  return alts.length === 0 ? null : alt(alts);
}

const FRACTION = '"." [0-9]{0,15} [1-9]';

/** GBNF of the numbers written within the bounds (see the file's comment; null when there is none). */
export function boundedNumberExpr(b: NumberBounds): string | null {
  const { lo, hi } = bounds(b);
  const alts = intRangeAlternatives(...integerBounds(b));
  // I.F in (I, I + 1) for I >= 0: lo <= I and I + 1 <= hi
  const pos = uintRangeOrEmpty(Math.max(0, Math.ceil(lo)), Math.floor(hi) - 1);
  if (pos.length > 0) alts.push(join(alt(pos), FRACTION));
  // -I.F in (-(I + 1), -I): lo <= -(I + 1) and -I <= hi
  const neg = uintRangeOrEmpty(Math.max(0, Math.ceil(-hi)), Math.floor(-lo) - 1);
  if (neg.length > 0) alts.push(join('"-"', alt(neg), FRACTION));
  return alts.length === 0 ? null : alt(alts);
}

function uintRangeOrEmpty(lo: number, hi: number): string[] {
  const b = Math.min(hi, INT_CAP - 1);
  return lo <= b ? uintAlternatives(lo, b) : [];
}
