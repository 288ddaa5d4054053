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
 */
import type { NativeEngine, NativeSimbaOptions } from '../../bindings';
import type { Tokenizer } from '../checkpoint/tokenizer';
import { SimbaError, fromNative } from '../errors';
import type { MambaConfig, WeightFormat } from '../types';
import type { DecodeOptions, LanguageModel, LogitsPositions, ModelInfo, PrefillInput, PrefillOptions, PrefillResult } from './lm';
import { Sequence, stateFingerprint } from './sequence';
import {
  criterionCode, flopsPerToken, headFlops, layerFlops, planSimba, validateSimbaOptions,
  type SimbaOptions, type SimbaPlan,
} from './simba';

/** The largest number of tokens one native call processes; longer dense prompts are chunked. */
export const MAX_CHUNK_TOKENS = 8192;
/** Upper bound on a single request (a prompt, or a Simba prefill, which cannot be chunked). */
export const MAX_REQUEST_TOKENS = 1 << 20;
export const MAX_SIMBA_TOKENS = 65536;
/** Most logits one call returns (1 GiB of float32): a prompt's every position times the vocabulary adds up fast. */
export const MAX_LOGITS_FLOATS = 2 ** 28;

export class MambaModel implements LanguageModel {
  private engine: NativeEngine | null;
  private readonly stateFloats: number;
  private readonly fingerprint: number;
  private readonly source: string;

  /** @internal use loadModel() or randomModel() */
  constructor(engine: NativeEngine, readonly config: MambaConfig, readonly tokenizer: Tokenizer | null,
              private readonly weights: WeightFormat, source: string) {
    this.engine = engine;
    this.stateFloats = engine.info().stateFloats;
    const c = config;
    this.fingerprint = stateFingerprint([c.nLayer, c.dInner, c.dState, c.dConv, c.dModel, c.vocabSize]);
    this.source = source;
  }

  private live(what: string): NativeEngine {
    if (!this.engine) throw new SimbaError('E_DISPOSED', `${what}: the model has been disposed`);
    return this.engine;
  }

  /** A new, empty sequence (zero state). */
  newSequence(): Sequence {
    this.live('newSequence');
    return new Sequence(new Float32Array(this.stateFloats), this.fingerprint);
  }

  info(): ModelInfo {
    const ni = this.live('info').info();
    return {
      config: { ...this.config }, paramCount: ni.paramCount, flopsPerToken: flopsPerToken(this.config),
      layerFlops: layerFlops(this.config), headFlops: headFlops(this.config), weights: this.weights,
      weightBytes: ni.weightBytes, stateBytes: this.stateFloats * 4, device: ni.device ?? 'cpu', isa: ni.isa, threads: ni.threads,
      source: this.source,
    };
  }

  /** Validates token ids; returns them as an Int32Array. */
  private tokenArray(tokens: ArrayLike<number>, what: string): Int32Array {
    if (!tokens || typeof tokens.length !== 'number') throw new SimbaError('E_ARG', `${what}: tokens must be an array of token ids`);
    if (tokens.length === 0) throw new SimbaError('E_ARG', `${what}: empty prompt (at least one token is needed)`);
    if (tokens.length > MAX_REQUEST_TOKENS)
      throw new SimbaError('E_ARG', `${what}: ${tokens.length} tokens exceed the limit of ${MAX_REQUEST_TOKENS} per request`);
    const out = new Int32Array(tokens.length);
    const V = this.config.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= V)
        throw new SimbaError('E_TOKEN', `${what}: token id ${String(t)} at index ${i} is outside the vocabulary [0, ${V})`);
      out[i] = t;
    }
    return out;
  }

  private positionsFor(spec: LogitsPositions, n: number, what: string): number[] {
    if (spec === 'last') return [n - 1];
    if (spec === 'all') return Array.from({ length: n }, (_, i) => i);
    if (spec === 'none') return [];
    if (!Array.isArray(spec)) throw new SimbaError('E_ARG', `${what}: logits must be 'last', 'all', 'none' or an array of positions`);
    for (const p of spec)
      if (!Number.isInteger(p) || p < 0 || p >= n)
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
  async prefill(inputs: PrefillInput[], opts: PrefillOptions = {}): Promise<PrefillResult[]> {
    const engine = this.live('prefill');
    if (!Array.isArray(inputs) || inputs.length === 0) throw new SimbaError('E_ARG', 'prefill: give at least one input');
    const toks = inputs.map((inp, i) => this.tokenArray(inp?.tokens, `prefill input ${i}`));
    const positions = toks.map((t, i) => this.positionsFor(inputs[i].logits ?? opts.logits ?? 'last', t.length, `prefill input ${i}`));
    const rows = positions.reduce((a, p) => a + p.length, 0);
    if (rows * this.config.vocabSize > MAX_LOGITS_FLOATS)
      throw new SimbaError('E_ARG', `prefill: ${rows} logit rows of ${this.config.vocabSize} would take ` +
        `${((rows * this.config.vocabSize * 4) / 2 ** 30).toFixed(1)} GiB (limit ${MAX_LOGITS_FLOATS * 4 / 2 ** 30} GiB); ask for fewer positions or split the batch`);
    const simba = opts.simba;
    if (simba !== undefined) validateSimbaOptions(this.config, simba);
    const seqs = inputs.map((inp) => inp.sequence ?? this.newSequence());
    if (new Set(seqs).size !== seqs.length) throw new SimbaError('E_ARG', 'prefill: the same sequence appears twice in one batch');
    checkAbort(opts.signal, 'prefill');
    const acquired: Sequence[] = [];
    try {
      for (const s of seqs) { s.acquire('prefill'); acquired.push(s); }
      const total = toks.reduce((a, t) => a + t.length, 0);
      if (simba !== undefined) {
        for (const t of toks)
          if (t.length > MAX_SIMBA_TOKENS) throw new SimbaError('E_ARG', `prefill: a Simba prefill takes at most ${MAX_SIMBA_TOKENS} tokens per prompt (got ${t.length})`);
        const plans = toks.map((t) => planSimba(this.config, t.length, simba));
        return await this.run(engine, seqs, toks, positions, plans, simba);
      }
      if (total <= MAX_CHUNK_TOKENS) return await this.run(engine, seqs, toks, positions, null, undefined);
      // Long dense prompts: one sequence at a time, in chunks that continue from the state.
      const out: PrefillResult[] = [];
      for (let i = 0; i < toks.length; i++) {
        const parts: PrefillResult[] = [];
        for (let c0 = 0; c0 < toks[i].length; c0 += MAX_CHUNK_TOKENS) {
          checkAbort(opts.signal, 'prefill');
          const chunk = toks[i].subarray(c0, c0 + MAX_CHUNK_TOKENS);
          const pos = positions[i].filter((p) => p >= c0 && p < c0 + chunk.length).map((p) => p - c0);
          parts.push((await this.run(engine, [seqs[i]], [chunk], [pos], null, undefined))[0]);
        }
        out.push(mergeChunks(parts, MAX_CHUNK_TOKENS));
      }
      return out;
    } finally {
      for (const s of acquired) s.release();
    }
  }

  private async run(engine: NativeEngine, seqs: Sequence[], toks: Int32Array[], positions: number[][],
                    plans: SimbaPlan[] | null, simba: SimbaOptions | undefined): Promise<PrefillResult[]> {
    const L = this.config.nLayer, V = this.config.vocabSize;
    const lengths = Int32Array.from(toks, (t) => t.length);
    const all = new Int32Array(lengths.reduce((a, b) => a + b, 0));
    const want: number[] = [];
    let off = 0;
    toks.forEach((t, i) => { all.set(t, off); for (const p of positions[i]) want.push(off + p); off += t.length; });
    let native: NativeSimbaOptions | undefined;
    if (plans && simba) {
      const keep = new Int32Array(seqs.length * L);
      plans.forEach((p, s) => keep.set(p.keep, s * L));
      native = {
        keep, criterion: criterionCode(simba.criterion), reduceSum: simba.reduce === 'sum',
        protectFirst: simba.protect?.first ?? 0, protectLast: simba.protect?.last ?? 0, seed: simba.seed ?? 0,
      };
    }
    let r;
    try {
      r = await engine.forward(all, lengths, seqs.map((s) => s.state), Int32Array.from(want), native);
    } catch (e) {
      throw fromNative(e);
    }
    const lf = layerFlops(this.config);
    const results: PrefillResult[] = [];
    let row = 0;
    off = 0;
    for (let i = 0; i < seqs.length; i++) {
      const processed = Array.from(r.processed.subarray(i * L, (i + 1) * L));
      const logits = positions[i].map((_, j) => r.logits.slice((row + j) * V, (row + j + 1) * V));
      row += positions[i].length;
      const sum = processed.reduce((a, b) => a + b, 0);
      seqs[i].position += toks[i].length;
      results.push({
        sequence: seqs[i], positions: positions[i], logits, processed,
        exitLayer: r.exitLayer.slice(off, off + toks[i].length), flops: sum * lf, relFlops: sum / (L * toks[i].length),
      });
      off += toks[i].length;
    }
    return results;
  }

  /**
   * One decode step for many sequences at once: feeds tokens[i] to sequences[i] and returns the
   * next-token logits of each ([vocabSize] per sequence).
   */
  async decode(sequences: Sequence[], tokens: ArrayLike<number>, opts: DecodeOptions = {}): Promise<Float32Array[]> {
    const engine = this.live('decode');
    if (!Array.isArray(sequences) || sequences.length === 0) throw new SimbaError('E_ARG', 'decode: give at least one sequence');
    const ids = this.tokenArray(tokens, 'decode');
    if (ids.length !== sequences.length)
      throw new SimbaError('E_ARG', `decode: ${sequences.length} sequences but ${ids.length} tokens (one token per sequence)`);
    if (new Set(sequences).size !== sequences.length) throw new SimbaError('E_ARG', 'decode: the same sequence appears twice in one batch');
    checkAbort(opts.signal, 'decode');
    const acquired: Sequence[] = [];
    try {
      for (const s of sequences) { s.acquire('decode'); acquired.push(s); }
      const n = sequences.length, V = this.config.vocabSize;
      let r;
      try {
        r = await engine.forward(ids, new Int32Array(n).fill(1), sequences.map((s) => s.state), Int32Array.from({ length: n }, (_, i) => i));
      } catch (e) {
        throw fromNative(e);
      }
      sequences.forEach((s) => { s.position += 1; });
      return sequences.map((_, i) => r.logits.slice(i * V, (i + 1) * V));
    } finally {
      for (const s of acquired) s.release();
    }
  }

  /**
   * Logits of a token sequence from an empty state, at the asked positions.
   * @example const { logits } = await model.logits([1, 2, 3], 'all'); // 3 rows of vocabSize
   */
  async logits(ids: ArrayLike<number>, positions: LogitsPositions = 'last', opts: { simba?: SimbaOptions; signal?: AbortSignal } = {}):
      Promise<{ positions: number[]; logits: Float32Array[]; processed: number[]; relFlops: number; flops: number; exitLayer: Int32Array }> {
    const [r] = await this.prefill([{ tokens: ids }], { logits: positions, simba: opts.simba, signal: opts.signal });
    return { positions: r.positions, logits: r.logits, processed: r.processed, relFlops: r.relFlops, flops: r.flops, exitLayer: r.exitLayer };
  }

  /** Frees the native weights. Calls in flight finish first; later calls throw E_DISPOSED. */
  dispose(): void {
    if (this.engine) this.engine.dispose();
    this.engine = null;
  }

  get disposed(): boolean {
    return this.engine === null;
  }
}

function mergeChunks(parts: PrefillResult[], chunk: number): PrefillResult {
  const exit = new Int32Array(parts.reduce((a, p) => a + p.exitLayer.length, 0));
  let off = 0;
  for (const p of parts) { exit.set(p.exitLayer, off); off += p.exitLayer.length; }
  const processed = parts[0].processed.map((_, l) => parts.reduce((a, p) => a + p.processed[l], 0));
  return {
    sequence: parts[0].sequence,
    positions: parts.flatMap((p, i) => p.positions.map((q) => q + i * chunk)),
    logits: parts.flatMap((p) => p.logits),
    processed, exitLayer: exit,
    flops: parts.reduce((a, p) => a + p.flops, 0), relFlops: 1,
  };
}

function checkAbort(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new SimbaError('E_ABORTED', `${what}: aborted`);
}

