/**
 * Sampling the next token from a row of logits: greedy, temperature, top-k, top-p, seeded.
 *
 * @example
 *   const rand = mulberry32(1);
 *   const next = sample(logits, { temperature: 0.8, topK: 40, topP: 0.95 }, rand);
 */

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
