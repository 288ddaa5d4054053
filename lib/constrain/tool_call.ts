/**
 * The grammar of one call of a declared function (OpenAI chat `tools` with `tool_choice`
 * "required" or a named function): the output is the JSON object
 *
 *   {"name": "<one of the functions>", "arguments": <an object valid against its parameters>}
 *
 * (the whitespace policy of json_any.ts), which the server returns as `tool_calls`
 * (lib/serve/tool_calls.ts reads it back). A function without `parameters` takes `{}`.
 *
 * @example
 *   toolCallGbnf([{ name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }]);
 */
import { GbnfWriter } from './gbnf_writer';
import { jsonRule } from './json_any';
import { schemaRule } from './json_schema';

export interface ToolFunction {
  name: string;
  /** A JSON schema of the arguments (an object schema; absent: no arguments). */
  parameters?: unknown;
}

const NO_ARGUMENTS = { type: 'object', properties: {}, additionalProperties: false };

/** `where` / `param` name the field in errors (a schema outside the subset names its pointer). */
export function toolCallGbnf(tools: readonly ToolFunction[], where = '', param = 'tools'): string {
  const w = new GbnfWriter(where);
  const ws = jsonRule(w, 'ws');
  const sep = `${ws} "," ${ws}`;
  const calls = tools.map((t, i) => {
    const args = schemaRule(w, t.parameters ?? NO_ARGUMENTS, `args-${t.name}`, where, `${param}[${i}].function.parameters`);
    return `${GbnfWriter.literal(JSON.stringify(t.name))} ${sep} ${GbnfWriter.literal('"arguments"')} ${ws} ":" ${ws} ${args}`;
  });
  w.root(`"{" ${ws} ${GbnfWriter.literal('"name"')} ${ws} ":" ${ws} (${calls.join(' | ')}) ${ws} "}"`);
  return w.text();
}
