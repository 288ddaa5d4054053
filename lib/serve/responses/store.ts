/**
 * Stored responses (store: true): the response object GET returns, the conversation as text and as
 * tokens, and the state after the history, so a follow-up (previous_response_id) prefills only its
 * new input. In Redis when the server has a state store (any replica finds them; a TTL), else in
 * process (a byte and count cap, least recently used dropped first).
 *
 * In Redis a response is a hash at PREFIX:{FP}:r:ID: `meta` (JSON: the object and the messages),
 * `tokens` (int32 little-endian) and `state` (a codec.ts value: checked on the way back; a value that
 * fails is counted and ignored, and the follow-up prefills the whole history instead: slower, same
 * tokens). A response of another model (another fingerprint) is not found.
 *
 * @example
 *   await store.put({ id, object, messages, tokens, state });
 *   const prev = await store.get(id);   // null: unknown or expired
 */
import type { ChatMessage } from '../../checkpoint/chat_template';
import { snapshotPosition } from '../../engine/sequence';
import { decodeState, encodeState, prefixDigest, StateRejected, tokenBytes, valuePosition } from '../state_tier/codec';
import type { RedisStateTier } from '../state_tier/redis_tier';

export interface StoredResponse {
  id: string;
  /** The response object, as GET /v1/responses/{id} returns it. */
  object: Record<string, unknown>;
  /** The conversation so far as text, this response's output last. */
  messages: ChatMessage[];
  /** The conversation so far as tokens (prompts and outputs). */
  tokens: number[];
  /** A snapshot after the first snapshotPosition(state) tokens of `tokens`, or null. */
  state: Buffer | null;
}

export interface ResponseStore {
  put(r: StoredResponse): Promise<void>;
  /** null: unknown or expired. */
  get(id: string): Promise<StoredResponse | null>;
  /** Whether it existed. */
  delete(id: string): Promise<boolean>;
}

const bytesOf = (r: StoredResponse) =>
  (r.state?.byteLength ?? 0) + r.tokens.length * 4 + JSON.stringify(r.object).length + JSON.stringify(r.messages).length;

/** In process: at most maxBytes and maxEntries, least recently used dropped first. */
export class MemoryResponseStore implements ResponseStore {
  private readonly entries = new Map<string, { r: StoredResponse; bytes: number }>();
  private bytes = 0;

  constructor(
    readonly maxBytes = 256 << 20,
    readonly maxEntries = 4096,
  ) {}

  async put(r: StoredResponse): Promise<void> {
    await this.delete(r.id);
    const bytes = bytesOf(r);
    if (bytes > this.maxBytes) return;
    this.entries.set(r.id, { r, bytes });
    this.bytes += bytes;
    while (this.bytes > this.maxBytes || this.entries.size > this.maxEntries)
      await this.delete(this.entries.keys().next().value!);
  }

  async get(id: string): Promise<StoredResponse | null> {
    const e = this.entries.get(id);
    if (!e) return null;
    this.entries.delete(id);
    this.entries.set(id, e);
    return e.r;
  }

  async delete(id: string): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e) return false;
    this.entries.delete(id);
    this.bytes -= e.bytes;
    return true;
  }
}

/** Thrown when the state store cannot answer (the route answers 503). */
export class StoreUnavailable extends Error {}

/** In Redis, with the in-process store for responses that could not be written there. */
export class RedisResponseStore implements ResponseStore {
  private readonly fallback = new MemoryResponseStore(64 << 20, 1024);

  constructor(
    private readonly tier: RedisStateTier,
    private readonly ttlSeconds: number,
  ) {}

  async put(r: StoredResponse): Promise<void> {
    const fields: Record<string, Buffer> = {
      meta: Buffer.from(JSON.stringify({ object: r.object, messages: r.messages })),
      tokens: tokenBytes(r.tokens, r.tokens.length),
    };
    if (r.state) {
      const position = snapshotPosition(r.state);
      fields.state = encodeState({
        fingerprint: this.tier.fingerprint,
        prefix: prefixDigest(r.tokens, position),
        position,
        snapshot: r.state,
      });
    }
    try {
      await this.tier.putHash(`r:${r.id}`, fields, this.ttlSeconds * 1000);
      await this.fallback.delete(r.id);
    } catch {
      await this.fallback.put(r); // this replica still continues it
    }
  }

  async get(id: string): Promise<StoredResponse | null> {
    const local = await this.fallback.get(id);
    if (local) return local;
    let h: Record<string, Buffer> | null;
    try {
      h = await this.tier.getHash(`r:${id}`);
    } catch {
      throw new StoreUnavailable('the state store does not answer; retry shortly');
    }
    if (!h?.meta || !h.tokens || h.tokens.length % 4 !== 0) return null;
    const meta = JSON.parse(h.meta.toString()) as { object: Record<string, unknown>; messages: ChatMessage[] };
    const tokens = Array.from({ length: h.tokens.length / 4 }, (_, i) => h.tokens.readInt32LE(i * 4));
    return { id, object: meta.object, messages: meta.messages, tokens, state: this.state(h.state, tokens) };
  }

  /** The stored state after its checks, or null (counted when refused). */
  private state(value: Buffer | undefined, tokens: number[]): Buffer | null {
    if (!value) return null;
    const position = valuePosition(value);
    if (position < 0 || position > tokens.length) {
      this.tier.countRejected('position');
      return null;
    }
    try {
      return decodeState(value, { fingerprint: this.tier.fingerprint, prefix: prefixDigest(tokens, position), position });
    } catch (e) {
      if (!(e instanceof StateRejected)) throw e;
      this.tier.countRejected(e.reason);
      return null;
    }
  }

  async delete(id: string): Promise<boolean> {
    const local = await this.fallback.delete(id);
    try {
      return (await this.tier.deleteKey(`r:${id}`)) || local;
    } catch {
      throw new StoreUnavailable('the state store does not answer; retry shortly');
    }
  }
}
