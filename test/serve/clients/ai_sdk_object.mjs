/* global console, process */
// The Vercel AI SDK's generateObject (a zod schema) against a simba server, run by
// test/serve/clients_structured.test.ts in a child process (the `ai` package is ESM only, jest runs
// CommonJS). Prints {object, finishReason} as JSON, or {error} and exits 1.
//   node test/serve/clients/ai_sdk_object.mjs <base url> <model name>
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateObject } from 'ai';
import { z } from 'zod';

const [url, model] = process.argv.slice(2);
const provider = createOpenAICompatible({ name: 'simba', baseURL: `${url}/v1`, supportsStructuredOutputs: true });
const schema = z.object({
  name: z.string().max(12),
  age: z.number().int().min(0).max(120),
  tags: z.array(z.enum(['red', 'green'])).max(3),
});
try {
  const r = await generateObject({
    model: provider.chatModel(model),
    schema,
    prompt: 'A person:',
    maxOutputTokens: 120,
    seed: 1,
    maxRetries: 0,
  });
  console.log(JSON.stringify({ object: r.object, finishReason: r.finishReason }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e) }));
  process.exit(1);
}
