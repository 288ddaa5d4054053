/**
 * JSON schema to GBNF, for the subset OpenAI's strict mode allows:
 *   - type: "object" with properties / required / additionalProperties (false, or true / absent:
 *     either way only the declared properties are written), "string" (enum / const / pattern /
 *     format "date-time" / minLength / maxLength), "number" and "integer" (minimum / maximum /
 *     exclusiveMinimum / exclusiveMaximum), "boolean", "null", "array" (items / minItems / maxItems);
 *     a list of types (`["string", "null"]`); no type: inferred from the keywords, else any JSON value
 *   - enum / const of any JSON values, anyOf, $ref to "#", "#/$defs/..." or "#/definitions/..."
 *     (recursion included)
 *   - annotations (title, description, default, examples, $schema, $id, $comment) are ignored.
 * Anything else is an E_ARG naming the keyword and its JSON pointer. Properties are written in the
 * order the schema declares them (optional ones may be left out); the whitespace policy and number
 * forms are json_any.ts's and number_range.ts's.
 *
 * @example
 *   jsonSchemaToGbnf({ type: 'object', properties: { n: { type: 'integer', minimum: 0 } }, required: ['n'], additionalProperties: false });
 */
import { describeValue } from '../errors';
import { LIMITS } from '../limits';
import * as v from '../validate';
import { GbnfWriter } from './gbnf_writer';
import { jsonRule } from './json_any';
import { boundedNumberExpr, integerExpr, type NumberBounds } from './number_range';
import { MAX_CODE_POINT, normalizeRanges } from './gbnf_writer';
import { parseRegex, regexExpr, setExpr } from './regex';

const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type JsonType = (typeof TYPES)[number];

const ANNOTATIONS = ['title', 'description', 'default', 'examples', '$schema', '$id', '$comment'];
const KEYWORDS_BY_TYPE: Record<JsonType, string[]> = {
  object: ['properties', 'required', 'additionalProperties'],
  array: ['items', 'minItems', 'maxItems'],
  string: ['pattern', 'format', 'minLength', 'maxLength'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  boolean: [],
  null: [],
};
const GENERAL = ['type', 'enum', 'const', 'anyOf', '$ref', '$defs', 'definitions'];
const SUPPORTED = new Set([...GENERAL, ...ANNOTATIONS, ...Object.values(KEYWORDS_BY_TYPE).flat()]);
const FORMATS = ['date-time'];

type Schema = Record<string, unknown>;

const ANY_CHAR = normalizeRanges([[0, MAX_CODE_POINT]]);

/** A JSON pointer's token (RFC 6901). */
const token = (k: string): string => k.replace(/~/g, '~0').replace(/\//g, '~1');

/** RFC 3339 date-time, days per month (February to 28: a 29th is valid only in leap years). */
const DATE_TIME =
  '[0-9]{4} "-" ((("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])) | (("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30")) | ("02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))) ' +
  '"T" ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,9})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])';

class SchemaConverter {
  /** Rule names of $ref targets (defined once; recursion refers to the reserved name). */
  private readonly refs = new Map<string, string>();
  /**
   * $ref targets being expanded with no JSON token written since (a $ref back to one of them would
   * be a rule that starts with itself: left recursion, which matches nothing finite).
   */
  private bare = new Set<string>(['#']);

  constructor(
    private readonly w: GbnfWriter,
    private readonly root: unknown,
    private readonly where: string,
    private readonly param: string,
  ) {}

  private fail(ptr: string, problem: string): never {
    throw v.argError(this.where, `json schema${ptr ? ` at ${ptr}` : ''}: ${problem}`, this.param);
  }

  /** Defines the rule `name` (reserved in the writer) as the root schema's grammar. */
  convert(name: string): void {
    this.refs.set('#', name);
    this.bare = new Set(['#']);
    this.w.define(name, this.expr(this.root, '', 0));
  }

  /** The GBNF expression of a subschema at the pointer. */
  private expr(s: unknown, ptr: string, depth: number): string {
    if (depth > LIMITS.schemaDepth) this.fail(ptr, `nested deeper than ${LIMITS.schemaDepth} levels`);
    if (s === true) return jsonRule(this.w, 'value');
    if (s === false) this.fail(ptr, 'the schema false matches nothing');
    if (!v.is.object(s)) this.fail(ptr, `a schema must be an object, got ${v.describeType(s)}`);
    for (const k of Object.keys(s))
      if (!SUPPORTED.has(k))
        this.fail(
          `${ptr}/${token(k)}`,
          `the keyword '${k}' is not supported (supported: ${[...SUPPORTED].filter((x) => !ANNOTATIONS.includes(x)).join(', ')})`,
        );
    const constraining = Object.keys(s).filter((k) => !ANNOTATIONS.includes(k) && k !== '$defs' && k !== 'definitions');
    for (const defs of ['$defs', 'definitions'])
      if (s[defs] !== undefined && (!v.is.object(s[defs]) || ptr !== ''))
        this.fail(
          `${ptr}/${defs}`,
          ptr !== '' ? `'${defs}' is supported at the root only` : `'${defs}' must be an object of schemas`,
        );
    if (s.$ref !== undefined) {
      if (constraining.length > 1)
        this.fail(ptr, `'$ref' with other keywords (${constraining.filter((k) => k !== '$ref').join(', ')}) is not supported`);
      return this.ref(s.$ref, `${ptr}/$ref`, depth);
    }
    if (s.anyOf !== undefined) {
      if (constraining.length > 1)
        this.fail(
          ptr,
          `'anyOf' with other keywords (${constraining.filter((k) => k !== 'anyOf').join(', ')}) is not supported: put them in each alternative`,
        );
      if (!Array.isArray(s.anyOf) || s.anyOf.length === 0)
        this.fail(`${ptr}/anyOf`, "'anyOf' must be a non-empty array of schemas");
      const alts = s.anyOf.map((x, i) => this.expr(x, `${ptr}/anyOf/${i}`, depth + 1));
      return this.alternatives(alts, 'any-of');
    }
    const types = this.types(s, ptr);
    if (s.const !== undefined) return this.literals([s.const], types, `${ptr}/const`);
    if (s.enum !== undefined) {
      if (!Array.isArray(s.enum) || s.enum.length === 0) this.fail(`${ptr}/enum`, "'enum' must be a non-empty array");
      return this.literals(s.enum, types, `${ptr}/enum`);
    }
    return this.alternatives(
      types.map((t) => this.typeExpr(t, s, ptr, depth)),
      'alt',
    );
  }

  /** Alternatives as one expression (a rule when there are several). */
  private alternatives(alts: string[], name: string): string {
    const uniq = [...new Set(alts)];
    return uniq.length === 1 ? uniq[0] : this.w.rule(name, uniq.join(' | '));
  }

  /** The schema's types: its `type`, or inferred from its keywords, or all. */
  private types(s: Schema, ptr: string): JsonType[] {
    const t = s.type;
    if (t === undefined) {
      const used = TYPES.filter((ty) => ty !== 'integer' && KEYWORDS_BY_TYPE[ty].some((k) => k in s));
      if (used.length > 1) this.fail(ptr, `keywords of several types (${used.join(', ')}) without 'type'`);
      return used.length === 1 ? used : [...TYPES].filter((ty) => ty !== 'integer');
    }
    const list = Array.isArray(t) ? t : [t];
    if (list.length === 0) this.fail(`${ptr}/type`, "'type' must not be an empty array");
    for (const x of list)
      if (!TYPES.includes(x as JsonType))
        this.fail(`${ptr}/type`, `unknown type ${describeValue(x)} (known: ${TYPES.join(', ')})`);
    if (new Set(list).size !== list.length) this.fail(`${ptr}/type`, "'type' lists a type twice");
    const types = list as JsonType[];
    for (const k of Object.keys(s)) {
      const owner = TYPES.find((ty) => KEYWORDS_BY_TYPE[ty].includes(k));
      if (owner && !types.some((ty) => KEYWORDS_BY_TYPE[ty].includes(k)))
        this.fail(`${ptr}/${token(k)}`, `'${k}' applies to type ${owner}, which 'type' does not list`);
    }
    return types;
  }

  /** enum / const: the values (of the schema's types) written as compact JSON. */
  private literals(values: unknown[], types: JsonType[], ptr: string): string {
    const typeOf = (x: unknown): JsonType[] => {
      if (x === null) return ['null'];
      if (Array.isArray(x)) return ['array'];
      if (typeof x === 'number') return Number.isInteger(x) ? ['number', 'integer'] : ['number'];
      return [typeof x as JsonType];
    };
    const kept = values.filter((x) => typeOf(x).some((t) => types.includes(t)));
    if (kept.length === 0) this.fail(ptr, `no value is of the type ${types.join(' or ')}`);
    return this.alternatives(
      kept.map((x) => this.valueExpr(x, ptr, 0)),
      'enum',
    );
  }

  /** One JSON value, with the whitespace policy's whitespace allowed inside arrays and objects. */
  private valueExpr(x: unknown, ptr: string, depth: number): string {
    if (depth > LIMITS.schemaDepth) this.fail(ptr, `a value nested deeper than ${LIMITS.schemaDepth} levels`);
    if (Array.isArray(x) || v.is.object(x)) {
      const ws = jsonRule(this.w, 'ws');
      const items = Array.isArray(x)
        ? x.map((y) => this.valueExpr(y, ptr, depth + 1))
        : Object.entries(x).map(
            ([k, y]) => `${GbnfWriter.literal(JSON.stringify(k))} ${ws} ":" ${ws} ${this.valueExpr(y, ptr, depth + 1)}`,
          );
      const [open, close] = Array.isArray(x) ? ['"["', '"]"'] : ['"{"', '"}"'];
      return items.length === 0 ? `${open} ${ws} ${close}` : `(${open} ${ws} ${items.join(` ${ws} "," ${ws} `)} ${ws} ${close})`;
    }
    const text = JSON.stringify(x) as string | undefined;
    if (text === undefined || (typeof x === 'number' && !Number.isFinite(x)))
      this.fail(ptr, `${describeValue(x)} is not a JSON value`);
    return GbnfWriter.literal(text);
  }

  private ref(target: unknown, ptr: string, depth: number): string {
    if (typeof target !== 'string') this.fail(ptr, `'$ref' must be a string, got ${v.describeType(target)}`);
    if (this.bare.has(target))
      this.fail(
        ptr,
        `'$ref' ${JSON.stringify(target.slice(0, 80))} refers back to itself before any JSON is written (a cycle with no object or array between)`,
      );
    const known = this.refs.get(target);
    if (known) return known;
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(target);
    if (!m)
      this.fail(
        ptr,
        `'$ref' ${JSON.stringify(target.slice(0, 80))} is not supported (only "#", "#/$defs/<name>" and "#/definitions/<name>")`,
      );
    const name = m[2].replace(/~1/g, '/').replace(/~0/g, '~');
    const defs = (this.root as Schema)[m[1]];
    if (!v.is.object(defs) || !(name in defs))
      this.fail(ptr, `'$ref' ${JSON.stringify(target.slice(0, 80))} names no schema of the root's '${m[1]}'`);
    const rule = this.w.reserve(`def-${name}`);
    this.refs.set(target, rule);
    this.bare.add(target);
    this.w.define(rule, this.expr(defs[name], `/${m[1]}/${token(name)}`, depth + 1));
    this.bare.delete(target);
    return rule;
  }

  private typeExpr(t: JsonType, s: Schema, ptr: string, depth: number): string {
    switch (t) {
      case 'null':
        return jsonRule(this.w, 'null');
      case 'boolean':
        return jsonRule(this.w, 'boolean');
      case 'integer':
      case 'number':
        return this.numberExpr(t, s, ptr);
      case 'string':
        return this.stringExpr(s, ptr);
      case 'array':
        return this.arrayExpr(s, ptr, depth);
      case 'object':
        return this.objectExpr(s, ptr, depth);
    }
  }

  private count(s: Schema, key: string, ptr: string): number | undefined {
    const x = s[key];
    if (x === undefined) return undefined;
    if (!v.is.integer(x) || x < 0 || x > LIMITS.repeatMax)
      this.fail(`${ptr}/${key}`, `'${key}' must be an integer in [0, ${LIMITS.repeatMax}], got ${describeValue(x)}`);
    return x;
  }

  private numberExpr(t: 'integer' | 'number', s: Schema, ptr: string): string {
    const b: NumberBounds = {};
    for (const k of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const) {
      const x = s[k];
      if (x === undefined) continue;
      if (!v.is.number(x)) this.fail(`${ptr}/${k}`, `'${k}' must be a finite number, got ${describeValue(x)}`);
      b[k] = x;
    }
    if (Object.keys(b).length === 0) return jsonRule(this.w, t);
    const e = t === 'integer' ? integerExpr(b) : boundedNumberExpr(b);
    if (e === null) this.fail(ptr, `no ${t} within the bounds ${describeValue(b)} can be written`);
    return this.w.rule(t === 'integer' ? 'int' : 'num', e);
  }

  private stringExpr(s: Schema, ptr: string): string {
    const q = GbnfWriter.literal('"');
    const minLength = this.count(s, 'minLength', ptr),
      maxLength = this.count(s, 'maxLength', ptr);
    const lengths = minLength !== undefined || maxLength !== undefined;
    if (s.format !== undefined) {
      if (typeof s.format !== 'string' || !FORMATS.includes(s.format))
        this.fail(`${ptr}/format`, `the format ${describeValue(s.format)} is not supported (supported: ${FORMATS.join(', ')})`);
      if (s.pattern !== undefined || lengths)
        this.fail(ptr, "'format' with 'pattern', 'minLength' or 'maxLength' is not supported");
      return this.w.rule('date-time', `${q} ${DATE_TIME} ${q}`);
    }
    if (s.pattern !== undefined) {
      if (lengths) this.fail(ptr, "'pattern' with 'minLength' or 'maxLength' is not supported");
      return this.w.rule('pattern', `${q} ${this.patternExpr(s.pattern, `${ptr}/pattern`)} ${q}`);
    }
    if (!lengths) return jsonRule(this.w, 'string');
    const lo = minLength ?? 0,
      hi = maxLength ?? Infinity;
    if (hi < lo) this.fail(ptr, `'maxLength' ${hi} is less than 'minLength' ${lo}`);
    if (hi === 0) return GbnfWriter.literal('""');
    const rep = hi === Infinity ? `{${lo},}` : lo === hi ? `{${lo}}` : `{${lo},${hi}}`;
    jsonRule(this.w, 'char');
    return this.w.rule('str', `${q} char${rep} ${q}`);
  }

  /** A pattern inside a JSON string: unanchored sides may have any characters. */
  private patternExpr(pattern: unknown, ptr: string): string {
    const p = parseRegex(pattern, this.where, `the pattern at ${ptr}`);
    if (p.topAlternation && (p.anchoredStart || p.anchoredEnd))
      this.fail(ptr, "a pattern with '^' or '$' around a top-level '|' is not supported: group it, as in ^(a|b)$");
    // unanchored: any characters at all (not `.`, which leaves out line terminators)
    const any = `${setExpr(ANY_CHAR, true)}*`;
    const body = regexExpr(p.node, true);
    const parts = [p.anchoredStart ? '' : any, body ?? '', p.anchoredEnd ? '' : any].filter((x) => x !== '');
    return parts.length === 0 ? '' : parts.join(' ');
  }

  /** Converts a subschema written after a JSON token ('[' or '{'): no $ref there starts a cycle. */
  private inside<T>(f: () => T): T {
    const saved = this.bare;
    this.bare = new Set();
    try {
      return f();
    } finally {
      this.bare = saved;
    }
  }

  private arrayExpr(s: Schema, ptr: string, depth: number): string {
    if (Array.isArray(s.items)) this.fail(`${ptr}/items`, "'items' as an array (a tuple) is not supported: give one schema");
    const item =
      s.items === undefined ? jsonRule(this.w, 'value') : this.inside(() => this.expr(s.items, `${ptr}/items`, depth + 1));
    const lo = this.count(s, 'minItems', ptr) ?? 0,
      hi = this.count(s, 'maxItems', ptr) ?? Infinity;
    if (hi < lo) this.fail(ptr, `'maxItems' ${hi} is less than 'minItems' ${lo}`);
    const ws = jsonRule(this.w, 'ws');
    if (hi === 0) return this.w.rule('arr', `"[" ${ws} "]"`);
    const more = hi === Infinity ? `{${Math.max(lo - 1, 0)},}` : `{${Math.max(lo - 1, 0)},${hi - 1}}`;
    const list = `${item} (${ws} "," ${ws} ${item})${more.replace('{0,}', '*')} ${ws}`;
    return this.w.rule('arr', `"[" ${ws} ${lo === 0 ? `(${list})?` : list} "]"`);
  }

  private objectExpr(s: Schema, ptr: string, depth: number): string {
    const ws = jsonRule(this.w, 'ws');
    if (s.additionalProperties !== undefined && typeof s.additionalProperties !== 'boolean')
      this.fail(`${ptr}/additionalProperties`, "'additionalProperties' must be false (or true): a schema there is not supported");
    if (s.properties !== undefined && !v.is.object(s.properties))
      this.fail(`${ptr}/properties`, "'properties' must be an object of schemas");
    const props = (s.properties ?? {}) as Schema;
    const names = Object.keys(props);
    const required = s.required ?? [];
    if (!Array.isArray(required) || required.some((r) => typeof r !== 'string'))
      this.fail(`${ptr}/required`, "'required' must be an array of property names");
    for (const r of required as string[])
      if (!names.includes(r)) this.fail(`${ptr}/required`, `requires ${JSON.stringify(r)}, which 'properties' does not declare`);
    if (names.length === 0)
      return s.additionalProperties === false ? this.w.rule('obj', `"{" ${ws} "}"`) : jsonRule(this.w, 'object');
    const member = names.map((n) => {
      const value = this.inside(() => this.expr(props[n], `${ptr}/properties/${token(n)}`, depth + 1));
      return `${GbnfWriter.literal(JSON.stringify(n))} ${ws} ":" ${ws} ${value}`;
    });
    const req = names.map((n) => (required as string[]).includes(n));
    // tail(i, first): the members from i on (rules made on demand); nullable when all of them are optional
    const nullable = (i: number) => req.slice(i).every((r) => !r);
    const made = new Map<string, string>();
    const base = this.w.reserve('obj');
    const tail = (i: number, first: boolean): string => {
      if (i === names.length) return '';
      const key = `${i}${first ? 'f' : 'n'}`;
      const known = made.get(key);
      if (known) return nullable(i) ? `${known}?` : known;
      const sep = first ? '' : `${ws} "," ${ws} `;
      const next = tail(i + 1, false);
      const alts = [`${sep}${member[i]}${next ? ` ${next}` : ''}`];
      if (!req[i] && i + 1 < names.length) {
        const skip = tail(i + 1, first);
        alts.push(skip.replace(/\?$/, ''));
      }
      const rule = this.w.rule(`${base}-${i}${first ? '' : 'n'}`, alts.join(' | '));
      made.set(key, rule);
      return nullable(i) ? `${rule}?` : rule;
    };
    const body = tail(0, true);
    const inner = nullable(0) ? `(${body.replace(/\?$/, '')} ${ws})?` : `${body} ${ws}`;
    this.w.define(base, `"{" ${ws} ${inner} "}"`);
    return base;
  }
}

/**
 * A GBNF grammar of the JSON texts valid under the schema (see the file's comment); `where` and
 * `param` name the option in errors ('generate' / 'jsonSchema', or the server's field).
 */
export function jsonSchemaToGbnf(schema: unknown, where = 'generate', param = 'jsonSchema'): string {
  const w = new GbnfWriter(where);
  new SchemaConverter(w, schema, where, param).convert('root');
  return w.text();
}

/**
 * Writes a schema's grammar into an existing writer as a new rule (named from `base`), for grammars
 * that hold several schemas (tool calls); `$ref: "#"` there refers to this schema. Returns the rule name.
 */
export function schemaRule(w: GbnfWriter, schema: unknown, base: string, where: string, param: string): string {
  const name = w.reserve(base);
  new SchemaConverter(w, schema, where, param).convert(name);
  return name;
}
