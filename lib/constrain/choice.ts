/**
 * A list of choices to GBNF: the output is exactly one of the strings.
 *
 * @example
 *   choiceToGbnf(['yes', 'no']);   // 'root ::= "yes" | "no"\n'
 */
import { LIMITS } from '../limits';
import * as v from '../validate';
import { GbnfWriter } from './gbnf_writer';

/** `where` / `param` name the option in errors ('generate' / 'choice', or the server's field). */
export function choiceToGbnf(choices: unknown, where = 'generate', param = 'choice'): string {
  if (!Array.isArray(choices) || choices.length === 0 || choices.length > LIMITS.choices)
    throw v.argError(where, `${param} must be an array of 1 to ${LIMITS.choices} strings, got ${v.describeType(choices)}`, param);
  choices.forEach((c, i) => {
    if (typeof c !== 'string' || c.length === 0)
      throw v.argError(where, `${param}[${i}] must be a non-empty string, got ${v.describeType(c)}`, param);
  });
  const w = new GbnfWriter(where);
  w.root([...new Set(choices as string[])].map((c) => GbnfWriter.literal(c)).join(' | '));
  return w.text();
}
