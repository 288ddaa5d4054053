/**
 * Float64 reference of the native sampler (native/cpu/sampling.h), written from the rule, not
 * from the C++: full sorts, exact exp, BigInt splitmix64. Used by test/sampling.test.ts.
 */
export interface RefParams {
  temperature: number;
  topK?: number;
  topP?: number;
  minP?: number;
  presence?: number;
  frequency?: number;
  repetition?: number;
  bias?: Map<number, number>;
  history?: number[];
  logprobs?: number;
  limit?: number;
}

const MASK = (1n << 64n) - 1n;

/** splitmix64: the next uniform in [0, 1) and the advanced state. */
export function splitmix(state: bigint): { u: number; state: bigint } {
  const s = (state + 0x9e3779b97f4a7c15n) & MASK;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  z ^= z >> 31n;
  return { u: Number(z >> 11n) * 2 ** -53, state: s };
}

/** The adjusted logits (steps 1-3), as float32 values like the native code. */
export function adjusted(logits: ArrayLike<number>, p: RefParams): number[] {
  const n = p.limit && p.limit < logits.length ? p.limit : logits.length;
  const f = Math.fround;
  const x = Array.from({ length: n }, (_, i) => logits[i]);
  for (const [id, b] of p.bias ?? []) if (id < n) x[id] = f(x[id] + f(b));
  const rep = f(p.repetition ?? 1),
    fr = f(p.frequency ?? 0),
    pr = f(p.presence ?? 0);
  if ((p.history?.length ?? 0) > 0 && (rep !== 1 || fr !== 0 || pr !== 0)) {
    const counts = new Map<number, number>();
    for (const t of p.history!) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [id, c] of counts) {
      if (id < 0 || id >= n) continue;
      let v = x[id];
      if (rep !== 1) v = v > 0 ? f(v / rep) : f(v * rep);
      x[id] = f(v - f(f(c * fr) + pr));
    }
  }
  return x;
}

/** The support set, in the order (x desc, id asc), or null for greedy. */
export function support(x: number[], p: RefParams): number[] | null {
  if (p.temperature === 0) return null;
  const T = Math.fround(p.temperature);
  const order = x.map((_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
  const xmax = x[order[0]];
  const w = (i: number) => Math.exp((x[i] - xmax) / T);
  const k = p.topK && p.topK < x.length ? p.topK : x.length;
  let cut = k;
  if (p.minP) {
    const thr = xmax + T * Math.log(Math.fround(p.minP));
    let m = 0;
    while (m < k && x[order[m]] >= thr) m++;
    cut = Math.min(cut, m);
  }
  if (p.topP !== undefined && p.topP < 1) {
    let z = 0;
    for (let j = 0; j < k; j++) z += w(order[j]);
    const target = Math.fround(p.topP) * z;
    let acc = 0;
    for (let j = 0; j < k; j++) {
      acc += w(order[j]);
      if (acc >= target) {
        cut = Math.min(cut, j + 1);
        break;
      }
    }
  }
  return order.slice(0, cut);
}

export interface RefResult {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
  state: bigint;
  support: number[] | null;
}

export function refSample(logits: ArrayLike<number>, p: RefParams, state: bigint): RefResult {
  const x = adjusted(logits, p);
  const sup = support(x, p);
  let token: number;
  if (!sup) {
    token = 0;
    for (let i = 1; i < x.length; i++) if (x[i] > x[token]) token = i;
  } else {
    const xmax = Math.max(...sup.map((i) => x[i]));
    const ids = [...sup].sort((a, b) => a - b);
    const ws = ids.map((i) => Math.exp((x[i] - xmax) / Math.fround(p.temperature)));
    const zs = ws.reduce((a, b) => a + b, 0);
    const r = splitmix(state);
    state = r.state;
    const target = r.u * zs;
    token = ids[ids.length - 1];
    let acc = 0;
    for (let j = 0; j < ids.length; j++) {
      acc += ws[j];
      if (target < acc) {
        token = ids[j];
        break;
      }
    }
  }
  const xm = Math.max(...x);
  const lse = xm + Math.log(x.reduce((a, v) => a + Math.exp(v - xm), 0));
  const top =
    (p.logprobs ?? 0) > 0
      ? x
          .map((_, i) => i)
          .sort((a, b) => x[b] - x[a] || a - b)
          .slice(0, p.logprobs)
          .map((i) => ({ token: i, logprob: x[i] - lse }))
      : [];
  return { token, logprob: x[token] - lse, top, state, support: sup };
}
