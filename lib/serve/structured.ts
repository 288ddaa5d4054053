/**
 * The structured-output fields of a request, as the one GBNF grammar the engine enforces:
 *   response_format   {type: "json_object"} | {type: "json_schema", json_schema: {name, schema, strict}} | {type: "text"}
 *   regex, choice     extensions (vLLM's / llama-server's names): a regular expression, a list of strings
 *   grammar           extension: GBNF text
 *   tools + tool_choice (chat): "required" or a named function constrains the output to one call
 *                     of a declared function (returned as tool_calls, see tool_calls.ts)
 * At most one of them may constrain a request (400 naming the second). A schema, regex or list the
 * converters refuse is a 400 whose `param` is the field.
 *
 * @example
 *   const s = parseStructured(body, 'chat');   // { grammar: 'root ::= ...', tools: {forced, templateTools} }
 */
import { constraintGbnf, type ConstraintKey } from '../constrain/constraint';
import { toolCallGbnf } from '../constrain/tool_call';
import * as v from '../validate';
import { ApiError, asParam, badParam } from './errors';
import { parseTools, type ToolPlan } from './tool_calls';

export interface StructuredSpec {
  /** GBNF text the output must match, or undefined. */
  grammar: string | undefined;
  /** The request field the grammar comes from (the `param` of errors compiling it). */
  grammarField: string | undefined;
  /** Chat tools (null on completions and without tools). */
  tools: ToolPlan | null;
}

const FIELDS: Record<ConstraintKey, string> = {
  responseFormat: 'response_format',
  jsonSchema: 'json_schema',
  regex: 'regex',
  choice: 'choice',
  grammar: 'grammar',
};

type Body = Record<string, unknown>;
/** JSON null is a field left out (the official clients send null for unset fields). */
const field = (b: Body, key: string): unknown => (b[key] === null ? undefined : b[key]);

export function parseStructured(b: Body, kind: 'completion' | 'chat'): StructuredSpec {
  const o: Partial<Record<ConstraintKey, unknown>> = {
    responseFormat: field(b, 'response_format'),
    regex: field(b, 'regex'),
    choice: field(b, 'choice'),
    grammar: field(b, 'grammar'),
  };
  if (o.grammar !== undefined && typeof o.grammar !== 'string')
    throw new ApiError(
      400,
      `grammar must be GBNF text (a string), got ${v.describeType(o.grammar)}`,
      'invalid_request_error',
      'grammar',
      'invalid_value',
    );
  let tools: ToolPlan | null = null;
  if (kind === 'chat') tools = parseTools(field(b, 'tools'), field(b, 'tool_choice'));
  else for (const k of ['tools', 'tool_choice']) if (field(b, k) !== undefined) throw badParam(k, 'is for /v1/chat/completions');
  const grammar = asParam(null, () => constraintGbnf(o, '', FIELDS));
  if (tools?.forced) {
    if (grammar !== undefined) {
      const other = Object.values(FIELDS).find((f) => field(b, f) !== undefined) ?? 'response_format';
      throw badParam(other, "cannot be combined with tool_choice 'required' or a named function (the output is the tool call)");
    }
    return { grammar: asParam('tools', () => toolCallGbnf(tools.forced!, '', 'tools')), grammarField: 'tools', tools };
  }
  const from = (Object.keys(FIELDS) as ConstraintKey[]).find((k) => o[k] !== undefined);
  return { grammar, grammarField: from && FIELDS[from], tools };
}
