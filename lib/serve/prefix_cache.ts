/**
 * Prefix-state cache: recurrent states (Sequence snapshots) keyed by the exact token prefix that
 * produced them, within a byte budget, least recently used evicted first. A Mamba state has a
 * fixed size whatever the prefix length, so one entry restores any amount of prompt work.
 *
 * Keys: a namespace (the prefill settings: dense, or a Simba setting) + the prefix length + a hash
 * of the tokens; the tokens themselves are kept and compared on a hit, so a hash collision can
 * never return a wrong state. Lookups try every cached length (longest first) up to a limit.
 *
 * @example
 *   const cache = new PrefixCache({ maxBytes: 512 << 20 });
 *   cache.insert('dense', prompt.slice(0, 128), await seq.snapshotAsync());
 *   const hit = cache.lookup('dense', prompt, prompt.length - 1);   // { length: 128, state } or null
 *   if (hit) await other.restoreAsync(hit.state);                   // any device (restore(): CPU only)
 */

interface Entry {
  ns: string;
  tokens: Int32Array;
  state: Buffer;
  bytes: number;
}

export interface PrefixCacheStats {
  /** Lookups, lookups that found a prefix, and the prompt tokens those hits saved. */
  queries: number;
  hits: number;
  tokensSaved: number;
  entries: number;
  bytes: number;
  evictions: number;
}

export interface PrefixCacheOptions {
  /** Byte budget of the stored states (0 disables the cache). */
  maxBytes: number;
  /** Long prompts are snapshotted every this many tokens (default 256). */
  blockTokens?: number;
}

/** Two 32-bit FNV-1a style lanes over token ids: the running hash of a prefix. */
function step(h: [number, number], t: number): void {
  h[0] = Math.imul(h[0] ^ (t & 0xffff), 0x01000193) >>> 0;
  h[0] = Math.imul(h[0] ^ (t >>> 16), 0x01000193) >>> 0;
  h[1] = Math.imul(h[1] ^ t, 0x5bd1e995) >>> 0;
  h[1] = (h[1] ^ (h[1] >>> 15)) >>> 0;
}

const seedHash = (): [number, number] => [0x811c9dc5, 0x9747b28c];
const keyOf = (ns: string, length: number, h: [number, number]) =>
  `${ns}\u0000${length}\u0000${h[0].toString(36)}.${h[1].toString(36)}`;

export class PrefixCache {
  readonly maxBytes: number;
  readonly blockTokens: number;
  private readonly entries = new Map<string, Entry>(); // insertion order = recency (oldest first)
  /** Per namespace: cached prefix lengths -> how many entries have that length. */
  private readonly lengths = new Map<string, Map<number, number>>();
  private bytes = 0;
  private readonly counts = { queries: 0, hits: 0, tokensSaved: 0, evictions: 0 };

  constructor(opts: PrefixCacheOptions) {
    this.maxBytes = Math.max(0, opts.maxBytes);
    this.blockTokens = Math.max(1, opts.blockTokens ?? 256);
  }

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  private static key(ns: string, tokens: ArrayLike<number>, length: number): string {
    const h = seedHash();
    for (let i = 0; i < length; i++) step(h, tokens[i]);
    return keyOf(ns, length, h);
  }

  /**
   * The longest cached prefix of `tokens` in namespace `ns` with at most maxLength tokens (the
   * caller keeps at least one token to prefill, for its logits), or null. Counts as a query.
   */
  lookup(ns: string, tokens: ArrayLike<number>, maxLength: number): { length: number; state: Buffer } | null {
    if (!this.enabled) return null;
    this.counts.queries++;
    const f = this.find(ns, tokens, maxLength);
    if (!f) return null;
    this.entries.delete(f.key); // most recently used
    this.entries.set(f.key, f.entry);
    this.counts.hits++;
    this.counts.tokensSaved += f.length;
    return { length: f.length, state: f.entry.state };
  }

  /** The length lookup() would find now (0: none), without counting a query or touching the recency. */
  peek(ns: string, tokens: ArrayLike<number>, maxLength: number): number {
    return this.enabled ? (this.find(ns, tokens, maxLength)?.length ?? 0) : 0;
  }

  private find(ns: string, tokens: ArrayLike<number>, maxLength: number): { key: string; length: number; entry: Entry } | null {
    const lens = [...(this.lengths.get(ns)?.keys() ?? [])]
      .filter((l) => l <= maxLength && l <= tokens.length)
      .sort((a, b) => b - a);
    if (lens.length === 0) return null;
    // one pass over the prompt gives the hash of every candidate length
    const want = new Set(lens);
    const keys = new Map<number, string>();
    const h = seedHash();
    for (let i = 0; i < lens[0]; i++) {
      step(h, tokens[i]);
      if (want.has(i + 1)) keys.set(i + 1, keyOf(ns, i + 1, h));
    }
    for (const length of lens) {
      const key = keys.get(length)!;
      const entry = this.entries.get(key);
      if (entry && samePrefix(entry.tokens, tokens)) return { key, length, entry };
    }
    return null;
  }

  /** Stores the state after `prefix` (replacing an entry of the same prefix), evicting LRU entries. */
  insert(ns: string, prefix: ArrayLike<number>, state: Buffer): void {
    if (!this.enabled || prefix.length === 0) return;
    const bytes = state.byteLength + prefix.length * 4;
    if (bytes > this.maxBytes) return;
    const key = PrefixCache.key(ns, prefix, prefix.length);
    this.remove(key);
    this.entries.set(key, { ns, tokens: Int32Array.from(prefix), state, bytes });
    this.bytes += bytes;
    const lens = this.lengths.get(ns) ?? new Map<number, number>();
    lens.set(prefix.length, (lens.get(prefix.length) ?? 0) + 1);
    this.lengths.set(ns, lens);
    while (this.bytes > this.maxBytes) {
      const oldest = this.entries.keys().next().value as string;
      this.remove(oldest);
      this.counts.evictions++;
    }
  }

  private remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.bytes -= e.bytes;
    const lens = this.lengths.get(e.ns)!;
    const c = (lens.get(e.tokens.length) ?? 1) - 1;
    if (c > 0) lens.set(e.tokens.length, c);
    else lens.delete(e.tokens.length);
  }

  stats(): PrefixCacheStats {
    return { ...this.counts, entries: this.entries.size, bytes: this.bytes };
  }

  clear(): void {
    for (const k of [...this.entries.keys()]) this.remove(k);
  }
}

function samePrefix(prefix: Int32Array, tokens: ArrayLike<number>): boolean {
  if (tokens.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== tokens[i]) return false;
  return true;
}
