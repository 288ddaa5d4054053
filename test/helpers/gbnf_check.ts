/**
 * An independent GBNF reader for tests: parses llama.cpp's grammar syntax (rules `name ::= ...`,
 * literals, classes, `.`, groups, `|`, `* + ? {m} {m,} {m,n}`, `#` comments, alternatives continued
 * on lines starting with `|`), then recognizes strings with an Earley parser over code points, and
 * samples random strings of the grammar. Written for the tests alone (it shares no code with
 * lib/constrain or the native engine), so it checks them rather than repeating them.
 *
 * @example
 *   const g = parseGbnf('root ::= "a" [0-9]+');
 *   g.accepts('a12');            // true
 *   g.sample(rng);               // e.g. 'a7'
 */

type Range = [number, number];
/** A grammar symbol: a nonterminal id (>= 0) or a terminal ~index (< 0). */
type Sym = number;

interface Node {
  k: 'alt' | 'seq' | 'lit' | 'cls' | 'ref' | 'rep';
  alts?: Node[];
  items?: Node[];
  cps?: number[];
  ranges?: Range[];
  name?: string;
  node?: Node;
  min?: number;
  max?: number;
}

const MAX_CP = 0x10ffff;

function complement(rs: Range[]): Range[] {
  const sorted = [...rs].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  let next = 0;
  for (const [a, b] of sorted) {
    if (a > next) out.push([next, a - 1]);
    next = Math.max(next, b + 1);
  }
  if (next <= MAX_CP) out.push([next, MAX_CP]);
  return out;
}

class Reader {
  private i = 0;
  constructor(private readonly s: string) {}

  err(msg: string): never {
    throw new Error(`gbnf_check: ${msg} at ${this.i}: ${JSON.stringify(this.s.slice(this.i, this.i + 30))}`);
  }

  /** Skips spaces and comments; newlines too when `newlines`. */
  space(newlines: boolean): void {
    for (;;) {
      const c = this.s[this.i];
      if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) this.i++;
      else if (c === '#') while (this.i < this.s.length && this.s[this.i] !== '\n') this.i++;
      else return;
    }
  }

  rules(): Map<string, Node> {
    const out = new Map<string, Node>();
    this.space(true);
    while (this.i < this.s.length) {
      const name = this.name();
      this.space(false);
      if (this.s.slice(this.i, this.i + 3) !== '::=') this.err("expected '::='");
      this.i += 3;
      if (out.has(name)) this.err(`rule ${name} defined twice`);
      out.set(name, this.alternatives(false));
      this.space(true);
    }
    return out;
  }

  name(): string {
    const m = /^[a-zA-Z0-9-]+/.exec(this.s.slice(this.i));
    if (!m) this.err('expected a rule name');
    this.i += m[0].length;
    return m[0];
  }

  alternatives(nested: boolean): Node {
    const alts = [this.sequence(nested)];
    for (;;) {
      const save = this.i;
      this.space(true);
      if (this.s[this.i] === '|') {
        this.i++;
        alts.push(this.sequence(nested));
      } else {
        this.i = save;
        break;
      }
    }
    return { k: 'alt', alts };
  }

  sequence(nested: boolean): Node {
    const items: Node[] = [];
    for (;;) {
      this.space(nested);
      const c = this.s[this.i];
      if (c === undefined || c === '|' || c === ')' || c === '\n' || c === '\r') break;
      // a new rule starts on this line: `name ::=`
      if (!nested && /^[a-zA-Z0-9-]+\s*::=/.test(this.s.slice(this.i))) break;
      let atom: Node;
      if (c === '"') atom = this.literal();
      else if (c === '[') atom = this.charClass();
      else if (c === '.') {
        this.i++;
        atom = { k: 'cls', ranges: [[0, MAX_CP]] };
      } else if (c === '(') {
        this.i++;
        atom = this.alternatives(true);
        this.space(true);
        if (this.s[this.i] !== ')') this.err("expected ')'");
        this.i++;
      } else atom = { k: 'ref', name: this.name() };
      items.push(this.quantifier(atom));
    }
    return { k: 'seq', items };
  }

  quantifier(atom: Node): Node {
    const c = this.s[this.i];
    if (c === '*') return (this.i++, { k: 'rep', node: atom, min: 0, max: Infinity });
    if (c === '+') return (this.i++, { k: 'rep', node: atom, min: 1, max: Infinity });
    if (c === '?') return (this.i++, { k: 'rep', node: atom, min: 0, max: 1 });
    if (c === '{') {
      const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(this.s.slice(this.i));
      if (!m) this.err('bad {m,n}');
      this.i += m[0].length;
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      return { k: 'rep', node: atom, min, max };
    }
    return atom;
  }

  escape(): number {
    const c = this.s[this.i++];
    const hex = (n: number) => {
      const h = this.s.slice(this.i, this.i + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(h)) this.err('bad hex escape');
      this.i += n;
      return parseInt(h, 16);
    };
    switch (c) {
      case 'n':
        return 10;
      case 'r':
        return 13;
      case 't':
        return 9;
      case 'x':
        return hex(2);
      case 'u':
        return hex(4);
      case 'U':
        return hex(8);
      default:
        return c.codePointAt(0)!;
    }
  }

  /** The next code point of a literal or class (escapes decoded). */
  char(): number {
    if (this.s[this.i] === '\\') {
      this.i++;
      return this.escape();
    }
    const cp = this.s.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return cp;
  }

  literal(): Node {
    this.i++;
    const cps: number[] = [];
    while (this.s[this.i] !== '"') {
      if (this.i >= this.s.length) this.err('unterminated literal');
      cps.push(this.char());
    }
    this.i++;
    return { k: 'lit', cps };
  }

  charClass(): Node {
    this.i++;
    const neg = this.s[this.i] === '^';
    if (neg) this.i++;
    const ranges: Range[] = [];
    while (this.s[this.i] !== ']') {
      if (this.i >= this.s.length) this.err('unterminated class');
      const lo = this.char();
      if (this.s[this.i] === '-' && this.s[this.i + 1] !== ']') {
        this.i++;
        ranges.push([lo, this.char()]);
      } else ranges.push([lo, lo]);
    }
    this.i++;
    return { k: 'cls', ranges: neg ? complement(ranges) : ranges };
  }
}

export interface Gbnf {
  /** Whether the whole string derives from `root`. */
  accepts(text: string): boolean;
  /** A random string of the grammar (rng: uniform in [0, 1)); long derivations are cut short the cheapest way. */
  sample(rng: () => number, budget?: number): string;
  /** The rule names. */
  readonly rules: string[];
}

/** Parses GBNF text (throws on a syntax error or an undefined rule). */
export function parseGbnf(text: string): Gbnf {
  const rules = new Reader(text).rules();
  if (!rules.has('root')) throw new Error('gbnf_check: no root rule');
  // BNF: productions per nonterminal; terminals are code point sets
  const prods: Sym[][][] = [];
  const terms: Range[][] = [];
  const ids = new Map<string, number>();
  const newNt = () => prods.push([]) - 1;
  for (const name of rules.keys()) ids.set(name, newNt());
  const term = (rs: Range[]) => ~(terms.push(rs) - 1);
  const seqOf = (n: Node): Sym[] => {
    switch (n.k) {
      case 'lit':
        return n.cps!.map((cp) => term([[cp, cp]]));
      case 'cls':
        return [term(n.ranges!)];
      case 'ref': {
        const id = ids.get(n.name!);
        if (id === undefined) throw new Error(`gbnf_check: undefined rule ${n.name}`);
        return [id];
      }
      case 'seq':
        return n.items!.flatMap(seqOf);
      case 'alt': {
        if (n.alts!.length === 1) return seqOf(n.alts![0]);
        const nt = newNt();
        for (const a of n.alts!) prods[nt].push(seqOf(a));
        return [nt];
      }
      case 'rep': {
        const inner = seqOf(n.node!);
        const out: Sym[] = [];
        for (let i = 0; i < n.min!; i++) out.push(...inner);
        if (n.max === Infinity) {
          const star = newNt(); // star ::= | inner star
          prods[star].push([], [...inner, star]);
          out.push(star);
        } else {
          // nested optionals: (inner (inner (...)?)?)?
          let tail: number | null = null;
          for (let i = n.min!; i < n.max!; i++) {
            const opt = newNt();
            prods[opt].push([], tail === null ? [...inner] : [...inner, tail]);
            tail = opt;
          }
          if (tail !== null) out.push(tail);
        }
        return out;
      }
    }
  };
  for (const [name, body] of rules) {
    const id = ids.get(name)!;
    for (const a of body.alts!) prods[id].push(seqOf(a));
  }
  // nullable nonterminals and the cheapest expansion of each (for sampling)
  const nullable = new Array<boolean>(prods.length).fill(false);
  const cost = new Array<number>(prods.length).fill(Infinity);
  for (let changed = true; changed;) {
    changed = false;
    prods.forEach((ps, nt) => {
      for (const p of ps) {
        if (!nullable[nt] && p.every((s) => s >= 0 && nullable[s])) nullable[nt] = changed = true;
        const c = p.reduce((acc, s) => acc + (s < 0 ? 1 : cost[s]), 0);
        if (c < cost[nt]) {
          cost[nt] = c;
          changed = true;
        }
      }
    });
  }
  const inTerm = (t: number, cp: number) => terms[~t].some(([a, b]) => cp >= a && cp <= b);
  const root = ids.get('root')!;

  function accepts(textIn: string): boolean {
    const input = [...textIn].map((c) => c.codePointAt(0)!);
    // item: [nt, prod, dot, origin]
    type Item = [number, number, number, number];
    const sets: Item[][] = [];
    const seen: Set<string>[] = [];
    const add = (k: number, it: Item) => {
      const key = `${it[0]},${it[1]},${it[2]},${it[3]}`;
      if (seen[k].has(key)) return;
      seen[k].add(key);
      sets[k].push(it);
    };
    for (let k = 0; k <= input.length; k++) {
      sets.push([]);
      seen.push(new Set());
    }
    prods[root].forEach((_, p) => add(0, [root, p, 0, 0]));
    for (let k = 0; k <= input.length; k++) {
      const set = sets[k];
      for (let j = 0; j < set.length; j++) {
        const [nt, p, dot, origin] = set[j];
        const rhs = prods[nt][p];
        if (dot === rhs.length) {
          // complete
          for (const [nt2, p2, dot2, o2] of sets[origin]) if (prods[nt2][p2][dot2] === nt) add(k, [nt2, p2, dot2 + 1, o2]);
          continue;
        }
        const s = rhs[dot];
        if (s >= 0) {
          prods[s].forEach((_, q) => add(k, [s, q, 0, k]));
          if (nullable[s]) add(k, [nt, p, dot + 1, origin]);
        } else if (k < input.length && inTerm(s, input[k])) add(k + 1, [nt, p, dot + 1, origin]);
      }
      if (sets[k].length === 0) return false;
    }
    return sets[input.length].some(([nt, p, dot, origin]) => nt === root && origin === 0 && dot === prods[nt][p].length);
  }

  function pickChar(rs: Range[], rng: () => number): number {
    const ascii = rs.map(([a, b]): Range => [Math.max(a, 0x20), Math.min(b, 0x7e)]).filter(([a, b]) => a <= b);
    const pool = ascii.length > 0 && rng() < 0.9 ? ascii : rs.filter(([a, b]) => !(a >= 0xd800 && b <= 0xdfff));
    const [a, b] = pool[Math.floor(rng() * pool.length)];
    let cp = a + Math.floor(rng() * (b - a + 1));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = b > 0xdfff ? 0xe000 : a;
    return cp;
  }

  function sample(rng: () => number, budget = 400): string {
    let out = '';
    let used = 0;
    const walk = (nt: number) => {
      const ps = prods[nt];
      let p: Sym[];
      if (used > budget) {
        p = ps.reduce((best, q) =>
          q.reduce((a, s) => a + (s < 0 ? 1 : cost[s]), 0) < best.reduce((a, s) => a + (s < 0 ? 1 : cost[s]), 0) ? q : best,
        );
      } else {
        const finite = ps.filter((q) => q.every((s) => s < 0 || cost[s] < Infinity));
        p = finite[Math.floor(rng() * finite.length)];
      }
      used++;
      for (const s of p) {
        if (s < 0) out += String.fromCodePoint(pickChar(terms[~s], rng));
        else walk(s);
      }
    };
    walk(root);
    return out;
  }

  return { accepts, sample, rules: [...rules.keys()] };
}
