/**
 * MambaModel: load a checkpoint into the native engine, run prefill / decode on sequences, read
 * logits, generate text. Every heavy call runs natively off the event loop and returns a Promise.
 *
 * @example
 *   import { loadModel } from 'simba-ssm';
 *   const model = await loadModel();                       // the shipped brown-mamba-s
 *   for await (const piece of model.generate('The jury said', { maxTokens: 20 })) process.stdout.write(piece.text);
 *   const { logits } = await model.logits([510, 7371, 753], 'all');
 *   model.dispose();
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadAddon, type NativeEngine, type NativeSimbaOptions } from '../bindings';
import { loadConfig, type ParseConfigOptions } from './config';
import { SimbaError } from './errors';
import { Sequence, stateFingerprint } from './sequence';
import {
  criterionCode, flopsPerToken, headFlops, layerFlops, planSimba, validateSimbaOptions,
  type SimbaOptions, type SimbaPlan,
} from './simba';
import { loadTokenizer, type Tokenizer } from './tokenizer';
import type { MambaConfig } from './types';
import { loadWeights } from './weights';
import { generate, type GenerateOptions, type GeneratedPiece } from './generate';

/** Where the package keeps its shipped demo model. */
export const DEFAULT_MODEL_DIR = path.join(packageRoot(), 'models', 'brown-mamba-s');

function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

export interface LoadModelOptions {
  /** Storage of the matrices: 'f32' (default, exact) or 'bf16' (half the memory, ~1e-2 relative error). */
  weights?: 'f32' | 'bf16';
  /** Compute device (default 'cpu'): 'cuda' needs the CUDA backend and a GPU (a clear error says which is
   *  missing); 'auto' picks 'cuda' when cudaAvailable() says so, else 'cpu'. */
  device?: 'cpu' | 'cuda' | 'auto';
  /** config.json parsing (e.g. allowUnknownKeys). */
  config?: ParseConfigOptions;
  /** NaN/Inf in weights: 'error' (default) rejects the checkpoint naming the tensor; 'allow' loads it as is. */
  nonFinite?: 'error' | 'allow';
  /** Load tokenizer.json from the model folder (default: when present). */
  tokenizer?: boolean;
  /** Called after each tensor is uploaded. */
  onProgress?: (p: { done: number; total: number; tensor: string }) => void;
}

export interface RandomModelOptions {
  weights?: 'f32' | 'bf16';
  seed?: number;
  /** As LoadModelOptions.device. */
  device?: 'cpu' | 'cuda' | 'auto';
}

/** Which positions of each prompt get logits. Indices are relative to the tokens given. */
export type LogitsPositions = 'last' | 'all' | 'none' | number[];

export interface PrefillInput {
  /** The sequence to continue (default: a new one). */
  sequence?: Sequence;
  tokens: ArrayLike<number>;
  /** Positions of this input that get logits (overrides PrefillOptions.logits). */
  logits?: LogitsPositions;
}

export interface PrefillOptions {
  logits?: LogitsPositions;
  /** Simba token pruning during this prefill (see SimbaOptions). */
  simba?: SimbaOptions;
  signal?: AbortSignal;
}

export interface PrefillResult {
  sequence: Sequence;
  /** Positions (relative to the input tokens) that have logits, in order. */
  positions: number[];
  /** One [vocabSize] row per position. */
  logits: Float32Array[];
  /** Tokens each layer processed (all equal to the prompt length when dense). */
  processed: number[];
  /** For each input token, how many layers it went through before Simba dropped it (nLayer = kept). */
  exitLayer: Int32Array;
  /** FLOPs of this prefill through the layers (head excluded), and relative to dense. */
  flops: number;
  relFlops: number;
}

export interface ModelInfo {
  config: MambaConfig;
  paramCount: number;
  /** Dense FLOPs for one token through all layers and the head. */
  flopsPerToken: number;
  layerFlops: number;
  headFlops: number;
  weights: 'f32' | 'bf16';
  weightBytes: number;
  stateBytes: number;
  device: 'cpu' | 'cuda';
  isa: string;
  threads: number;
  source: string;
}

/** The largest number of tokens one native call processes; longer dense prompts are chunked. */
export const MAX_CHUNK_TOKENS = 8192;
/** Upper bound on a single request (a prompt, or a Simba prefill, which cannot be chunked). */
export const MAX_REQUEST_TOKENS = 1 << 20;
export const MAX_SIMBA_TOKENS = 65536;
/** Most logits one call returns (1 GiB of float32): a prompt's every position times the vocabulary adds up fast. */
export const MAX_LOGITS_FLOATS = 2 ** 28;

export class MambaModel {
  private engine: NativeEngine | null;
  private readonly stateFloats: number;
  private readonly fingerprint: number;
  private readonly source: string;

  /** @internal use loadModel() or randomModel() */
  constructor(engine: NativeEngine, readonly config: MambaConfig, readonly tokenizer: Tokenizer | null,
              private readonly weights: 'f32' | 'bf16', source: string) {
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
      throw nativeError(e);
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
  async decode(sequences: Sequence[], tokens: ArrayLike<number>, opts: { signal?: AbortSignal } = {}): Promise<Float32Array[]> {
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
        throw nativeError(e);
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

  /**
   * Streams generated tokens for a prompt (text, or token ids).
   * @example for await (const p of model.generate('Once', { maxTokens: 16, temperature: 0.8, seed: 1 })) out += p.text;
   */
  generate(prompt: string | ArrayLike<number>, opts: GenerateOptions = {}): AsyncGenerator<GeneratedPiece, void, undefined> {
    this.live('generate');
    return generate(this, prompt, opts);
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

function nativeError(e: unknown): SimbaError {
  const msg = e instanceof Error ? e.message : String(e);
  if (/outside the vocabulary/.test(msg)) return new SimbaError('E_TOKEN', msg);
  return new SimbaError('E_NATIVE', msg, { cause: e });
}

/**
 * Loads a Mamba checkpoint folder (config.json, model.safetensors or a sharded index,
 * tokenizer.json). Without a folder, loads the shipped demo model brown-mamba-s.
 */
export async function loadModel(dir: string = DEFAULT_MODEL_DIR, opts: LoadModelOptions = {}): Promise<MambaModel> {
  const weights = opts.weights ?? 'f32';
  if (weights !== 'f32' && weights !== 'bf16') throw new SimbaError('E_ARG', `loadModel: weights must be 'f32' or 'bf16', got '${String(weights)}'`);
  const device = checkDevice(opts.device);
  if (typeof dir !== 'string' || !fs.existsSync(dir)) throw new SimbaError('E_IO', `loadModel: model folder '${String(dir)}' does not exist`);
  const config = loadConfig(dir, opts.config);
  const wantTok = opts.tokenizer ?? fs.existsSync(path.join(dir, 'tokenizer.json'));
  const tokenizer = wantTok ? loadTokenizer(dir) : null;
  const addon = loadAddon();
  let engine: NativeEngine;
  try {
    engine = new addon.Engine(nativeConfig(config), { bf16: weights === 'bf16', device });
  } catch (e) {
    throw nativeError(e);
  }
  try {
    const gen = loadWeights(dir, config, { nonFinite: opts.nonFinite });
    const total = 3 + config.nLayer * (10 + (config.projBias ? 2 : 0)) - (config.convBias ? 0 : config.nLayer) - (config.tieEmbeddings ? 1 : 0);
    let done = 0;
    for (const t of gen) {
      try {
        await engine.setTensor(t.name, t.layer, t.data);
      } catch (e) {
        throw nativeError(e);
      }
      done++;
      opts.onProgress?.({ done, total, tensor: t.layer >= 0 ? `layers.${t.layer}.${t.name}` : t.name });
    }
    engine.finalize();
  } catch (e) {
    engine.dispose();
    throw e;
  }
  return new MambaModel(engine, config, tokenizer, weights, path.resolve(dir));
}

/** Standard state-spaces Mamba-1 shapes (vocabulary padded to 50280), for speed tests without downloads. */
export const SHAPES: Readonly<Record<string, MambaConfig>> = Object.fromEntries(
  ([['mamba-130m', 768, 24], ['mamba-370m', 1024, 48], ['mamba-790m', 1536, 48], ['mamba-1.4b', 2048, 48], ['mamba-2.8b', 2560, 64]] as const)
    .map(([name, d, L]) => [name, {
      vocabSize: 50280, dModel: d, nLayer: L, dInner: 2 * d, dState: 16, dtRank: Math.ceil(d / 16), dConv: 4,
      convBias: true, projBias: false, eps: 1e-5, tieEmbeddings: true, bosTokenId: 0, eosTokenId: 0, padTokenId: null,
    } satisfies MambaConfig]));

/** A model with random, sanely scaled weights of the given config or named shape (no tokenizer). */
export async function randomModel(shape: string | MambaConfig, opts: RandomModelOptions = {}): Promise<MambaModel> {
  const config = typeof shape === 'string' ? SHAPES[shape] : shape;
  if (!config) throw new SimbaError('E_ARG', `unknown shape '${String(shape)}' (known: ${Object.keys(SHAPES).join(', ')})`);
  const weights = opts.weights ?? 'f32';
  if (weights !== 'f32' && weights !== 'bf16') throw new SimbaError('E_ARG', `weights must be 'f32' or 'bf16', got '${String(weights)}'`);
  const device = checkDevice(opts.device);
  let engine: NativeEngine;
  try {
    engine = new (loadAddon().Engine)(nativeConfig(config), { bf16: weights === 'bf16', device });
  } catch (e) {
    throw nativeError(e);
  }
  try {
    await engine.randomize(opts.seed ?? 0);
  } catch (e) {
    engine.dispose();
    throw nativeError(e);
  }
  return new MambaModel(engine, { ...config }, null, weights, typeof shape === 'string' ? `random ${shape}` : 'random');
}

/** Resolves the device option: 'cpu' (default), 'cuda' (throws why it is unavailable), 'auto' (cuda when available). */
function checkDevice(device: unknown): 'cpu' | 'cuda' {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (device === 'auto') return loadAddon().cudaAvailable().available ? 'cuda' : 'cpu';
  if (device === 'cuda') {
    const s = loadAddon().cudaAvailable();
    if (!s.available) throw new SimbaError('E_ARG', `device 'cuda' is not available: ${s.reason}`);
    return 'cuda';
  }
  throw new SimbaError('E_ARG', `device must be 'cpu', 'cuda' or 'auto', got '${String(device)}'`);
}

function nativeConfig(c: MambaConfig) {
  return {
    vocabSize: c.vocabSize, dModel: c.dModel, nLayer: c.nLayer, dInner: c.dInner, dState: c.dState, dtRank: c.dtRank,
    dConv: c.dConv, convBias: c.convBias, projBias: c.projBias, tieEmbeddings: c.tieEmbeddings, eps: c.eps,
  };
}
