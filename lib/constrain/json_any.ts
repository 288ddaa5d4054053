/**
 * The JSON grammar's building blocks (GBNF rules), shared by `json_object` (any JSON object) and the
 * JSON schema converter.
 *
 * Whitespace policy: JSON as JSON.stringify writes it (compact), where between two tokens there may
 * also be one space, or a newline followed by up to 20 spaces / tabs (so `JSON.stringify(x, null, 2)`
 * output up to 10 levels deep matches too). Nothing before the first token or after the last.
 * Strings: any character but `"`, `\` and the controls U+0000-U+001F, or an escape (`\"` `\\` `\/`
 * `\b` `\f` `\n` `\r` `\t` `\uXXXX` outside the surrogates: every string element is one character).
 * Numbers: at most 15 integer digits (integers stay exact in a JavaScript number), at most 16
 * fraction digits, an exponent of at most 2 digits.
 *
 * @example
 *   jsonObjectGbnf();   // 'root ::= object\n...'
 */
import { GbnfWriter } from './gbnf_writer';

/** Integer digits at most. */
export const INT_DIGITS = 15;

/** The rules of the JSON grammar (defined on first use) and their names. */
export const JSON_RULES = {
  ws: '(" " | "\\n" [ \\t]{0,20})?',
  char: '[^"\\\\\\x00-\\x1f] | "\\\\" (["\\\\/bfnrt] | "u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))',
  string: '"\\"" char* "\\""',
  integer: `"-"? ("0" | [1-9] [0-9]{0,${INT_DIGITS - 1}})`,
  number: `"-"? ("0" | [1-9] [0-9]{0,${INT_DIGITS - 1}}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?`,
  boolean: '"true" | "false"',
  null: '"null"',
  value: 'object | array | string | number | boolean | null',
  member: 'string ws ":" ws value',
  object: '"{" ws (member (ws "," ws member)* ws)? "}"',
  array: '"[" ws (value (ws "," ws value)* ws)? "]"',
} as const;

export type JsonRule = keyof typeof JSON_RULES;

const USES: Partial<Record<JsonRule, JsonRule[]>> = {
  string: ['char'],
  value: ['object', 'array', 'string', 'number', 'boolean', 'null'],
  member: ['string', 'ws', 'value'],
  object: ['ws', 'member'],
  array: ['ws', 'value'],
};

/** Defines a JSON rule (and those it uses) in the writer; returns its name. */
export function jsonRule(w: GbnfWriter, name: JsonRule): JsonRule {
  if (w.has(name)) return name;
  w.rule(name, JSON_RULES[name], true);
  for (const u of USES[name] ?? []) jsonRule(w, u);
  return name;
}

/** The grammar of any JSON object (OpenAI's `json_object`). */
export function jsonObjectGbnf(where = 'response_format'): string {
  const w = new GbnfWriter(where);
  w.root('object');
  jsonRule(w, 'object');
  return w.text();
}
