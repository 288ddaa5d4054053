/**
 * The token history of a Responses API conversation. A turn's prompt is the whole history so far
 * (earlier prompts and outputs, as tokens) followed by the new input rendered as its continuation:
 *
 *   turn 1:  tokens(render([system: instructions?, ...input]))
 *   turn k:  history(k-1) + output tokens(k-1) + tokens(continuation(messages so far, new input))
 *
 * where continuation() is what the chat template puts after the last assistant message up to the
 * next assistant turn (found by rendering with a sentinel as that message). Output tokens are kept as
 * generated (never re-tokenized from text, end-of-sequence left out), so a stored state after the
 * history is exactly the state of a process that prefilled the whole history.
 *
 * @example
 *   const first = firstTurnText(template, 'Be brief.', [{ role: 'user', content: 'Hi' }]);
 *   const next = continuationText(template, [...messages, { role: 'assistant', content: out }], [{ role: 'user', content: 'More' }]);
 */
import type { ChatMessage, ChatTemplate } from '../../checkpoint/chat_template';

const SENTINEL = '\u0000simba-turn-end\u0000';

/** The prompt text of a conversation's first turn. */
export function firstTurnText(template: ChatTemplate, instructions: string | null, input: ChatMessage[]): string {
  return template.render(withInstructions(instructions, input));
}

/** The new turn's messages: the instructions (a system message) first, when given. */
export function withInstructions(instructions: string | null, input: ChatMessage[]): ChatMessage[] {
  return instructions !== null ? [{ role: 'system', content: instructions }, ...input] : input;
}

/**
 * The text that follows the conversation `history` (whose last message is the assistant's output)
 * for the new messages, up to the next assistant turn.
 */
export function continuationText(template: ChatTemplate, history: ChatMessage[], next: ChatMessage[]): string {
  const marked = history.map((m, i) => (i === history.length - 1 ? { ...m, content: SENTINEL } : m));
  const full = template.render([...marked, ...next]);
  const at = full.lastIndexOf(SENTINEL);
  // a template that drops earlier turns: the new messages on their own
  return at >= 0 ? full.slice(at + SENTINEL.length) : template.render(next);
}
