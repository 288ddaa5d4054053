/**
 * The tests' own grammar model, independent of native/constrain/: random grammar trees rendered to
 * GBNF, and a Thompson NFA over code points built from the same trees that answers "may this byte
 * string still become a sentence?" (incomplete trailing UTF-8 included) and "is it one?".
 */
import fc from 'fast-check';

export type Node =
  | { k: 'lit'; s: string }
  | { k: 'cls'; ranges: [number, number][]; neg: boolean }
  | { k: 'seq' | 'alt'; xs: Node[] }
  | { k: 'star' | 'plus' | 'opt'; x: Node }
  | { k: 'rep'; x: Node; m: number; n: number };

const ALPHABET = ['a', 'b', 'c', ' ', '1', '"', '\\', 'é', '€', '😀', '\n', '-', ']'];

const charArb = fc.constantFrom(...ALPHABET);
const cpArb = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0xa0, max: 0x3000 }), fc.constant(0x1f600));

/** Random grammar trees: literals, classes (some negated), sequences, alternations, repetitions. */
export const nodeArb: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.array(charArb, { minLength: 1, maxLength: 3 }).map((cs): Node => ({ k: 'lit', s: cs.join('') })),
    fc
      .tuple(fc.array(fc.tuple(cpArb, fc.integer({ min: 0, max: 40 })), { minLength: 1, maxLength: 3 }), fc.boolean())
      .map(([rs, neg]): Node => ({ k: 'cls', ranges: rs.map(([lo, w]) => [lo, lo + w]), neg })),
    fc.array(tie('node'), { minLength: 2, maxLength: 3 }).map((xs): Node => ({ k: 'seq', xs })),
    fc.array(tie('node'), { minLength: 2, maxLength: 3 }).map((xs): Node => ({ k: 'alt', xs })),
    fc.tuple(fc.constantFrom('star', 'plus', 'opt'), tie('node')).map(([k, x]): Node => ({ k: k as 'star', x })),
    fc
      .tuple(tie('node'), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }))
      .map(([x, m, d]): Node => ({ k: 'rep', x, m, n: m + d })),
  ),
})).node;

function escapeChar(cp: number, inClass: boolean): string {
  const c = String.fromCodePoint(cp);
  if (c === '\\' || c === '"' || (inClass && (c === ']' || c === '-' || c === '^' || c === '['))) return '\\' + c;
  if (cp === 10) return '\\n';
  if (cp < 0x20 || cp === 0x7f) return '\\x' + cp.toString(16).padStart(2, '0');
  if (cp > 0xffff) return '\\U' + cp.toString(16).padStart(8, '0');
  if (cp > 0x7e && cp % 3 === 0) return '\\u' + cp.toString(16).padStart(4, '0'); // escapes and raw UTF-8 both
  return c;
}

/** GBNF for a tree (one rule, groups in parentheses). */
export function render(n: Node): string {
  switch (n.k) {
    case 'lit':
      return '"' + [...n.s].map((c) => escapeChar(c.codePointAt(0)!, false)).join('') + '"';
    case 'cls':
      return (
        '[' +
        (n.neg ? '^' : '') +
        n.ranges
          .map(([lo, hi]) => (lo === hi ? escapeChar(lo, true) : `${escapeChar(lo, true)}-${escapeChar(hi, true)}`))
          .join('') +
        ']'
      );
    case 'seq':
      return '(' + n.xs.map(render).join(' ') + ')';
    case 'alt':
      return '(' + n.xs.map(render).join(' | ') + ')';
    case 'star':
      return '(' + render(n.x) + ')*';
    case 'plus':
      return '(' + render(n.x) + ')+';
    case 'opt':
      return '(' + render(n.x) + ')?';
    case 'rep':
      return '(' + render(n.x) + `){${n.m},${n.n}}`;
  }
}

/** Whether the tree can match the empty string (repetitions of such a thing are left recursion for GBNF). */
export function nullable(n: Node): boolean {
  switch (n.k) {
    case 'lit':
      return n.s.length === 0;
    case 'cls':
      return false;
    case 'seq':
      return n.xs.every(nullable);
    case 'alt':
      return n.xs.some(nullable);
    case 'star':
    case 'opt':
      return true;
    case 'plus':
      return nullable(n.x);
    case 'rep':
      return n.m === 0 || nullable(n.x);
  }
}

/** True when a repetition (*, +, {m,}) holds something that can be empty: GBNF engines refuse those. */
export function hasNullableLoop(n: Node): boolean {
  switch (n.k) {
    case 'lit':
    case 'cls':
      return false;
    case 'seq':
    case 'alt':
      return n.xs.some(hasNullableLoop);
    case 'star':
    case 'plus':
      return nullable(n.x) || hasNullableLoop(n.x);
    case 'opt':
    case 'rep':
      return hasNullableLoop(n.x);
  }
}

type Pred = (lo: number, hi: number) => boolean; // some member in [lo, hi]

/** A Thompson NFA: edges on code-point predicates, epsilon edges, one accepting state. */
export class Nfa {
  private eps: number[][] = [];
  private edges: { pred: Pred; to: number }[][] = [];
  readonly start: number;
  readonly accept: number;

  constructor(root: Node) {
    this.start = this.state();
    this.accept = this.state();
    this.build(root, this.start, this.accept);
  }

  private state(): number {
    this.eps.push([]);
    this.edges.push([]);
    return this.eps.length - 1;
  }

  private build(n: Node, from: number, to: number): void {
    switch (n.k) {
      case 'lit': {
        let cur = from;
        const cps = [...n.s].map((c) => c.codePointAt(0)!);
        cps.forEach((cp, i) => {
          const next = i === cps.length - 1 ? to : this.state();
          this.edges[cur].push({ pred: (lo, hi) => lo <= cp && cp <= hi, to: next });
          cur = next;
        });
        if (cps.length === 0) this.eps[from].push(to);
        break;
      }
      case 'cls': {
        const rs = n.ranges,
          neg = n.neg;
        const inside = (lo: number, hi: number) => rs.some(([a, b]) => a <= hi && b >= lo);
        // negated: some point of [lo, hi] outside every range
        const outside = (lo: number, hi: number) => {
          for (let c = lo; c <= hi;) {
            const r = rs.find(([a, b]) => a <= c && c <= b);
            if (!r) return true;
            c = r[1] + 1;
          }
          return false;
        };
        this.edges[from].push({ pred: neg ? outside : inside, to });
        break;
      }
      case 'seq': {
        let cur = from;
        n.xs.forEach((x, i) => {
          const next = i === n.xs.length - 1 ? to : this.state();
          this.build(x, cur, next);
          cur = next;
        });
        break;
      }
      case 'alt':
        for (const x of n.xs) this.build(x, from, to);
        break;
      case 'star': {
        const a = this.state(),
          b = this.state();
        this.eps[from].push(a, to);
        this.build(n.x, a, b);
        this.eps[b].push(a, to);
        break;
      }
      case 'plus': {
        const a = this.state(),
          b = this.state();
        this.eps[from].push(a);
        this.build(n.x, a, b);
        this.eps[b].push(a, to);
        break;
      }
      case 'opt':
        this.eps[from].push(to);
        this.build(n.x, from, to);
        break;
      case 'rep': {
        let cur = from;
        for (let i = 0; i < n.n; i++) {
          const next = this.state();
          this.build(n.x, cur, next);
          if (i >= n.m) this.eps[cur].push(to);
          cur = next;
        }
        this.eps[cur].push(to);
        break;
      }
    }
  }

  closure(set: number[]): number[] {
    const seen = new Set(set);
    const todo = [...set];
    while (todo.length)
      for (const t of this.eps[todo.pop()!])
        if (!seen.has(t)) {
          seen.add(t);
          todo.push(t);
        }
    return [...seen].sort((a, b) => a - b);
  }

  step(set: number[], lo: number, hi: number): number[] {
    const out: number[] = [];
    for (const s of set) for (const e of this.edges[s]) if (e.pred(lo, hi)) out.push(e.to);
    return this.closure(out);
  }

  accepts(set: number[]): boolean {
    return set.includes(this.accept);
  }
}

/** Where a byte string leaves the NFA: its state set and the incomplete character's bytes, or null (refused). */
export interface RefPosition {
  set: number[];
  partial: number[];
}

/** The code points an incomplete (or complete) UTF-8 sequence can stand for, or null when it is malformed. */
export function utf8Range(bytes: number[]): [number, number] | null {
  const b0 = bytes[0];
  const len = b0 < 0x80 ? 1 : b0 >= 0xc2 && b0 <= 0xdf ? 2 : b0 >= 0xe0 && b0 <= 0xef ? 3 : b0 >= 0xf0 && b0 <= 0xf4 ? 4 : 0;
  if (len === 0 || bytes.length > len) return null;
  let v = len === 1 ? b0 : b0 & (0xff >> (len + 1));
  for (const b of bytes.slice(1)) {
    if ((b & 0xc0) !== 0x80) return null;
    v = v * 64 + (b & 0x3f);
  }
  const rest = len - bytes.length;
  let lo = v * 64 ** rest,
    hi = lo + 64 ** rest - 1;
  lo = Math.max(lo, [0, 0, 0x80, 0x800, 0x10000][len]);
  hi = Math.min(hi, [0, 0x7f, 0x7ff, 0xffff, 0x10ffff][len]);
  if (lo >= 0xd800 && lo <= 0xdfff) lo = 0xe000;
  if (hi >= 0xd800 && hi <= 0xdfff) hi = 0xd7ff;
  return lo <= hi ? [lo, hi] : null;
}

/** Feeds bytes to a position: the new position, or null when no sentence starts with them. */
export function feed(nfa: Nfa, pos: RefPosition, bytes: number[]): RefPosition | null {
  let set = pos.set,
    partial = pos.partial;
  for (const b of bytes) {
    partial = [...partial, b];
    const r = utf8Range(partial);
    if (!r) return null;
    const b0 = partial[0];
    const len = b0 < 0x80 ? 1 : b0 < 0xe0 ? 2 : b0 < 0xf0 ? 3 : 4;
    if (partial.length === len) {
      set = nfa.step(set, r[0], r[0]);
      partial = [];
      if (set.length === 0) return null;
    } else if (nfa.step(set, r[0], r[1]).length === 0) {
      return null;
    }
  }
  return { set, partial };
}
