/**
 * MambaModel: a checkpoint held by the native engine; prefill / decode on sequences, logits.
 * Every heavy call runs natively off the event loop and returns a Promise. Loading lives in
 * load.ts; generation (lib/generate) works on the LanguageModel interface (lm.ts) this implements.
 *
 * @example
 *   import { loadModel } from 'simba-ssm';
 *   const model = await loadModel();                       // the shipped brown-mamba-s
 *   const { logits } = await model.logits(model.tokenizer!.encode('The jury said'), 'all');
 *   const [r] = await model.prefill([{ tokens: [1, 2, 3] }]);
 *   const [next] = await model.decode([r.sequence], [4]);
 *   model.dispose();
 *
 * On device 'cuda' every sequence's state stays in a device slot of the model (allocated at the
 * sequence's first call, freed by its dispose() or the model's): prefill, decode, step and logits
 * pass slots, so no state crosses to the host between steps; snapshotAsync() / restoreAsync() copy
 * one sequence's state. With an abort signal (or a chunked prefill) the states of the call's
 * sequences are copied to the host first and written back when the call is abandoned.
 */
import type { NativeEngine, NativeSimbaOptions } from '../../bindings';
import type { Tokenizer } from '../checkpoint/tokenizer';
import { SimbaError, fromNative } from '../errors';
import { LIMITS } from '../limits';
import type { MambaConfig, WeightFormat } from '../types';
import * as v from '../validate';
import {
  tokenIds,
  type DecodeOptions,
  type LanguageModel,
  type LogitsPositions,
  type ModelInfo,
  type PrefillInput,
  type PrefillOptions,
  type PrefillResult,
  type SampledToken,
  type SamplingParams,
  type StepInput,
  type StepResult,
} from './lm';
import { packSampling, unpackSampling } from './sampling';
import { Sequence, stateFingerprint, type SlotStore } from './sequence';
import {
  criterionCode,
  flopsPerToken,
  headFlops,
  layerFlops,
  planSimba,
  validateSimbaOptions,
  type SimbaOptions,
  type SimbaPlan,
} from './simba';

/** The largest number of tokens one native call processes; longer dense prompts are chunked. */
export const MAX_CHUNK_TOKENS = LIMITS.chunkTokens;
const MAX_SIMBA_TOKENS = LIMITS.simbaTokens;
/** Most logits one call returns (1 GiB of float32): a prompt's every position times the vocabulary adds up fast. */
const MAX_LOGITS_FLOATS = LIMITS.logitsFloats;

const PREFILL_KEYS = ['logits', 'simba', 'signal'] as const;
const INPUT_KEYS = ['sequence', 'tokens', 'logits'] as const;
const DECODE_KEYS = ['signal'] as const;
const LOGITS_KEYS = ['simba', 'signal'] as const;
const STEP_KEYS = ['simba', 'signal'] as const;

/** Bounds of the pool of recycled host states (Sequence.recycle()). */
const POOL_BYTES = 512 * 1024 * 1024;
const POOL_STATES = 64;

export class MambaModel implements LanguageModel {
  private engine: NativeEngine | null;
  private readonly stateFloats: number;
  private readonly fingerprint: number;
  private readonly source: string;
  /** Device 'cuda': the engine's state slots, which this model's sequences use; null on the CPU. */
  private readonly slots: SlotStore | null;

  /** @internal use loadModel() or randomModel() */
  constructor(
    engine: NativeEngine,
    readonly config: MambaConfig,
    readonly tokenizer: Tokenizer | null,
    private readonly weights: WeightFormat,
    source: string,
  ) {
    this.engine = engine;
    this.stateFloats = engine.info().stateFloats;
    const c = config;
    this.fingerprint = stateFingerprint([c.nLayer, c.dInner, c.dState, c.dConv, c.dModel, c.vocabSize]);
    this.source = source;
    this.slots = engine.info().device === 'cuda' ? this.slotStore() : null;
  }

  private slotStore(): SlotStore {
    const call = async (what: string, f: (e: NativeEngine) => Promise<void>) => {
      const e = this.live(what);
      try {
        await f(e);
      } catch (err) {
        throw fromNative(err);
      }
    };
    return {
      alloc: async () => {
        const e = this.live('allocState');
        try {
          return await e.allocState();
        } catch (err) {
          throw fromNative(err);
        }
      },
      free: (slot) => {
        // The model's dispose frees the whole pool; a slot outlives neither.
        if (this.engine) this.engine.freeState(slot).catch(() => undefined);
      },
      read: (slot, out, what) => call(what, (e) => e.readState(slot, out)),
      write: (slot, src, what) => call(what, (e) => e.writeState(slot, src)),
    };
  }

  private live(what: string): NativeEngine {
    if (!this.engine) throw new SimbaError('E_DISPOSED', `${what}: the model has been disposed`);
    return this.engine;
  }

  /**
   * A new, empty sequence (zero state; on device 'cuda' its slot is taken at its first call). Its
   * host state reuses the array of a recycled sequence when one is pooled (see Sequence.recycle()).
   */
  newSequence(): Sequence {
    this.live('newSequence');
    if (this.slots) return new Sequence(null, this.fingerprint, { floats: this.stateFloats, slots: this.slots });
    const reused = this.statePool.pop();
    if (reused) reused.fill(0);
    return new Sequence(reused ?? new Float32Array(this.stateFloats), this.fingerprint, undefined, this.pool);
  }

  // Recycled host states, at most POOL_BYTES of them (and at most POOL_STATES).
  private readonly statePool: Float32Array[] = [];
  private readonly pool = {
    give: (state: Float32Array) => {
      const max = Math.min(POOL_STATES, Math.floor(POOL_BYTES / state.byteLength));
      if (this.engine && this.statePool.length < max) this.statePool.push(state);
    },
  };

  info(): ModelInfo {
    const ni = this.live('info').info();
    return {
      config: { ...this.config },
      paramCount: ni.paramCount,
      flopsPerToken: flopsPerToken(this.config),
      layerFlops: layerFlops(this.config),
      headFlops: headFlops(this.config),
      weights: this.weights,
      weightBytes: ni.weightBytes,
      stateBytes: this.stateFloats * 4,
      device: ni.device ?? 'cpu',
      ...(ni.stateBytesToDevice !== undefined
        ? { stateBytesToDevice: ni.stateBytesToDevice, stateBytesToHost: ni.stateBytesToHost ?? 0 }
        : {}),
      isa: ni.isa,
      threads: ni.threads,
      source: this.source,
    };
  }

  /** Validates token ids; returns them as an Int32Array. */
  private tokenArray(tokens: ArrayLike<number>, what: string): Int32Array {
    return tokenIds(what, tokens, this.config.vocabSize);
  }

  private positionsFor(spec: LogitsPositions, n: number, what: string): number[] {
    if (spec === 'last') return [n - 1];
    if (spec === 'all') return Array.from({ length: n }, (_, i) => i);
    if (spec === 'none') return [];
    if (!Array.isArray(spec))
      throw v.argError(what, `logits must be 'last', 'all', 'none' or an array of positions, got ${v.describeType(spec)}`);
    for (const p of spec)
      if (typeof p !== 'number') throw v.argError(what, `logits positions must be integers, got ${v.describeType(p)}`);
      else if (!Number.isInteger(p) || p < 0 || p >= n)
        throw new SimbaError('E_ARG', `${what}: logits position ${String(p)} is outside the ${n} tokens`);
    return [...spec];
  }

  /**
   * Processes prompts (a batch of any lengths) and returns logits at the asked positions.
   * Each input continues its sequence (a new one if none is given). With `simba`, tokens are pruned
   * between layers (see SimbaOptions); a token that Simba drops *exits early*: its logits, if asked
   * for, come from its residual stream at the layer where it was dropped (through norm_f and the
   * head). Decoding after a pruned prefill continues densely from the pruned states.
   */
  async prefill(inputs: PrefillInput[], opts?: PrefillOptions): Promise<PrefillResult[]> {
    const engine = this.live('prefill');
    const o = v.options('prefill', opts, PREFILL_KEYS);
    const signal = v.signal('prefill', 'signal', o.signal);
    if (!Array.isArray(inputs) || inputs.length === 0)
      throw v.argError('prefill', `give at least one input (an array of { tokens }), got ${v.describeType(inputs)}`);
    const ins = inputs.map((inp, i) => v.options('prefill', inp, INPUT_KEYS, `inputs[${i}]`));
    const toks = ins.map((inp, i) => this.tokenArray(inp.tokens as ArrayLike<number>, `prefill input ${i}`));
    const positions = toks.map((t, i) =>
      this.positionsFor((ins[i].logits ?? o.logits ?? 'last') as LogitsPositions, t.length, `prefill input ${i}`),
    );
    const rows = positions.reduce((a, p) => a + p.length, 0);
    if (rows * this.config.vocabSize > MAX_LOGITS_FLOATS)
      throw new SimbaError(
        'E_ARG',
        `prefill: ${rows} logit rows of ${this.config.vocabSize} would take ` +
          `${((rows * this.config.vocabSize * 4) / 2 ** 30).toFixed(1)} GiB (limit ${(MAX_LOGITS_FLOATS * 4) / 2 ** 30} GiB); ask for fewer positions or split the batch`,
      );
    const simba = o.simba as SimbaOptions | undefined;
    if (simba !== undefined) validateSimbaOptions(this.config, simba, 'prefill');
    const seqs = ins.map((inp, i) =>
      inp.sequence === undefined ? this.newSequence() : this.ownSequence(inp.sequence, `prefill: inputs[${i}].sequence`),
    );
    if (new Set(seqs).size !== seqs.length)
      throw new SimbaError('E_ARG', 'prefill: the same sequence appears twice in one batch');
    checkAbort(signal, 'prefill');
    const total = toks.reduce((a, t) => a + t.length, 0);
    const chunked = simba === undefined && total > MAX_CHUNK_TOKENS;
    const acquired: Sequence[] = [];
    try {
      for (const s of seqs) {
        s.acquire('prefill');
        acquired.push(s);
      }
      // CPU: the native calls update `work`: the states themselves, or copies when the call may be
      // abandoned (an abort signal, or a chunked prefill that dispose() can stop between chunks); copies
      // are committed to the sequences only when the whole call completes. Device: the slots themselves
      // (saved first and written back on failure in those cases, see onSlots).
      const body = async (
        states: Float32Array[] | Int32Array,
        part: (i: number, j: number) => Float32Array[] | Int32Array,
      ): Promise<PrefillResult[]> => {
        let out: PrefillResult[];
        if (simba !== undefined) {
          for (const t of toks)
            if (t.length > MAX_SIMBA_TOKENS)
              throw new SimbaError(
                'E_ARG',
                `prefill: a Simba prefill takes at most ${MAX_SIMBA_TOKENS} tokens per prompt (got ${t.length})`,
              );
          const plans = toks.map((t) => planSimba(this.config, t.length, simba));
          out = await this.run(engine, seqs, states, toks, positions, plans, simba, signal);
        } else if (!chunked) {
          out = await this.run(engine, seqs, states, toks, positions, null, undefined, signal);
        } else {
          // More tokens than one call takes: consecutive prompts packed into calls of at most
          // MAX_CHUNK_TOKENS tokens (one call per prompt made 911 prompts of 9 tokens 5x slower than
          // 910), and a longer prompt alone, in chunks that continue from its state.
          out = [];
          for (let i = 0; i < toks.length;) {
            let j = i,
              n = 0;
            while (j < toks.length && n + toks[j].length <= MAX_CHUNK_TOKENS) n += toks[j++].length;
            if (j > i) {
              checkAbort(signal, 'prefill');
              checkDisposedBetweenChunks(this.engine);
              const r = this.run(
                engine,
                seqs.slice(i, j),
                part(i, j),
                toks.slice(i, j),
                positions.slice(i, j),
                null,
                undefined,
                signal,
              );
              out.push(...(await r));
              i = j;
              continue;
            }
            const parts: PrefillResult[] = [];
            for (let c0 = 0; c0 < toks[i].length; c0 += MAX_CHUNK_TOKENS) {
              checkAbort(signal, 'prefill');
              checkDisposedBetweenChunks(this.engine);
              const chunk = toks[i].subarray(c0, c0 + MAX_CHUNK_TOKENS);
              const pos = positions[i].filter((p) => p >= c0 && p < c0 + chunk.length).map((p) => p - c0);
              parts.push((await this.run(engine, [seqs[i]], part(i, i + 1), [chunk], [pos], null, undefined, signal))[0]);
            }
            out.push(mergeChunks(parts, MAX_CHUNK_TOKENS, this.config.nLayer));
            i++;
          }
          checkDisposedBetweenChunks(this.engine);
        }
        checkAbort(signal, 'prefill');
        return out;
      };
      let out: PrefillResult[];
      if (this.slots) {
        out = await this.onSlots(engine, seqs, !!signal || chunked, (slots) => body(slots, (i, j) => slots.slice(i, j)));
      } else {
        const work = seqs.map((s) => (signal || chunked ? s.state.slice() : s.state));
        out = await body(work, (i, j) => work.slice(i, j));
        seqs.forEach((s, i) => {
          if (work[i] !== s.state) s.state.set(work[i]);
        });
      }
      seqs.forEach((s, i) => s.advance(toks[i].length));
      return out;
    } finally {
      for (const s of acquired) s.release();
    }
  }

  /** A sequence argument: a Sequence of a model with this state layout (on device 'cuda': of this model). */
  private ownSequence(s: unknown, what: string): Sequence {
    if (!(s instanceof Sequence))
      throw v.argError(what, `must be a Sequence (from model.newSequence()), got ${v.describeType(s)}`);
    if (s.stateFloats !== this.stateFloats) throw v.argError(what, 'belongs to a model of another shape');
    if (s.slots !== this.slots)
      throw v.argError(
        what,
        !s.slots
          ? "is a CPU sequence; this model runs on device 'cuda' (move it with snapshotAsync() / restoreAsync())"
          : this.slots
            ? "belongs to another model on device 'cuda' (its state lives in that model's device slots)"
            : "belongs to a model on device 'cuda' (move it with snapshotAsync() / restoreAsync())",
      );
    return s;
  }

  /**
   * One native call (decode, step) on the sequences' states: CPU, the states themselves, or with a
   * signal copies committed only when it was not aborted; device, their slots (see onSlots). Positions
   * are the caller's.
   */
  private async forwardOn<R>(
    engine: NativeEngine,
    seqs: Sequence[],
    signal: AbortSignal | undefined,
    what: string,
    call: (states: Float32Array[] | Int32Array, cancel: Int32Array | undefined) => Promise<R>,
  ): Promise<R> {
    const body = async (states: Float32Array[] | Int32Array) => {
      let r;
      try {
        r = await abortable((cancel) => call(states, cancel), signal, what, !Array.isArray(states));
      } catch (e) {
        throw fromNative(e);
      }
      checkAbort(signal, what);
      return r;
    };
    if (this.slots) return this.onSlots(engine, seqs, !!signal, body);
    const work = seqs.map((s) => (signal ? s.state.slice() : s.state));
    const r = await body(work);
    seqs.forEach((s, i) => {
      if (work[i] !== s.state) s.state.set(work[i]);
    });
    return r;
  }

  /**
   * Device 'cuda': runs body on the sequences' slots (allocated on first use). With `guard` (an abort
   * signal, or a chunked prefill) their states are first copied to the host and written back when body
   * fails, so an aborted call leaves them as they were (the forward in flight is awaited first, see
   * abortable). Without it nothing but the slot numbers crosses to the device.
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
      if (saved && this.engine) {
        const keep = saved;
        await Promise.all(Array.from(slots, (slot, i) => engine.writeState(slot, keep[i]))).catch(() => undefined);
      }
      throw e;
    }
  }

  /** One native forward over `states` (host states or device slots, updated in place); the sequences' positions are not touched. */
  private async run(
    engine: NativeEngine,
    seqs: Sequence[],
    states: Float32Array[] | Int32Array,
    toks: Int32Array[],
    positions: number[][],
    plans: SimbaPlan[] | null,
    simba: SimbaOptions | undefined,
    signal: AbortSignal | undefined,
  ): Promise<PrefillResult[]> {
    const L = this.config.nLayer,
      V = this.config.vocabSize;
    const lengths = Int32Array.from(toks, (t) => t.length);
    const all = new Int32Array(lengths.reduce((a, b) => a + b, 0));
    // Each asked token once (the engine fills one logits row per distinct token; a repeat would stay zero).
    const want: number[] = [];
    const rowOf = new Map<number, number>();
    let off = 0;
    toks.forEach((t, i) => {
      all.set(t, off);
      for (const p of positions[i])
        if (!rowOf.has(off + p)) {
          rowOf.set(off + p, want.length);
          want.push(off + p);
        }
      off += t.length;
    });
    const native = plans && simba ? this.nativeSimba(plans, simba) : undefined;
    let r;
    try {
      r = await abortable(
        (cancel) => engine.forward(all, lengths, states, Int32Array.from(want), native, undefined, cancel),
        signal,
        'prefill',
        !Array.isArray(states),
      );
    } catch (e) {
      throw fromNative(e);
    }
    const lf = layerFlops(this.config);
    const results: PrefillResult[] = [];
    off = 0;
    for (let i = 0; i < seqs.length; i++) {
      const processed = Array.from(r.processed.subarray(i * L, (i + 1) * L));
      const logits = positions[i].map((p) => {
        const k = rowOf.get(off + p)!;
        return r.logits.slice(k * V, (k + 1) * V);
      });
      const sum = processed.reduce((a, b) => a + b, 0);
      results.push({
        sequence: seqs[i],
        positions: positions[i],
        logits,
        processed,
        exitLayer: r.exitLayer.slice(off, off + toks[i].length),
        flops: sum * lf,
        relFlops: sum / (L * toks[i].length),
      });
      off += toks[i].length;
    }
    return results;
  }

  /**
   * One decode step for many sequences at once: feeds tokens[i] to sequences[i] and returns the
   * next-token logits of each ([vocabSize] per sequence). The rows are views of one fresh buffer
   * (copying them made every step allocate twice: with a tokenizer on the JS heap the extra garbage
   * collections cost a large batch about 15%). To generate, prefer decodeSample or step: they
   * sample natively and bring back only tokens.
   */
  async decode(sequences: Sequence[], tokens: ArrayLike<number>, opts?: DecodeOptions): Promise<Float32Array[]> {
    const engine = this.live('decode');
    const o = v.options('decode', opts, DECODE_KEYS);
    const signal = v.signal('decode', 'signal', o.signal);
    if (!Array.isArray(sequences) || sequences.length === 0)
      throw v.argError('decode', `give at least one sequence (an array of Sequence), got ${v.describeType(sequences)}`);
    sequences.forEach((s, i) => this.ownSequence(s, `decode: sequences[${i}]`));
    const ids = this.tokenArray(tokens, 'decode');
    if (ids.length !== sequences.length)
      throw new SimbaError('E_ARG', `decode: ${sequences.length} sequences but ${ids.length} tokens (one token per sequence)`);
    if (new Set(sequences).size !== sequences.length)
      throw new SimbaError('E_ARG', 'decode: the same sequence appears twice in one batch');
    checkAbort(signal, 'decode');
    const acquired: Sequence[] = [];
    try {
      for (const s of sequences) {
        s.acquire('decode');
        acquired.push(s);
      }
      const n = sequences.length,
        V = this.config.vocabSize;
      const r = await this.forwardOn(engine, sequences, signal, 'decode', (states, cancel) =>
        engine.forward(
          ids,
          new Int32Array(n).fill(1),
          states,
          Int32Array.from({ length: n }, (_, i) => i),
          undefined,
          undefined,
          cancel,
        ),
      );
      for (const s of sequences) s.advance(1);
      const logits = r.logits;
      return sequences.map((_, i) => logits.subarray(i * V, (i + 1) * V));
    } finally {
      for (const s of acquired) s.release();
    }
  }

  /**
   * One native call over a mixed batch: prompt chunks and decode tokens, each continuing its
   * sequence, with native sampling after the last token of every input that asks for it. Only
   * tokens and logprobs come back to JS. At most MAX_CHUNK_TOKENS tokens in all (Simba: each
   * input pruned by its own plan, at most MAX_SIMBA_TOKENS per input). Aborting rejects with
   * E_ABORTED and leaves the sequences (and the sampling RNGs) as they were.
   * @example
   *   const rng = rngFromSeed(1);
   *   const r = await model.step([{ sequence: seq, tokens: ids, sample: [{ temperature: 0.8, topK: 40, rng }] }]);
   *   r.samples[0][0].token;
   */
  async step(inputs: StepInput[], opts?: { simba?: SimbaOptions; signal?: AbortSignal }): Promise<StepResult> {
    return this.stepAs('step', inputs, opts);
  }

  /** step(), its messages starting with `w` (decodeSample is a step too). */
  private async stepAs(
    w: string,
    inputs: StepInput[],
    opts?: { simba?: SimbaOptions; signal?: AbortSignal },
  ): Promise<StepResult> {
    const engine = this.live(w);
    const o = v.options(w, opts, STEP_KEYS);
    const signal = v.signal(w, 'signal', o.signal);
    const simba = o.simba as SimbaOptions | undefined;
    if (!Array.isArray(inputs) || inputs.length === 0)
      throw v.argError(w, `give at least one input (an array of {sequence, tokens, sample?}), got ${v.describeType(inputs)}`);
    const seqs = inputs.map((inp, i) => this.ownSequence((inp as StepInput | null)?.sequence, `${w}: inputs[${i}].sequence`));
    const toks = inputs.map((inp, i) => this.tokenArray(inp.tokens, `${w}: inputs[${i}]`));
    const total = toks.reduce((a, t) => a + t.length, 0);
    if (simba !== undefined) {
      validateSimbaOptions(this.config, simba, w);
      for (const t of toks)
        if (t.length > MAX_SIMBA_TOKENS)
          throw new SimbaError(
            'E_ARG',
            `${w}: a Simba prefill takes at most ${MAX_SIMBA_TOKENS} tokens per prompt (got ${t.length})`,
          );
    } else if (total > MAX_CHUNK_TOKENS) {
      throw new SimbaError('E_ARG', `${w}: ${total} tokens exceed ${MAX_CHUNK_TOKENS} per call (prefill long prompts in chunks)`);
    }
    if (new Set(seqs).size !== seqs.length) throw new SimbaError('E_ARG', `${w}: the same sequence appears twice in one batch`);
    const want: number[] = [];
    const jobs: { row: number; params: SamplingParams }[] = [];
    let off = 0;
    toks.forEach((t, i) => {
      const sample = inputs[i].sample ?? [];
      if (!Array.isArray(sample))
        throw v.argError(w, `inputs[${i}].sample must be an array of sampling params, got ${v.describeType(sample)}`);
      if (sample.length > 0) {
        for (const params of sample) jobs.push({ row: want.length, params });
        want.push(off + t.length - 1);
      }
      off += t.length;
    });
    const packed = packSampling(jobs, this.config.vocabSize, w);
    checkAbort(signal, w);
    const acquired: Sequence[] = [];
    try {
      for (const s of seqs) {
        s.acquire(w);
        acquired.push(s);
      }
      const all = new Int32Array(total);
      off = 0;
      for (const t of toks) {
        all.set(t, off);
        off += t.length;
      }
      const native =
        simba !== undefined
          ? this.nativeSimba(
              toks.map((t) => planSimba(this.config, t.length, simba)),
              simba,
            )
          : undefined;
      const r = await this.forwardOn(engine, seqs, signal, w, (states, cancel) =>
        engine.forward(
          all,
          Int32Array.from(toks, (t) => t.length),
          states,
          Int32Array.from(want),
          native,
          packed,
          cancel,
        ),
      );
      seqs.forEach((s, i) => s.advance(toks[i].length));
      const sampled = unpackSampling(
        r,
        jobs.map((j) => j.params),
      );
      let k = 0;
      const samples = inputs.map((inp) => (inp.sample ?? []).map(() => sampled[k++]));
      return { samples, sampleMs: r.sampleMs };
    } finally {
      for (const s of acquired) s.release();
    }
  }

  /**
   * A batched decode step with native sampling: feeds tokens[i] to sequences[i] and samples its
   * next token with params[i].
   * @example const [t] = await model.decodeSample([seq], [last], [{ temperature: 0, rng: rngFromSeed(0) }]);
   */
  async decodeSample(
    sequences: Sequence[],
    tokens: ArrayLike<number>,
    params: SamplingParams[],
    opts?: DecodeOptions,
  ): Promise<SampledToken[]> {
    if (
      !Array.isArray(sequences) ||
      !Array.isArray(params) ||
      params.length !== sequences.length ||
      tokens?.length !== sequences.length
    )
      throw new SimbaError('E_ARG', 'decodeSample: give one token and one sampling params object per sequence');
    const o = v.options('decodeSample', opts, DECODE_KEYS);
    const r = await this.stepAs(
      'decodeSample',
      sequences.map((sequence, i) => ({ sequence, tokens: [tokens[i]], sample: [params[i]] })),
      { signal: o.signal as AbortSignal | undefined },
    );
    return r.samples.map((x) => x[0]);
  }

  private nativeSimba(plans: SimbaPlan[], simba: SimbaOptions): NativeSimbaOptions {
    const L = this.config.nLayer;
    const keep = new Int32Array(plans.length * L);
    plans.forEach((p, s) => keep.set(p.keep, s * L));
    return {
      keep,
      criterion: criterionCode(simba.criterion),
      reduceSum: simba.reduce === 'sum',
      protectFirst: simba.protect?.first ?? 0,
      protectLast: simba.protect?.last ?? 0,
      seed: simba.seed ?? 0,
    };
  }

  /**
   * Logits of a token sequence from an empty state, at the asked positions.
   * @example const { logits } = await model.logits([1, 2, 3], 'all'); // 3 rows of vocabSize
   */
  async logits(
    ids: ArrayLike<number>,
    positions: LogitsPositions = 'last',
    opts?: { simba?: SimbaOptions; signal?: AbortSignal },
  ): Promise<{
    positions: number[];
    logits: Float32Array[];
    processed: number[];
    relFlops: number;
    flops: number;
    exitLayer: Int32Array;
  }> {
    const o = v.options('logits', opts, LOGITS_KEYS);
    const [r] = await this.prefill([{ tokens: ids }], {
      logits: positions,
      simba: o.simba as SimbaOptions | undefined,
      signal: o.signal as AbortSignal | undefined,
    });
    return {
      positions: r.positions,
      logits: r.logits,
      processed: r.processed,
      relFlops: r.relFlops,
      flops: r.flops,
      exitLayer: r.exitLayer,
    };
  }

  /**
   * Frees the native weights; later calls throw E_DISPOSED. A native call in progress is never
   * interrupted: a prefill or decode that is one native call finishes and resolves normally; a
   * chunked prefill (more than MAX_CHUNK_TOKENS dense tokens) rejects with E_DISPOSED at its next
   * chunk and leaves its sequence's state and position as they were before the call.
   */
  dispose(): void {
    this.statePool.length = 0;
    if (this.engine) this.engine.dispose();
    this.engine = null;
  }

  get disposed(): boolean {
    return this.engine === null;
  }
}

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

function checkDisposedBetweenChunks(engine: NativeEngine | null): void {
  if (engine === null)
    throw new SimbaError(
      'E_DISPOSED',
      'prefill: the model was disposed during a chunked prefill (it stopped between chunks; the sequence is left as before the call)',
    );
}

function abortError(signal: AbortSignal, what: string): SimbaError {
  return new SimbaError('E_ABORTED', `${what}: aborted`, { cause: signal.reason });
}

function checkAbort(signal: AbortSignal | undefined, what: string): void {
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
