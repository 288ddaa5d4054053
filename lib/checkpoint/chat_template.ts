/**
 * Chat prompts: the `chat_template` of a model's tokenizer_config.json, rendered with
 * @huggingface/jinja (the same Jinja subset as transformers' apply_chat_template), or, for a model
 * without one, the plain template PLAIN_CHAT_TEMPLATE:
 *
 *   System: ...\nUser: ...\nAssistant: ...\n   one line per message, role capitalised, then "Assistant:"
 *
 * @example
 *   const t = loadChatTemplate('models/brown-mamba-s');
 *   t.render([{ role: 'user', content: 'Hello' }]);   // 'User: Hello\nAssistant:'
 */
import * as fs from 'fs';
import * as path from 'path';
import { Template } from '@huggingface/jinja';

import { SimbaError } from '../errors';

export const PLAIN_CHAT_TEMPLATE =
  '{% for message in messages %}{{ message.role | capitalize }}: {{ message.content }}\n{% endfor %}' +
  '{% if add_generation_prompt %}Assistant:{% endif %}';

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
  /** An assistant's calls of tools (OpenAI's shape), for templates that show them. */
  tool_calls?: unknown[];
  /** A tool message's answer is to this call. */
  tool_call_id?: string;
}

export interface ChatTemplate {
  /** 'tokenizer_config.json' or 'plain'. */
  readonly source: string;
  /**
   * The prompt text for the messages, ending with the assistant's turn; `tools` (OpenAI's chat
   * tools) reach the template as its `tools` variable, for templates that present them.
   */
  render(messages: ChatMessage[], tools?: unknown[]): string;
}

function tokenText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return '';
}

/** A template from its Jinja source (throws E_TOKENIZER when it does not parse). */
export function chatTemplate(source: string, text: string, special: { bos?: string; eos?: string } = {}): ChatTemplate {
  let t: Template;
  try {
    t = new Template(text);
  } catch (e) {
    throw new SimbaError('E_TOKENIZER', `${source}: chat_template does not parse: ${(e as Error).message}`);
  }
  return {
    source,
    render(messages, tools) {
      const vars: Record<string, unknown> = {
        messages,
        add_generation_prompt: true,
        bos_token: special.bos ?? '',
        eos_token: special.eos ?? '',
      };
      if (tools !== undefined) vars.tools = tools;
      try {
        return t.render(vars);
      } catch (e) {
        throw new SimbaError('E_ARG', `chat template: ${(e as Error).message}`);
      }
    },
  };
}

/** The model folder's chat template (tokenizer_config.json `chat_template`), else the plain one. */
export function loadChatTemplate(dir: string | null): ChatTemplate {
  const file = dir ? path.join(dir, 'tokenizer_config.json') : '';
  if (!file || !fs.existsSync(file)) return chatTemplate('plain', PLAIN_CHAT_TEMPLATE);
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new SimbaError('E_TOKENIZER', `${file}: not valid JSON (${(e as Error).message})`);
  }
  let text = cfg.chat_template;
  if (Array.isArray(text)) {
    // [{name, template}]: the 'default' one
    const named = text as { name?: unknown; template?: unknown }[];
    text = (named.find((x) => x?.name === 'default') ?? named[0])?.template;
  }
  if (typeof text !== 'string' || text.length === 0) return chatTemplate('plain', PLAIN_CHAT_TEMPLATE);
  return chatTemplate(file, text, { bos: tokenText(cfg.bos_token), eos: tokenText(cfg.eos_token) });
}
