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
 * The methods here check their arguments and hand them to Forward (forward.ts), the one route to
 * the native forward: it owns the states (abort copies, device slots), chunking and the commit. On
 * device 'cuda' every sequence's state stays in a device slot of the model (allocated at the
 * sequence's first call, freed by its dispose() or the model's), so no state crosses to the host
 * between steps; snapshotAsync() / restoreAsync() copy one sequence's state.
 */
import type { NativeEngine } from '../../bindings';
import type { Tokenizer } from '../checkpoint/tokenizer';
import { SimbaError, fromNative } from '../errors';
import { LIMITS } from '../limits';
import { copyConfig, modelFamily, type MambaConfig, type WeightFormat } from '../types';
import * as v from '../validate';
import { Forward, MAX_CHUNK_TOKENS } from './forward';
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
  type StepOptions,
  type StepResult,
} from './lm';
import { packSampling, unpackSampling } from './sampling';
import { Sequence, stateFingerprint, type SlotStore } from './sequence';
import { checkSimba, flopsPerToken, headFlops, layerFlops, type SimbaOptions, type SimbaPlan } from './simba';

export { MAX_CHUNK_TOKENS } from './forward';
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
  private readonly forward: Forward;

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
    // Falcon-Mamba's state has Mamba-1's layout but not its meaning: the family is part of the fingerprint
    const family = modelFamily(c);
    this.fingerprint = stateFingerprint([
      c.nLayer,
      c.dInner,
      c.dState,
      c.dConv,
      c.dModel,
      c.vocabSize,
      ...(family === 'falcon-mamba' ? [1] : []),
      ...(c.mamba2 ? [2, c.mamba2.nHeads, c.mamba2.nGroups] : []),
    ]);
    this.source = source;
    this.slots = engine.info().device === 'cuda' ? this.slotStore() : null;
    this.forward = new Forward(() => this.engine, this.slots, this.stateFloats, config);
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
      config: copyConfig(this.config),
      family: modelFamily(this.config),
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
    this.live('prefill');
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
    const plans = this.simbaPlans('prefill', toks, o.simba);
    const seqs = ins.map((inp, i) =>
      inp.sequence === undefined ? this.newSequence() : this.ownSequence(inp.sequence, `prefill: inputs[${i}].sequence`),
    );
    return this.forward.prefill(seqs, toks, positions, plans, signal);
  }

  /** Each prompt's Simba plan (checkSimba: E_ARG starting with `what`), or null without `simba`. */
  private simbaPlans(what: string, toks: Int32Array[], simba: unknown): SimbaPlan[] | null {
    if (simba === undefined) return null;
    return toks.map((t) => checkSimba(this.config, t.length, simba as SimbaOptions | SimbaPlan, what));
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
   * One decode step for many sequences at once: feeds tokens[i] to sequences[i] and returns the
   * next-token logits of each ([vocabSize] per sequence). The rows are views of one fresh buffer
   * (copying them made every step allocate twice: with a tokenizer on the JS heap the extra garbage
   * collections cost a large batch about 15%). To generate, prefer decodeSample or step: they
   * sample natively and bring back only tokens.
   */
  async decode(sequences: Sequence[], tokens: ArrayLike<number>, opts?: DecodeOptions): Promise<Float32Array[]> {
    this.live('decode');
    const o = v.options('decode', opts, DECODE_KEYS);
    const signal = v.signal('decode', 'signal', o.signal);
    if (!Array.isArray(sequences) || sequences.length === 0)
      throw v.argError('decode', `give at least one sequence (an array of Sequence), got ${v.describeType(sequences)}`);
    sequences.forEach((s, i) => this.ownSequence(s, `decode: sequences[${i}]`));
    const ids = this.tokenArray(tokens, 'decode');
    if (ids.length !== sequences.length)
      throw new SimbaError('E_ARG', `decode: ${sequences.length} sequences but ${ids.length} tokens (one token per sequence)`);
    return this.forward.decode(sequences, ids, signal);
  }

  /**
   * One native call over a mixed batch: prompt chunks and decode tokens, each continuing its
   * sequence, with native sampling after the last token of every input that asks for it. Only
   * tokens and logprobs come back to JS. At most MAX_CHUNK_TOKENS tokens in all (Simba: each
   * input pruned by its own plan, at most LIMITS.simbaTokens per input). Aborting rejects with
   * E_ABORTED and leaves the sequences (and the sampling RNGs) as they were.
   * @example
   *   const rng = rngFromSeed(1);
   *   const r = await model.step([{ sequence: seq, tokens: ids, sample: [{ temperature: 0.8, topK: 40, rng }] }]);
   *   r.samples[0][0].token;
   */
  async step(inputs: StepInput[], opts?: StepOptions): Promise<StepResult> {
    return this.stepAs('step', inputs, opts);
  }

  /** step(), its messages starting with `w` (decodeSample is a step too). */
  private async stepAs(w: string, inputs: StepInput[], opts?: StepOptions): Promise<StepResult> {
    this.live(w);
    const o = v.options(w, opts, STEP_KEYS);
    const signal = v.signal(w, 'signal', o.signal);
    if (!Array.isArray(inputs) || inputs.length === 0)
      throw v.argError(w, `give at least one input (an array of {sequence, tokens, sample?}), got ${v.describeType(inputs)}`);
    const seqs = inputs.map((inp, i) => this.ownSequence((inp as StepInput | null)?.sequence, `${w}: inputs[${i}].sequence`));
    const toks = inputs.map((inp, i) => this.tokenArray(inp.tokens, `${w}: inputs[${i}]`));
    const total = toks.reduce((a, t) => a + t.length, 0);
    const plans = this.simbaPlans(w, toks, o.simba);
    if (!plans && total > MAX_CHUNK_TOKENS)
      throw new SimbaError('E_ARG', `${w}: ${total} tokens exceed ${MAX_CHUNK_TOKENS} per call (prefill long prompts in chunks)`);
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
    const r = await this.forward.step(w, seqs, toks, Int32Array.from(want), plans, packed, signal);
    const sampled = unpackSampling(
      r,
      jobs.map((j) => j.params),
    );
    let k = 0;
    const samples = inputs.map((inp) => (inp.sample ?? []).map(() => sampled[k++]));
    return { samples, sampleMs: r.sampleMs };
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

  /**
   * Logits of a token sequence from an empty state, at the asked positions.
   * @example const { logits } = await model.logits([1, 2, 3], 'all'); // 3 rows of vocabSize
   */
  async logits(
    ids: ArrayLike<number>,
    positions: LogitsPositions = 'last',
    opts?: StepOptions,
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
      simba: o.simba as SimbaOptions | SimbaPlan | undefined,
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
