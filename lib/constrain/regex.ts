/**
 * Regular expressions (the ECMAScript subset with the `u` flag's meaning: code points) to GBNF:
 * literals, `.`, classes `[a-z]` / `[^...]`, escapes `\d \w \s \D \W \S \t \n \r \f \v \0 \xHH
 * \uHHHH \u{H...}` and escaped punctuation, groups `( )` `(?: )` `(?<name> )`, alternation, and the
 * quantifiers `* + ? {n} {n,} {n,m}` (lazy `?` suffixes accepted: they match the same strings).
 * The match is of the whole output (anchors implicit; a leading `^` and a trailing `$` are allowed).
 * Lookarounds, backreferences, word boundaries, anchors elsewhere, Unicode property escapes and
 * flags other than `u` are an E_ARG naming them and where they are.
 *
 * The same parse serves JSON Schema `pattern` (json_schema.ts): there the characters are written as
 * they appear inside a JSON string (`"` as `\"`, control characters as JSON.stringify escapes them),
 * and a pattern without `^` / `$` may have any characters before / after its match.
 *
 * @example
 *   regexToGbnf('[A-Z][a-z]+ \\d{1,3}');   // 'root ::= [A-Z] [a-z]+ " " [0-9]{1,3}\n'
 */
import { LIMITS } from '../limits';
import { argError, describeType } from '../validate';
import { GbnfWriter, normalizeRanges, subtractRanges, complementRanges, rangesHave, type CharRanges } from './gbnf_writer';

export type RegexNode =
  | { t: 'set'; ranges: CharRanges }
  | { t: 'seq'; items: RegexNode[] }
  | { t: 'alt'; alts: RegexNode[] }
  | { t: 'rep'; node: RegexNode; min: number; max: number };

export interface ParsedRegex {
  node: RegexNode;
  /** Whether the source began with `^` / ended with `$`. */
  anchoredStart: boolean;
  anchoredEnd: boolean;
  /** Whether the top level is an alternation `a|b` (not inside a group). */
  topAlternation: boolean;
}

const DIGIT: CharRanges = [[0x30, 0x39]];
const WORD: CharRanges = normalizeRanges([
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
]);
/** ECMAScript's WhiteSpace and LineTerminator characters (\s). */
const SPACE: CharRanges = normalizeRanges([
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
]);
const LINE_TERMINATORS: CharRanges = normalizeRanges([
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
]);
/** `.`: any character but a line terminator. */
export const DOT: CharRanges = complementRanges(LINE_TERMINATORS);
const CLASS_ESCAPES: Record<string, CharRanges> = {
  d: DIGIT,
  D: complementRanges(DIGIT),
  w: WORD,
  W: complementRanges(WORD),
  s: SPACE,
  S: complementRanges(SPACE),
};
const CHAR_ESCAPES: Record<string, number> = { t: 9, n: 10, v: 11, f: 12, r: 13 };
/** What `\` may escape as itself under the u flag. */
const SYNTAX_CHARS = '^$\\.*+?()[]{}|/';

const single = (cp: number): RegexNode => ({ t: 'set', ranges: [[cp, cp]] });

class RegexParser {
  private readonly cps: string[];
  private i = 0;
  private topAlternation = false;

  constructor(
    private readonly src: string,
    private readonly where: string,
    private readonly name: string,
  ) {
    this.cps = [...src];
  }

  private fail(problem: string, at = this.i): never {
    throw argError(this.where, `${this.name} ${JSON.stringify(this.src.slice(0, 80))}: ${problem} at character ${at}`, this.name);
  }

  private peek(k = 0): string | undefined {
    return this.cps[this.i + k];
  }

  parse(): ParsedRegex {
    const anchoredStart = this.peek() === '^';
    if (anchoredStart) this.i++;
    const last = this.cps.length - 1;
    const anchoredEnd = last >= this.i && this.cps[last] === '$' && this.cps[last - 1] !== '\\';
    const end = anchoredEnd ? last : this.cps.length;
    const node = this.alternation(0, end);
    if (this.i < end) this.fail(`an unmatched ')'`);
    return { node, anchoredStart, anchoredEnd, topAlternation: this.topAlternation };
  }

  private alternation(depth: number, end: number): RegexNode {
    if (depth > LIMITS.regexDepth) this.fail(`groups nested deeper than ${LIMITS.regexDepth}`);
    const alts = [this.sequence(depth, end)];
    while (this.i < end && this.peek() === '|') {
      this.i++;
      if (depth === 0) this.topAlternation = true;
      alts.push(this.sequence(depth, end));
    }
    return alts.length === 1 ? alts[0] : { t: 'alt', alts };
  }

  private sequence(depth: number, end: number): RegexNode {
    const items: RegexNode[] = [];
    while (this.i < end && this.peek() !== '|' && this.peek() !== ')') {
      const start = this.i;
      const atom = this.atom(depth, end);
      items.push(this.quantified(atom, start, end));
    }
    return items.length === 1 ? items[0] : { t: 'seq', items };
  }

  private quantified(atom: RegexNode, start: number, end: number): RegexNode {
    if (this.i >= end) return atom;
    const c = this.peek();
    let min: number, max: number;
    if (c === '*' || c === '+' || c === '?') {
      this.i++;
      [min, max] = c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.cps.slice(this.i, end).join(''));
      if (!m) this.fail(`a '{' that is not a quantifier {n}, {n,} or {n,m} (escape it as \\{)`);
      this.i += m[0].length;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      if (max < min) this.fail(`the quantifier ${m[0]} has its numbers out of order`, start);
      if (min > LIMITS.repeatMax || (max !== Infinity && max > LIMITS.repeatMax))
        this.fail(`the quantifier ${m[0]} counts past ${LIMITS.repeatMax}, the limit`, start);
    } else return atom;
    if (this.i < end && this.peek() === '?') this.i++; // lazy: the same strings match
    const next = this.i < end ? this.peek() : undefined;
    if (next === '*' || next === '+' || next === '?' || next === '{') this.fail('a quantifier after a quantifier');
    return { t: 'rep', node: atom, min, max };
  }

  private atom(depth: number, end: number): RegexNode {
    const at = this.i;
    const c = this.cps[this.i++];
    switch (c) {
      case '(': {
        if (this.peek() === '?') {
          const two = this.cps.slice(this.i, this.i + 3).join('');
          if (two.startsWith('?:')) this.i += 2;
          else if (two.startsWith('?=') || two.startsWith('?!')) this.fail('a lookahead (?= / (?! is not supported', at);
          else if (two === '?<=' || two === '?<!') this.fail('a lookbehind (?<= / (?<! is not supported', at);
          else if (two.startsWith('?<')) {
            const close = this.cps.indexOf('>', this.i);
            if (close < 0 || close >= end) this.fail('an unterminated group name', at);
            this.i = close + 1;
          } else this.fail('an unsupported group (?...', at);
        }
        const inner = this.alternation(depth + 1, end);
        if (this.i >= end || this.peek() !== ')') this.fail(`an unterminated group '('`, at);
        this.i++;
        return inner;
      }
      case ')':
        return this.fail(`an unmatched ')'`, at);
      case '[':
        return { t: 'set', ranges: this.charClass(at, end) };
      case '.':
        return { t: 'set', ranges: DOT };
      case '^':
      case '$':
        return this.fail(
          `the anchor '${c}' inside the expression is not supported (the whole output is matched: anchors are implicit)`,
          at,
        );
      case '*':
      case '+':
      case '?':
        return this.fail(`nothing to repeat before '${c}'`, at);
      case '{':
      case '}':
      case ']':
        return this.fail(`a lone '${c}' (escape it as \\${c})`, at);
      case '\\':
        return this.escape(at, false, end) as RegexNode;
      default:
        return single(c.codePointAt(0)!);
    }
  }

  /** An escape after its backslash: a set (classes), or in a class a code point. */
  private escape(at: number, inClass: boolean, end: number): RegexNode | number {
    if (this.i >= end) this.fail('a trailing backslash', at);
    const c = this.cps[this.i++];
    if (c in CLASS_ESCAPES) return { t: 'set', ranges: CLASS_ESCAPES[c] };
    if (c in CHAR_ESCAPES) return this.codePoint(CHAR_ESCAPES[c], inClass);
    if (c === 'b' && inClass) return 8;
    if (c === 'b' || c === 'B') this.fail(`the word boundary \\${c} is not supported`, at);
    if (c === '0' && !/[0-9]/.test(this.peek() ?? '')) return this.codePoint(0, inClass);
    if (/[1-9]/.test(c)) this.fail(`the backreference \\${c} is not supported`, at);
    if (c === 'k') this.fail('the backreference \\k<...> is not supported', at);
    if (c === 'p' || c === 'P') this.fail(`the Unicode property escape \\${c}{...} is not supported`, at);
    if (c === 'x') {
      const h = this.cps.slice(this.i, this.i + 2).join('');
      if (!/^[0-9a-fA-F]{2}$/.test(h)) this.fail('\\x needs two hex digits', at);
      this.i += 2;
      return this.codePoint(parseInt(h, 16), inClass);
    }
    if (c === 'u') {
      const rest = this.cps.slice(this.i, this.i + 10).join('');
      const m = /^\{([0-9a-fA-F]{1,6})\}/.exec(rest) ?? /^([0-9a-fA-F]{4})/.exec(rest);
      if (!m) this.fail('\\u needs four hex digits or {hex}', at);
      const cp = parseInt(m[1], 16);
      if (cp > 0x10ffff) this.fail('\\u{...} past U+10FFFF', at);
      this.i += m[0].length;
      if (cp >= 0xd800 && cp <= 0xdfff) this.fail('a surrogate code point \\u (not a character of UTF-8 text)', at);
      return this.codePoint(cp, inClass);
    }
    if (SYNTAX_CHARS.includes(c) || (inClass && c === '-')) return this.codePoint(c.codePointAt(0)!, inClass);
    return this.fail(`the escape \\${c} is not supported`, at);
  }

  private codePoint(cp: number, inClass: boolean): RegexNode | number {
    return inClass ? cp : single(cp);
  }

  private charClass(at: number, end: number): CharRanges {
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.i++;
    }
    const ranges: [number, number][] = [];
    for (;;) {
      if (this.i >= end) this.fail(`an unterminated class '['`, at);
      if (this.peek() === ']') {
        this.i++;
        break;
      }
      const lo = this.classAtom(end);
      if (this.peek() === '-' && this.peek(1) !== ']' && this.i + 1 < end) {
        this.i++;
        const hi = this.classAtom(end);
        if (typeof lo !== 'number' || typeof hi !== 'number')
          this.fail('a class range with a class escape (\\d, \\w, \\s) as an end', at);
        if (hi < lo) this.fail('a class range out of order', at);
        ranges.push([lo, hi]);
      } else if (typeof lo === 'number') ranges.push([lo, lo]);
      else ranges.push(...lo);
    }
    const set = normalizeRanges(ranges);
    const out = negate ? complementRanges(set) : set;
    if (out.length === 0) this.fail('a class that matches no character', at);
    return out;
  }

  /** A code point, or a class escape's ranges. */
  private classAtom(end: number): number | CharRanges {
    const at = this.i;
    const c = this.cps[this.i++];
    if (c !== '\\') return c.codePointAt(0)!;
    const e = this.escape(at, true, end);
    return typeof e === 'number' ? e : (e as { ranges: CharRanges }).ranges;
  }
}

/**
 * Parses a regular expression (checked by the JavaScript engine first, with the u flag); `name`
 * names it in messages ('regex', 'pattern at /properties/id').
 */
export function parseRegex(src: unknown, where: string, name = 'regex'): ParsedRegex {
  let text: string;
  if (src instanceof RegExp) {
    const bad = src.flags.replace(/[ug]/g, '');
    if (bad) throw argError(where, `${name}: the flags '${bad}' are not supported (only u)`, name);
    text = src.source;
  } else if (typeof src === 'string') text = src;
  else throw argError(where, `${name} must be a string or a RegExp, got ${describeType(src)}`, name);
  if (text.length === 0) throw argError(where, `${name} must not be empty`, name);
  if (text.length > LIMITS.regexChars)
    throw argError(where, `${name} is longer than ${LIMITS.regexChars} characters, the limit`, name);
  try {
    new RegExp(text, 'u');
  } catch (e) {
    throw argError(where, `${name} is not a valid regular expression: ${(e as Error).message}`, name);
  }
  return new RegexParser(text, where, name).parse();
}

/** The characters a JSON string writes as an escape (`"`, `\`, controls). */
const JSON_ESCAPED: CharRanges = normalizeRanges([
  [0, 0x1f],
  [0x22, 0x22],
  [0x5c, 0x5c],
]);

const jsonEscape = (cp: number): string => JSON.stringify(String.fromCodePoint(cp)).slice(1, -1);

/** The GBNF of a set of characters; `json`: as they are written inside a JSON string. */
export function setExpr(ranges: CharRanges, json: boolean): string {
  if (!json)
    return ranges.length === 1 && ranges[0][0] === ranges[0][1]
      ? GbnfWriter.literal(String.fromCodePoint(ranges[0][0]))
      : GbnfWriter.charClass(ranges);
  const plain = subtractRanges(ranges, JSON_ESCAPED);
  const alts: string[] = [];
  if (plain.length > 0) alts.push(setExpr(plain, false));
  for (const [a, b] of JSON_ESCAPED)
    for (let cp = a; cp <= b; cp++) if (rangesHave(ranges, cp)) alts.push(GbnfWriter.literal(jsonEscape(cp)));
  return alts.length === 1 ? alts[0] : `(${alts.join(' | ')})`;
}

/** A literal of the text; `json`: as written inside a JSON string. */
const literalExpr = (s: string, json: boolean): string => GbnfWriter.literal(json ? JSON.stringify(s).slice(1, -1) : s);

const grouped = (e: string): string =>
  /^("([^"\\]|\\.)*"|\[([^\]\\]|\\.)*\]|\(.*\)|[a-z0-9-]+)$/s.test(e) && balanced(e) ? e : `(${e})`;

/** Whether a parenthesized expression's outer parentheses enclose all of it. */
function balanced(e: string): boolean {
  if (!e.startsWith('(')) return true;
  let depth = 0;
  let inStr = false;
  let inClass = false;
  for (let i = 0; i < e.length; i++) {
    const c = e[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inStr) inStr = c !== '"';
    else if (inClass) inClass = c !== ']';
    else if (c === '"') inStr = true;
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0 && i < e.length - 1) return false;
  }
  return true;
}

function repeatSuffix(min: number, max: number): string {
  if (min === 0 && max === Infinity) return '*';
  if (min === 1 && max === Infinity) return '+';
  if (min === 0 && max === 1) return '?';
  if (max === Infinity) return `{${min},}`;
  return min === max ? `{${min}}` : `{${min},${max}}`;
}

/** Whether the node matches the empty string. */
export function nullable(n: RegexNode): boolean {
  switch (n.t) {
    case 'set':
      return false;
    case 'seq':
      return n.items.every(nullable);
    case 'alt':
      return n.alts.some(nullable);
    case 'rep':
      return n.min === 0 || n.max === 0 || nullable(n.node);
  }
}

/** A node matching the non-empty strings the node matches (null: it matches only the empty string). */
export function nonEmpty(n: RegexNode): RegexNode | null {
  if (!nullable(n)) return n;
  switch (n.t) {
    case 'set':
      return n;
    case 'alt': {
      const alts = n.alts.map(nonEmpty).filter((a): a is RegexNode => a !== null);
      return alts.length === 0 ? null : alts.length === 1 ? alts[0] : { t: 'alt', alts };
    }
    case 'seq': {
      // every item is nullable: the first non-empty item, then anything of the rest
      const alts: RegexNode[] = [];
      n.items.forEach((item, i) => {
        const ne = nonEmpty(item);
        if (ne !== null) alts.push({ t: 'seq', items: [ne, ...n.items.slice(i + 1)] });
      });
      return alts.length === 0 ? null : alts.length === 1 ? alts[0] : { t: 'alt', alts };
    }
    case 'rep': {
      const inner = n.max === 0 ? null : nonEmpty(n.node);
      return inner === null ? null : { t: 'rep', node: inner, min: 1, max: n.max };
    }
  }
}

/**
 * The GBNF expression of a parsed regex node, or null when it matches only the empty string;
 * `json`: characters as written inside a JSON string.
 */
export function regexExpr(node: RegexNode, json: boolean): string | null {
  switch (node.t) {
    case 'set':
      return setExpr(node.ranges, json);
    case 'seq': {
      const parts: string[] = [];
      let run = '';
      const flush = () => {
        if (run) parts.push(literalExpr(run, json));
        run = '';
      };
      for (const item of node.items) {
        if (item.t === 'set' && item.ranges.length === 1 && item.ranges[0][0] === item.ranges[0][1]) {
          run += String.fromCodePoint(item.ranges[0][0]);
          continue;
        }
        flush();
        const e = regexExpr(item, json);
        if (e !== null) parts.push(e.includes('|') ? grouped(e) : e);
      }
      flush();
      return parts.length === 0 ? null : parts.join(' ');
    }
    case 'alt': {
      const alts = node.alts.map((a) => regexExpr(a, json));
      const some = [...new Set(alts.filter((a): a is string => a !== null))];
      if (some.length === 0) return null;
      const body = some.length === 1 ? some[0] : `(${some.join(' | ')})`;
      return alts.includes(null) ? `${grouped(body)}?` : body;
    }
    case 'rep': {
      if (node.max === 0) return null;
      // a repeated part that can match the empty string repeats its non-empty strings instead (the
      // same language; GBNF engines refuse an empty-matching repetition, which could loop)
      if (nullable(node.node)) {
        const ne = nonEmpty(node.node);
        return ne === null ? null : regexExpr({ t: 'rep', node: ne, min: 0, max: node.max }, json);
      }
      const inner = regexExpr(node.node, json);
      if (inner === null) return null;
      if (node.min === 1 && node.max === 1) return inner;
      return `${grouped(inner)}${repeatSuffix(node.min, node.max)}`;
    }
  }
}

/** A GBNF grammar whose strings are those the whole regex matches (see the file's comment). */
export function regexToGbnf(src: unknown, where = 'regex', name = 'regex'): string {
  const { node } = parseRegex(src, where, name);
  const e = regexExpr(node, false);
  if (e === null) throw argError(where, `${name} matches only the empty string`, name);
  const w = new GbnfWriter(where);
  w.root(e);
  return w.text();
}
