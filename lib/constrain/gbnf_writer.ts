/**
 * Writes GBNF text (llama.cpp's grammar syntax) for the converters of this folder: rule names made
 * unique, the size bounded (LIMITS.grammarRules rules, LIMITS.grammarChars characters), string
 * literals and character classes escaped. Character sets are sorted lists of code point ranges
 * (UTF-16 surrogates excluded: they are not characters of UTF-8 text).
 *
 * @example
 *   const w = new GbnfWriter('regex');
 *   const digit = w.rule('digit', w.charClass([[0x30, 0x39]]));
 *   w.root(`${digit}+ ${GbnfWriter.literal('!')}`);
 *   w.text();   // 'root ::= digit+ "!"\ndigit ::= [0-9]\n'
 */
import { LIMITS } from '../limits';
import { argError } from '../validate';

/** Inclusive code point ranges, sorted, disjoint, not adjacent. */
export type CharRanges = [number, number][];

export const MAX_CODE_POINT = 0x10ffff;
const SURROGATES: [number, number] = [0xd800, 0xdfff];

/** Sorts and merges ranges, dropping the surrogates. */
export function normalizeRanges(ranges: readonly (readonly [number, number])[]): CharRanges {
  const cut: [number, number][] = [];
  for (const [a, b] of ranges) {
    if (b < a) continue;
    if (a <= SURROGATES[1] && b >= SURROGATES[0]) {
      if (a < SURROGATES[0]) cut.push([a, SURROGATES[0] - 1]);
      if (b > SURROGATES[1]) cut.push([SURROGATES[1] + 1, b]);
    } else cut.push([a, b]);
  }
  cut.sort((x, y) => x[0] - y[0]);
  const out: CharRanges = [];
  for (const r of cut) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

/** The characters not in `ranges` (surrogates excluded). */
export function complementRanges(ranges: CharRanges): CharRanges {
  const out: [number, number][] = [];
  let next = 0;
  for (const [a, b] of ranges) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return normalizeRanges(out);
}

/** `ranges` less the characters of `minus`. */
export function subtractRanges(ranges: CharRanges, minus: CharRanges): CharRanges {
  const keep = complementRanges(minus);
  const out: [number, number][] = [];
  for (const [a, b] of ranges) for (const [c, d] of keep) if (c <= b && d >= a) out.push([Math.max(a, c), Math.min(b, d)]);
  return normalizeRanges(out);
}

export const rangesHave = (ranges: CharRanges, cp: number): boolean => ranges.some(([a, b]) => cp >= a && cp <= b);

/** One code point as GBNF writes it inside a literal or a class (`special`: characters that need a backslash there). */
function escapeCodePoint(cp: number, special: string): string {
  const ch = String.fromCodePoint(cp);
  if (special.includes(ch)) return `\\${ch}`;
  if (cp === 0x0a) return '\\n';
  if (cp === 0x0d) return '\\r';
  if (cp === 0x09) return '\\t';
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, '0')}`;
  if (cp < 0x80) return ch;
  if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, '0')}`;
  return `\\U${cp.toString(16).padStart(8, '0')}`;
}

export class GbnfWriter {
  private readonly rules = new Map<string, string>();
  private readonly order: string[] = [];
  private chars = 0;

  /** `where` prefixes the size errors ('response_format', 'regex', ...). */
  constructor(private readonly where: string) {}

  /** A GBNF string literal of `s` (non-empty). */
  static literal(s: string): string {
    let out = '"';
    for (const ch of s) out += escapeCodePoint(ch.codePointAt(0)!, '"\\');
    return `${out}"`;
  }

  /** A GBNF character class matching exactly `ranges` (written negated when that is shorter). */
  static charClass(ranges: CharRanges): string {
    if (ranges.length === 0) throw new Error('GbnfWriter.charClass: empty set');
    const comp = complementRanges(ranges);
    const negate = comp.length > 0 && comp.length < ranges.length;
    const body = (negate ? comp : ranges)
      .map(([a, b]) => {
        const e = (cp: number) => escapeCodePoint(cp, '\\]^-[');
        return a === b ? e(a) : b === a + 1 ? e(a) + e(b) : `${e(a)}-${e(b)}`;
      })
      .join('');
    return negate ? `[^${body}]` : `[${body}]`;
  }

  /** Whether a rule of this name is defined. */
  has(name: string): boolean {
    return this.rules.has(name);
  }

  /**
   * Defines a rule (`base` made unique with a number when taken, unless `exact`); returns its name.
   * Refuses grammars beyond the size limits.
   */
  rule(base: string, body: string, exact = false): string {
    let name = base.replace(/[^a-zA-Z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'r';
    if (!exact && this.rules.has(name)) {
      let i = 2;
      while (this.rules.has(`${name}-${i}`)) i++;
      name = `${name}-${i}`;
    }
    this.define(name, body);
    return name;
  }

  /** Reserves a unique rule name to be defined later with define() (for recursive rules). */
  reserve(base: string): string {
    return this.rule(base, '');
  }

  /** Sets the body of a rule (reserved or new). */
  define(name: string, body: string): void {
    if (!this.rules.has(name)) {
      this.order.push(name);
      if (this.order.length > LIMITS.grammarRules)
        throw argError(this.where, `the grammar would need more than ${LIMITS.grammarRules} rules; simplify the constraint`);
    }
    this.chars += body.length - (this.rules.get(name)?.length ?? 0);
    if (this.chars > LIMITS.grammarChars)
      throw argError(this.where, `the grammar would be longer than ${LIMITS.grammarChars} characters; simplify the constraint`);
    this.rules.set(name, body);
  }

  /** The root rule. */
  root(body: string): void {
    this.define('root', body);
  }

  /** The GBNF text: root first, then the other rules in the order they were made. */
  text(): string {
    if (!this.rules.has('root')) throw new Error('GbnfWriter: no root rule');
    const names = ['root', ...this.order.filter((n) => n !== 'root')];
    return names.map((n) => `${n} ::= ${this.rules.get(n)}\n`).join('');
  }
}
