/** Helpers of the Batch API tests: JSONL input files, raw multipart uploads, polling a batch. */
import type { ApiJson } from '../serve/helpers';

export interface Line {
  custom_id: string;
  method: 'POST';
  url: string;
  body: Record<string, unknown>;
}

/** n completion lines at temperature 0 with distinct prompts. */
export function completionLines(n: number, model: string, maxTokens = 6): Line[] {
  return Array.from({ length: n }, (_, i) => ({
    custom_id: `req-${i}`,
    method: 'POST',
    url: '/v1/completions',
    body: { model, prompt: `Item ${i}: the jury said`, max_tokens: maxTokens, temperature: 0 },
  }));
}

export const jsonl = (lines: unknown[]) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';

/** POST /v1/files as multipart/form-data (fetch's FormData), any fields. */
export async function upload(
  url: string,
  content: string | Buffer,
  fields: Record<string, string> = { purpose: 'batch' },
  headers: Record<string, string> = {},
): Promise<{ status: number; json: ApiJson }> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', new Blob([content]), 'input.jsonl');
  const r = await fetch(`${url}/v1/files`, { method: 'POST', body: form, headers, signal: AbortSignal.timeout(20000) });
  return { status: r.status, json: (await r.json()) as ApiJson };
}

/** GET a JSON route. */
export async function getJson(
  url: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: ApiJson }> {
  const r = await fetch(`${url}${path}`, { headers, signal: AbortSignal.timeout(20000) });
  return { status: r.status, json: (await r.json()) as ApiJson };
}

/** Polls GET /v1/batches/{id} until its status is one of `want` (at most ms); returns the last batch. */
export async function waitForBatch(
  url: string,
  id: string,
  want: string[],
  ms: number,
  headers: Record<string, string> = {},
): Promise<ApiJson> {
  const t0 = Date.now();
  for (;;) {
    const { json } = await getJson(url, `/v1/batches/${id}`, headers);
    if (want.includes(json.status as string) || Date.now() - t0 > ms) return json;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The lines of a JSONL file, parsed. */
export const parseJsonl = (text: string) =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
