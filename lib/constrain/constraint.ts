/**
 * The structured-output options of generate() (and their server fields), turned into the one form
 * the engine takes: GBNF text. Exactly one of
 *   responseFormat  OpenAI's `{type: 'json_object'}`, `{type: 'json_schema', json_schema: {name, schema, strict}}`
 *                   or `{type: 'text'}` (no constraint)
 *   jsonSchema      a JSON schema (json_schema.ts: the subset OpenAI's strict mode allows)
 *   regex           a regular expression the whole output matches (regex.ts)
 *   choice          a list of strings, one of which is the output (choice.ts)
 *   grammar         GBNF text (passed on as it is; the engine checks it)
 *
 * @example
 *   constraintGbnf({ choice: ['yes', 'no'] }, 'generate');   // 'root ::= "yes" | "no"\n'
 */
import * as v from '../validate';
import { choiceToGbnf } from './choice';
import { jsonObjectGbnf } from './json_any';
import { jsonSchemaToGbnf } from './json_schema';
import { regexToGbnf } from './regex';

export const CONSTRAINT_KEYS = ['responseFormat', 'jsonSchema', 'regex', 'choice', 'grammar'] as const;
export type ConstraintKey = (typeof CONSTRAINT_KEYS)[number];

/** OpenAI's response_format. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name?: string; description?: string; schema: unknown; strict?: boolean | null } };

export interface ConstraintOptions {
  /** OpenAI's response_format: `{type: 'json_object'}` (any JSON object) or `{type: 'json_schema', json_schema: {name, schema}}`. */
  responseFormat?: ResponseFormat;
  /** A JSON schema the output is valid against (OpenAI's strict subset; see lib/constrain/json_schema.ts). */
  jsonSchema?: unknown;
  /** A regular expression the whole output matches (a string or a RegExp without flags but u). */
  regex?: string | RegExp;
  /** The output is one of these strings. */
  choice?: string[];
}

const JSON_SCHEMA_KEYS = ['name', 'description', 'schema', 'strict'] as const;

/**
 * The response_format as GBNF (undefined for `{type: 'text'}`); `name` is the option's name in
 * messages and errors ('responseFormat', or the server's 'response_format').
 */
export function responseFormatGbnf(rf: unknown, where: string, name = 'responseFormat'): string | undefined {
  if (!v.is.object(rf)) throw v.argError(where, `${name} must be an object {type: ...}, got ${v.describeType(rf)}`, name);
  const types = ['text', 'json_object', 'json_schema'];
  const known = rf.type === 'json_schema' ? ['type', 'json_schema'] : ['type'];
  v.options(where, rf, known, name);
  if (rf.type === 'text') return undefined;
  if (rf.type === 'json_object') return jsonObjectGbnf(where);
  if (rf.type !== 'json_schema')
    throw v.argError(where, `${name}.type must be one of ${types.join(', ')}, got ${v.describeType(rf.type)}`, name);
  const js = v.options(where, rf.json_schema, JSON_SCHEMA_KEYS, `${name}.json_schema`);
  if (!v.is.object(rf.json_schema) || js.schema === undefined)
    throw v.argError(where, `${name}.json_schema must be an object with a schema: {name, schema, strict}`, name);
  v.string(where, `${name}.json_schema.name`, js.name, true);
  if (js.strict !== null) v.bool(where, `${name}.json_schema.strict`, js.strict);
  return jsonSchemaToGbnf(js.schema, where, name);
}

/**
 * The GBNF of the one constraint option given (undefined when none is); two or more are an E_ARG
 * naming them. `names` maps the option keys to the names messages use (the server's field names).
 */
export function constraintGbnf(
  o: Partial<Record<ConstraintKey, unknown>>,
  where: string,
  names: Partial<Record<ConstraintKey, string>> = {},
): string | undefined {
  const n = (k: ConstraintKey) => names[k] ?? k;
  const given = CONSTRAINT_KEYS.filter((k) => o[k] !== undefined);
  if (given.length > 1)
    throw v.argError(
      where,
      `give at most one of ${CONSTRAINT_KEYS.map(n).join(', ')}; got ${given.map(n).join(' and ')}`,
      n(given[1]),
    );
  switch (given[0]) {
    case undefined:
      return undefined;
    case 'responseFormat':
      return responseFormatGbnf(o.responseFormat, where, n('responseFormat'));
    case 'jsonSchema':
      return jsonSchemaToGbnf(o.jsonSchema, where, n('jsonSchema'));
    case 'regex':
      return regexToGbnf(o.regex, where, n('regex'));
    case 'choice':
      return choiceToGbnf(o.choice, where, n('choice'));
    case 'grammar':
      if (typeof o.grammar !== 'string') return undefined; // a compiled grammar: the engine's own option
      return o.grammar;
  }
}
