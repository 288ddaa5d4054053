/**
 * Random constraints for the structured-output tests (fast-check): regular expressions and JSON
 * schemas of the supported subsets, each with a sampler of strings / instances it accepts (written
 * from the definitions, independently of lib/constrain).
 */
import fc from 'fast-check';

type Rng = () => number;
export type Schema = Record<string, unknown>;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

/** A random regex: its source and a sampler of strings it matches. */
export interface Rx {
  src: string;
  gen: (rng: () => number) => string;
  /** Whether the source is an atom a quantifier may follow directly. */
  atom: boolean;
}

const leaf: fc.Arbitrary<Rx> = fc.constantFrom<Rx>(
  { src: 'a', gen: () => 'a', atom: true },
  { src: 'b', gen: () => 'b', atom: true },
  { src: '-', gen: () => '-', atom: true },
  { src: '\\.', gen: () => '.', atom: true },
  { src: '"', gen: () => '"', atom: true },
  { src: 'é', gen: () => 'é', atom: true },
  { src: '\\d', gen: (r) => pick(r, ['0', '5', '9']), atom: true },
  { src: '\\w', gen: (r) => pick(r, ['a', 'Z', '_', '3']), atom: true },
  { src: '\\s', gen: (r) => pick(r, [' ', '\t', '\n']), atom: true },
  { src: '[a-c]', gen: (r) => pick(r, ['a', 'b', 'c']), atom: true },
  { src: '[^ab]', gen: (r) => pick(r, ['c', '-', '1', 'x']), atom: true },
  { src: '[\\d.x-]', gen: (r) => pick(r, ['4', '.', 'x', '-']), atom: true },
  { src: '.', gen: (r) => pick(r, ['a', ' ', '.', '😀']), atom: true },
  { src: '\\u{1F600}', gen: () => '😀', atom: true },
  { src: '\\x41', gen: () => 'A', atom: true },
);

export const rx: fc.Arbitrary<Rx> = fc.letrec<{ r: Rx }>((tie) => ({
  r: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('r'), { minLength: 2, maxLength: 4 }).map((xs) => ({
      src: xs.map((x) => x.src).join(''),
      gen: (rng: () => number) => xs.map((x) => x.gen(rng)).join(''),
      atom: false,
    })),
    fc.array(tie('r'), { minLength: 2, maxLength: 3 }).map((xs) => ({
      src: `(${xs.map((x) => x.src).join('|')})`,
      gen: (rng: () => number) => pick(rng, xs).gen(rng),
      atom: true,
    })),
    fc.tuple(tie('r'), fc.constantFrom('*', '+', '?', '{2}', '{1,3}', '{0,2}', '{2,}', '*?')).map(([x, q]) => {
      const [min, max] = {
        '*': [0, 3],
        '*?': [0, 3],
        '+': [1, 3],
        '?': [0, 1],
        '{2}': [2, 2],
        '{1,3}': [1, 3],
        '{0,2}': [0, 2],
        '{2,}': [2, 4],
      }[q]!;
      const src = x.atom ? x.src : `(?:${x.src})`;
      return {
        src: `${src}${q}`,
        gen: (rng: () => number) => {
          let s = '';
          const n = min + Math.floor(rng() * (max - min + 1));
          for (let i = 0; i < n; i++) s += x.gen(rng);
          return s;
        },
        atom: false,
      };
    }),
  ),
})).r;

/** Patterns of the random schemas, each with a sampler of strings it matches. */
const PATTERNS: [string, (r: Rng) => string][] = [
  ['^[a-z]{2,4}$', (r) => Array.from({ length: int(r, 2, 4) }, () => pick(r, ['a', 'q', 'z'])).join('')],
  ['^\\d{3}-\\d{2}$', (r) => `${int(r, 100, 999)}-${int(r, 10, 99)}`],
  ['^(foo|ba"r)+$', (r) => Array.from({ length: int(r, 1, 3) }, () => pick(r, ['foo', 'ba"r'])).join('')],
  ['ab', (r) => `${pick(r, ['', 'x', '\n', 'é'])}ab${pick(r, ['', '"', 'zz'])}`],
  ['^\\\\[^\\n]$', (r) => `\\${pick(r, ['a', '"', '\\'])}`],
];

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
function dateTime(r: Rng): string {
  const m = int(r, 1, 12);
  const zone = pick(r, ['Z', `+${pad(int(r, 0, 23))}:${pad(int(r, 0, 59))}`, `-05:30`]);
  const frac = pick(r, ['', '.5', '.123456']);
  return `${int(r, 1970, 2100)}-${pad(m)}-${pad(int(r, 1, DAYS[m - 1]))}T${pad(int(r, 0, 23))}:${pad(int(r, 0, 59))}:${pad(int(r, 0, 59))}${frac}${zone}`;
}

const STRING_CHARS = ['a', 'Z', ' ', '"', '\\', '\n', '\t', '\u0001', 'é', '😀', '/', '\u2028'];

/** A random schema of the subset, with a sampler of valid instances (properties in declared order). */
export interface Sx {
  schema: Schema;
  gen: (r: Rng) => unknown;
}

const leafSchema: fc.Arbitrary<Sx> = fc.oneof(
  fc.constant<Sx>({ schema: { type: 'boolean' }, gen: (r) => r() < 0.5 }),
  fc.constant<Sx>({ schema: { type: 'null' }, gen: () => null }),
  fc.constant<Sx>({
    schema: { type: 'string' },
    gen: (r) => Array.from({ length: int(r, 0, 6) }, () => pick(r, STRING_CHARS)).join(''),
  }),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 4 })).map(([lo, extra]): Sx => ({
    schema: { type: 'string', minLength: lo, maxLength: lo + extra },
    gen: (r) => Array.from({ length: int(r, lo, lo + extra) }, () => pick(r, STRING_CHARS)).join(''),
  })),
  fc.uniqueArray(fc.constantFrom('red', 'green', 'a"b', 'é', ''), { minLength: 1, maxLength: 3 }).map((xs): Sx => ({
    schema: { type: 'string', enum: xs },
    gen: (r) => pick(r, xs),
  })),
  fc.constantFrom(...PATTERNS).map(([p, g]): Sx => ({ schema: { type: 'string', pattern: p }, gen: g })),
  fc.constant<Sx>({ schema: { type: 'string', format: 'date-time' }, gen: dateTime }),
  fc.constantFrom<unknown>(1, 'x', null, true, { k: [1, 2] }).map((c): Sx => ({ schema: { const: c }, gen: () => c })),
  fc
    .tuple(
      fc.option(fc.integer({ min: -150, max: 150 }), { nil: undefined }),
      fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined }),
      fc.boolean(),
    )
    .map(([lo, span, exclusive]): Sx => {
      const schema: Schema = { type: 'integer' };
      const hi = lo !== undefined && span !== undefined ? lo + span + (exclusive ? 2 : 0) : span;
      if (lo !== undefined) schema[exclusive ? 'exclusiveMinimum' : 'minimum'] = lo;
      if (hi !== undefined) schema[exclusive ? 'exclusiveMaximum' : 'maximum'] = hi;
      const first = lo === undefined ? (hi ?? 0) - 1000 : lo + (exclusive ? 1 : 0);
      const last = hi === undefined ? first + 100000 : hi - (exclusive ? 1 : 0);
      return { schema, gen: (r) => int(r, first, last) };
    }),
  fc
    .tuple(fc.integer({ min: -40, max: 40 }), fc.integer({ min: 1, max: 60 }), fc.constantFrom(0, 0.5, 0.25))
    .map(([lo, span, off]): Sx => {
      const schema: Schema = { type: 'number', minimum: lo - off, exclusiveMaximum: lo + span + off };
      return {
        schema,
        // an integer in the bounds, or I.F with (I, I + 1) inside them
        gen: (r) => {
          const i = int(r, lo, lo + span - 1);
          return r() < 0.5 ? i : i + pick(r, [0.5, 0.25, 0.125, 0.75]);
        },
      };
    }),
  fc.constant<Sx>({ schema: { type: 'number' }, gen: (r) => pick(r, [0, -1, 3.25, 1e21, -2.5e-7, 123456789.125]) }),
);

export const schemaArb: fc.Arbitrary<Sx> = fc.letrec<{ s: Sx }>((tie) => ({
  s: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafSchema,
    fc
      .uniqueArray(fc.tuple(fc.constantFrom('id', 'name', 'a b', 'x"y', 'é', 'tags', 'n'), tie('s'), fc.boolean()), {
        maxLength: 4,
        selector: (t) => t[0],
      })
      .map((props): Sx => ({
        schema: {
          type: 'object',
          properties: Object.fromEntries(props.map(([k, s]) => [k, s.schema])),
          required: props.filter((p) => p[2]).map((p) => p[0]),
          additionalProperties: false,
        },
        gen: (r) => Object.fromEntries(props.filter((p) => p[2] || r() < 0.5).map(([k, s]) => [k, s.gen(r)])),
      })),
    fc
      .tuple(tie('s'), fc.integer({ min: 0, max: 2 }), fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }))
      .map(([item, lo, extra]): Sx => {
        const schema: Schema = { type: 'array', items: item.schema, minItems: lo };
        if (extra !== undefined) schema.maxItems = lo + extra;
        return { schema, gen: (r) => Array.from({ length: int(r, lo, lo + (extra ?? 3)) }, () => item.gen(r)) };
      }),
    fc
      .tuple(tie('s'), tie('s'))
      .map(([a, b]): Sx => ({ schema: { anyOf: [a.schema, b.schema] }, gen: (r) => (r() < 0.5 ? a : b).gen(r) })),
    leafSchema
      .filter((x) => typeof x.schema.type === 'string' && x.schema.type !== 'null')
      .map((x): Sx => {
        // an enum must list null too for the null to be valid
        const schema: Schema = { ...x.schema, type: [x.schema.type, 'null'] };
        if (Array.isArray(schema.enum)) schema.enum = [...(schema.enum as unknown[]), null];
        return { schema, gen: (r) => (r() < 0.3 ? null : x.gen(r)) };
      }),
  ),
})).s;

/** Random schemas at the root are wrapped in an object, as OpenAI requires (and often also as leaves). */
export const rootArb = fc.tuple(schemaArb, fc.boolean()).map(([s, wrap]): Sx =>
  wrap
    ? {
        schema: { type: 'object', properties: { v: s.schema }, required: ['v'], additionalProperties: false },
        gen: (r) => ({ v: s.gen(r) }),
      }
    : s,
);
