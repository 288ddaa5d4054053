/**
 * Text generation: sampling (greedy, temperature, top-k, top-p, seeded), stop conditions and
 * streaming. The prompt is prefilled once (optionally with Simba pruning), then one decode step
 * per token; text streams through the tokenizer's incremental decoder, so a piece never ends in
 * half a UTF-8 character.
 */
import { SimbaError } from './errors';
import type { MambaModel } from './model';
import type { SimbaOptions } from './simba';

export interface GenerateOptions {
  /** Tokens to generate at most (default 64, at most 1,000,000). */
  maxTokens?: number;
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off, default 40). */
  topK?: number;
  /** Nucleus sampling: smallest set of tokens whose probability sums to p (1 = off, default 0.95). */
  topP?: number;
  /** Seed of the sampler; the same seed and options give the same text. Default: random. */
  seed?: number;
  /** Stop when the generated text contains one of these strings (the stop string is not emitted). */
  stop?: string[];
  /** Stop at the end-of-sequence token (default true). */
  stopAtEos?: boolean;
  /** Prune the prompt's tokens during prefill (decode stays dense). */
  simba?: SimbaOptions;
  signal?: AbortSignal;
}

export interface GeneratedPiece {
  token: number;
  /** Text completed by this token (may be '' while a multi-byte character is incomplete). */
  text: string;
}

export const MAX_GENERATE_TOKENS = 1_000_000;

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SamplerOptions { temperature: number; topK: number; topP: number }

/** Picks the next token from logits. */
export function sample(logits: Float32Array, o: SamplerOptions, rand: () => number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (o.temperature === 0) return best;
  // Candidates sorted by logit, cut by top-k, softmax at temperature, cut by top-p.
  let idx = Array.from(logits.keys());
  idx.sort((a, b) => logits[b] - logits[a]);
  if (o.topK > 0 && o.topK < idx.length) idx = idx.slice(0, o.topK);
  const m = logits[idx[0]];
  const p = idx.map((i) => Math.exp((logits[i] - m) / o.temperature));
  const z = p.reduce((a, b) => a + b, 0);
  let n = idx.length;
  if (o.topP < 1) {
    let acc = 0;
    for (let j = 0; j < idx.length; j++) {
      acc += p[j] / z;
      if (acc >= o.topP) { n = j + 1; break; }
    }
  }
  const zn = p.slice(0, n).reduce((a, b) => a + b, 0);
  let r = rand() * zn;
  for (let j = 0; j < n; j++) {
    r -= p[j];
    if (r <= 0) return idx[j];
  }
  return idx[n - 1];
}

function num(v: unknown, def: number, what: string, lo: number, hi: number, int = false): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
    throw new SimbaError('E_ARG', `generate: ${what} must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${String(v)}`);
  return v;
}

/** Validated generation options with defaults filled in. */
export function resolveGenerateOptions(opts: GenerateOptions) {
  const stop = opts.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s.length === 0))
    throw new SimbaError('E_ARG', 'generate: stop must be an array of non-empty strings');
  return {
    maxTokens: num(opts.maxTokens, 64, 'maxTokens', 0, MAX_GENERATE_TOKENS, true),
    temperature: num(opts.temperature, 0.8, 'temperature', 0, 100),
    topK: num(opts.topK, 40, 'topK', 0, 1e9, true),
    topP: num(opts.topP, 0.95, 'topP', 1e-6, 1),
    seed: num(opts.seed, Math.floor(Math.random() * 2 ** 31), 'seed', 0, 2 ** 32 - 1, true),
    stop, stopAtEos: opts.stopAtEos ?? true,
  };
}

export async function* generate(model: MambaModel, prompt: string | ArrayLike<number>, opts: GenerateOptions):
    AsyncGenerator<GeneratedPiece, void, undefined> {
  const o = resolveGenerateOptions(opts);
  const tok = model.tokenizer;
  let ids: ArrayLike<number>;
  if (typeof prompt === 'string') {
    if (!tok) throw new SimbaError('E_ARG', 'generate: this model has no tokenizer; pass token ids instead of text');
    if (prompt.length === 0) throw new SimbaError('E_ARG', 'generate: empty prompt');
    ids = tok.encode(prompt);
  } else {
    ids = prompt;
  }
  if (o.maxTokens === 0) return;
  const rand = mulberry32(o.seed);
  const seq = model.newSequence();
  const decoder = tok?.createStreamDecoder();
  const eos = tok?.eosTokenId ?? model.config.eosTokenId;
  // Checkpoints pad the vocabulary (e.g. 50280 rows for GPT-NeoX's 50277 ids): never sample an id
  // the tokenizer cannot decode.
  const limit = tok ? Math.min(tok.vocabSize, model.config.vocabSize) : model.config.vocabSize;
  let [first] = await model.prefill([{ sequence: seq, tokens: ids }], { logits: 'last', simba: opts.simba, signal: opts.signal });
  let logits = first.logits[0];
  let text = '';   // generated text not yet emitted (held while it could be the start of a stop string)
  const holdBack = o.stop.reduce((a, s) => Math.max(a, s.length - 1), 0);
  try {
    for (let i = 0; i < o.maxTokens; i++) {
      if (opts.signal?.aborted) throw new SimbaError('E_ABORTED', 'generate: aborted');
      const next = sample(limit < logits.length ? logits.subarray(0, limit) : logits, o, rand);
      if (o.stopAtEos && eos !== null && next === eos) break;
      const piece = decoder ? decoder.push(next) : '';
      if (o.stop.length) {
        text += piece;
        const hit = o.stop.map((s) => text.indexOf(s)).filter((k) => k >= 0);
        if (hit.length) {
          const cut = Math.min(...hit);
          if (cut > 0) yield { token: next, text: text.slice(0, cut) };
          return;
        }
        const emit = text.length > holdBack ? text.slice(0, text.length - holdBack) : '';
        text = text.slice(emit.length);
        yield { token: next, text: emit };
      } else {
        yield { token: next, text: piece };
      }
      if (i + 1 < o.maxTokens) [logits] = await model.decode([seq], [next], { signal: opts.signal });
    }
    const rest = text + (decoder ? decoder.flush() : '');
    if (rest) yield { token: -1, text: rest };
  } finally {
    seq.dispose();
    first = undefined as never;
  }
}
