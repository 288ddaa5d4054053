/**
 * The one route from a model's calls to the native forward. MambaModel's prefill, decode and step
 * (logits and decodeSample go through them) check their arguments and hand the checked sequences,
 * tokens and plans to Forward, which alone calls engine.forward:
 *
 *   run(what, seqs, signal, calls)
 *     a sequence given twice is E_ARG; the sequences are marked busy for the call;
 *     states: on the CPU the host states themselves, or copies when the call may be abandoned (an
 *       abort signal, or several calls that dispose() can stop between); on device 'cuda' the
 *       sequences' slots, saved to the host first in those cases and written back on failure;
 *     the calls run in order, each abortable (the signal also stops the native forward at its next
 *       layer), abort and dispose checked between them;
 *     commit: copies written back, each sequence advanced by the tokens it was fed.
 *
 * prefill() cuts a dense prefill that does not fit one call (chunkPrompts) and shapes the results;
 * decode() and step() are one call each.
 *
 * @example
 *   const fwd = new Forward(() => engine, null, stateFloats, config);
 *   const [r] = await fwd.prefill([seq], [Int32Array.of(1, 2, 3)], [[2]], null, undefined);
 */
import type { NativeEngine, NativeForwardResult, NativeSampleResult, NativeSampling, NativeSimbaOptions } from '../../bindings';
import { NATIVE_CRITERION } from '../../bindings';
import { SimbaError, fromNative } from '../errors';
import { LIMITS } from '../limits';
import type { MambaConfig } from '../types';
import type { PrefillResult } from './lm';
import type { Sequence, SlotStore } from './sequence';
import { layerFlops, type SimbaPlan } from './simba';

/** The most tokens one native call processes; a longer dense prefill is cut into calls (chunkPrompts). */
export const MAX_CHUNK_TOKENS = LIMITS.chunkTokens;

/** One native forward over consecutive sequences of a run: seqs[first .. first + lengths.length). */
export interface ForwardCall {
  first: number;
  /** Tokens fed to each of those sequences, and all of them one after the other. */
  lengths: Int32Array;
  tokens: Int32Array;
  /** Rows of `tokens` whose logits (or samples) come back. */
  want: Int32Array;
  simba?: NativeSimbaOptions;
  sampling?: NativeSampling;
}

/** A piece of a dense prefill: prompts [first, end) whole, or the tokens `chunk` of prompt `first` alone. */
export interface PromptPiece {
  first: number;
  end: number;
  chunk: { from: number; to: number } | null;
}

/**
 * Prompts of these lengths cut into pieces of at most `max` tokens: consecutive prompts packed into
 * one call (a call per prompt made 911 prompts of 9 tokens 5x slower than 910), a longer prompt
 * alone, in chunks that continue from its state.
 */
export function chunkPrompts(lengths: readonly number[], max: number): PromptPiece[] {
  const pieces: PromptPiece[] = [];
  for (let i = 0; i < lengths.length;) {
    let j = i,
      n = 0;
    while (j < lengths.length && n + lengths[j] <= max) n += lengths[j++];
    if (j > i) {
      pieces.push({ first: i, end: j, chunk: null });
      i = j;
      continue;
    }
    for (let c0 = 0; c0 < lengths[i]; c0 += max)
      pieces.push({ first: i, end: i + 1, chunk: { from: c0, to: Math.min(lengths[i], c0 + max) } });
    i++;
  }
  return pieces;
}

/** Plans (one per sequence, in order) as the engine's Simba argument; they share their options. */
export function nativeSimba(plans: readonly SimbaPlan[], nLayer: number): NativeSimbaOptions {
  const keep = new Int32Array(plans.length * nLayer);
  plans.forEach((p, s) => keep.set(p.keep, s * nLayer));
  const o = plans[0].options;
  return {
    keep,
    criterion: NATIVE_CRITERION[o.criterion ?? 'simba'],
    reduceSum: o.reduce === 'sum',
    protectFirst: o.protect?.first ?? 0,
    protectLast: o.protect?.last ?? 0,
    seed: o.seed ?? 0,
  };
}

export class Forward {
  /**
   * @param engine the model's engine, null once it is disposed
   * @param slots device 'cuda': the engine's state slots; null on the CPU
   */
  constructor(
    private readonly engine: () => NativeEngine | null,
    private readonly slots: SlotStore | null,
    private readonly stateFloats: number,
    private readonly config: MambaConfig,
  ) {}

  /**
   * Dense or pruned prefill of checked prompts: logits at `positions` of each (relative to its
   * tokens), per-layer token counts and exit layers. `plans`: one Simba plan per prompt (one call);
   * null: dense, cut into calls of at most MAX_CHUNK_TOKENS tokens.
   */
  async prefill(
    seqs: Sequence[],
    toks: Int32Array[],
    positions: number[][],
    plans: SimbaPlan[] | null,
    signal: AbortSignal | undefined,
  ): Promise<PrefillResult[]> {
    const pieces: PromptPiece[] = plans
      ? [{ first: 0, end: toks.length, chunk: null }]
      : chunkPrompts(
          toks.map((t) => t.length),
          MAX_CHUNK_TOKENS,
        );
    const calls = pieces.map(({ first, end, chunk }) => {
      if (!chunk) return prefillCall(first, toks.slice(first, end), positions.slice(first, end));
      const pos = positions[first].filter((q) => q >= chunk.from && q < chunk.to).map((q) => q - chunk.from);
      return prefillCall(first, [toks[first].subarray(chunk.from, chunk.to)], [pos]);
    });
    if (plans) calls[0].call.simba = nativeSimba(plans, this.config.nLayer);
    const rs = await this.run(
      'prefill',
      seqs,
      signal,
      calls.map((c) => c.call),
    );
    const out: PrefillResult[] = [];
    let parts: PrefillResult[] = [];
    pieces.forEach(({ first, end, chunk }, k) => {
      const results = this.prefillResults(seqs.slice(first, end), calls[k], rs[k]);
      if (!chunk) return out.push(...results);
      parts.push(results[0]);
      if (chunk.to === toks[first].length) {
        out.push(mergeChunks(parts, MAX_CHUNK_TOKENS, this.config.nLayer));
        parts = [];
      }
    });
    return out;
  }

  /** One decode step: tokens[i] fed to seqs[i]; the next-token logits of each (views of one buffer). */
  async decode(seqs: Sequence[], tokens: Int32Array, signal: AbortSignal | undefined): Promise<Float32Array[]> {
    const n = seqs.length,
      V = this.config.vocabSize;
    const [r] = await this.run('decode', seqs, signal, [
      { first: 0, lengths: new Int32Array(n).fill(1), tokens, want: Int32Array.from({ length: n }, (_, i) => i) },
    ]);
    return seqs.map((_, i) => r.logits.subarray(i * V, (i + 1) * V));
  }

  /** One call over a mixed batch, sampling natively at the `want` rows of the prompts' concatenated tokens. */
  async step(
    what: string,
    seqs: Sequence[],
    toks: Int32Array[],
    want: Int32Array,
    plans: SimbaPlan[] | null,
    sampling: NativeSampling,
    signal: AbortSignal | undefined,
  ): Promise<NativeSampleResult> {
    const simba = plans ? nativeSimba(plans, this.config.nLayer) : undefined;
    const [r] = await this.run(what, seqs, signal, [{ first: 0, ...concat(toks), want, simba, sampling }]);
    // a call with sampling returns the sampler's fields (bindings.ts NativeEngine.forward)
    return r as NativeForwardResult & NativeSampleResult;
  }

  /** The route itself (see the file comment). */
  async run(
    what: string,
    seqs: Sequence[],
    signal: AbortSignal | undefined,
    calls: ForwardCall[],
  ): Promise<(NativeForwardResult & Partial<NativeSampleResult>)[]> {
    const engine = this.engine();
    if (!engine) throw new SimbaError('E_DISPOSED', `${what}: the model has been disposed`);
    if (new Set(seqs).size !== seqs.length)
      throw new SimbaError('E_ARG', `${what}: the same sequence appears twice in one batch`);
    checkAbort(signal, what);
    const fed = new Array<number>(seqs.length).fill(0);
    for (const c of calls) c.lengths.forEach((n, i) => (fed[c.first + i] += n));
    const guard = !!signal || calls.length > 1;
    const acquired: Sequence[] = [];
    try {
      for (const s of seqs) {
        s.acquire(what);
        acquired.push(s);
      }
      const all = async (states: Float32Array[] | Int32Array) => {
        const rs: (NativeForwardResult & Partial<NativeSampleResult>)[] = [];
        for (const c of calls) {
          if (calls.length > 1) {
            checkAbort(signal, what);
            this.checkLiveBetweenCalls(what);
          }
          const part = states.slice(c.first, c.first + c.lengths.length);
          rs.push(await this.call(engine, c, part, signal, what));
        }
        if (calls.length > 1) this.checkLiveBetweenCalls(what);
        checkAbort(signal, what);
        return rs;
      };
      let rs;
      if (this.slots) {
        rs = await this.onSlots(engine, seqs, guard, all);
      } else {
        const work = seqs.map((s) => (guard ? s.state.slice() : s.state));
        rs = await all(work);
        seqs.forEach((s, i) => {
          if (work[i] !== s.state) s.state.set(work[i]);
        });
      }
      seqs.forEach((s, i) => s.advance(fed[i]));
      return rs;
    } finally {
      for (const s of acquired) s.release();
    }
  }

  /** One native forward on `states` (host states or device slots, updated in place). */
  private async call(
    engine: NativeEngine,
    c: ForwardCall,
    states: Float32Array[] | Int32Array,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<NativeForwardResult & Partial<NativeSampleResult>> {
    try {
      return await abortable(
        (cancel) => engine.forward(c.tokens, c.lengths, states, c.want, c.simba, c.sampling, cancel),
        signal,
        what,
        !Array.isArray(states),
      );
    } catch (e) {
      throw fromNative(e);
    }
  }

  private checkLiveBetweenCalls(what: string): void {
    if (this.engine() === null)
      throw new SimbaError(
        'E_DISPOSED',
        `${what}: the model was disposed during a chunked prefill (it stopped between chunks; the sequence is left as before the call)`,
      );
  }

  /**
   * Device 'cuda': runs body on the sequences' slots (allocated on first use). With `guard` their
   * states are first copied to the host and written back when body fails, so an abandoned call leaves
   * them as they were (the forward in flight is awaited first, see abortable). Without it nothing but
   * the slot numbers crosses to the device.
   */
  private async onSlots<T>(
    engine: NativeEngine,
    seqs: Sequence[],
    guard: boolean,
    body: (slots: Int32Array) => Promise<T>,
  ): Promise<T> {
    const slots = Int32Array.from(await Promise.all(seqs.map((s) => s.deviceSlot())));
    let saved: Float32Array[] | null = null;
    if (guard)
      try {
        saved = await Promise.all(
          Array.from(slots, async (slot) => {
            const f = new Float32Array(this.stateFloats);
            await engine.readState(slot, f);
            return f;
          }),
        );
      } catch (e) {
        throw fromNative(e);
      }
    try {
      return await body(slots);
    } catch (e) {
      // Disposed: the pool is gone with the model, nothing to write back.
      if (saved && this.engine()) {
        const keep = saved;
        await Promise.all(Array.from(slots, (slot, i) => engine.writeState(slot, keep[i]))).catch(() => undefined);
      }
      throw e;
    }
  }

  /** The PrefillResults of one prefill call. */
  private prefillResults(seqs: Sequence[], c: PrefillCall, r: NativeForwardResult): PrefillResult[] {
    const L = this.config.nLayer,
      V = this.config.vocabSize;
    const lf = layerFlops(this.config);
    let off = 0;
    return seqs.map((sequence, i) => {
      const n = c.call.lengths[i];
      const processed = Array.from(r.processed.subarray(i * L, (i + 1) * L));
      const logits = c.positions[i].map((p) => {
        const k = c.rowOf.get(off + p)!;
        return r.logits.slice(k * V, (k + 1) * V);
      });
      const sum = processed.reduce((a, b) => a + b, 0);
      const res: PrefillResult = {
        sequence,
        positions: c.positions[i],
        logits,
        processed,
        exitLayer: r.exitLayer.slice(off, off + n),
        flops: sum * lf,
        relFlops: sum / (L * n),
      };
      off += n;
      return res;
    });
  }
}

/** Prompts one after the other, and their lengths. */
function concat(toks: Int32Array[]): { tokens: Int32Array; lengths: Int32Array } {
  const lengths = Int32Array.from(toks, (t) => t.length);
  const tokens = new Int32Array(lengths.reduce((a, b) => a + b, 0));
  let off = 0;
  for (const t of toks) {
    tokens.set(t, off);
    off += t.length;
  }
  return { tokens, lengths };
}

interface PrefillCall {
  call: ForwardCall;
  positions: number[][];
  /** A token's row in the call's logits, by its index in the call's tokens. */
  rowOf: Map<number, number>;
}

/** A prefill call over whole prompts (or one chunk): each asked position once (the engine fills one row per distinct token). */
function prefillCall(first: number, toks: Int32Array[], positions: number[][]): PrefillCall {
  const want: number[] = [];
  const rowOf = new Map<number, number>();
  let off = 0;
  toks.forEach((t, i) => {
    for (const p of positions[i])
      if (!rowOf.has(off + p)) {
        rowOf.set(off + p, want.length);
        want.push(off + p);
      }
    off += t.length;
  });
  return { call: { first, ...concat(toks), want: Int32Array.from(want) }, positions, rowOf };
}

/** The chunks of one prompt as one result. */
function mergeChunks(parts: PrefillResult[], chunk: number, nLayer: number): PrefillResult {
  const exit = new Int32Array(parts.reduce((a, p) => a + p.exitLayer.length, 0));
  let off = 0;
  for (const p of parts) {
    exit.set(p.exitLayer, off);
    off += p.exitLayer.length;
  }
  const processed = parts[0].processed.map((_, l) => parts.reduce((a, p) => a + p.processed[l], 0));
  return {
    sequence: parts[0].sequence,
    positions: parts.flatMap((p, i) => p.positions.map((q) => q + i * chunk)),
    logits: parts.flatMap((p) => p.logits),
    processed,
    exitLayer: exit,
    flops: parts.reduce((a, p) => a + p.flops, 0),
    relFlops: processed.reduce((a, n) => a + n, 0) / (nLayer * exit.length),
  };
}

function abortError(signal: AbortSignal, what: string): SimbaError {
  return new SimbaError('E_ABORTED', `${what}: aborted`, { cause: signal.reason });
}

/** E_ABORTED when the signal has fired. */
export function checkAbort(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/**
 * The native call `start(cancel)`, or an E_ABORTED rejection as soon as the signal fires. The signal
 * also sets the call's cancel flag, so the native forward stops at its next layer (a queued one
 * before it starts) instead of holding the engine until its end; it works on buffers the caller
 * drops, and its result or cancellation is ignored. With `settle` (device slots, which that work
 * updates) the rejection waits for the work to end, so that the caller can write the saved states
 * back after it.
 */
function abortable<T>(
  start: (cancel: Int32Array | undefined) => Promise<T>,
  signal: AbortSignal | undefined,
  what: string,
  settle = false,
): Promise<T> {
  if (!signal) return start(undefined);
  const cancel = new Int32Array(1);
  const p = start(cancel);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      cancel[0] = 1;
      if (!settle) return reject(abortError(signal, what));
      const fail = () => reject(abortError(signal, what));
      p.then(fail, fail);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (x) => {
        signal.removeEventListener('abort', onAbort);
        resolve(x);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
