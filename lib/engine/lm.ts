/**
 * The engine's narrow face: what generation, the server and the measuring tools need from a model.
 * MambaModel (model.ts) implements it; code above the engine (lib/generate, lib/serve, lib/measure)
 * imports this file, never model.ts, so the engine can change without them and no import cycle forms.
 *
 * @example
 *   async function greedyNext(lm: LanguageModel, ids: number[]): Promise<number> {
 *     const [r] = await lm.prefill([{ tokens: ids }]);
 *     const row = r.logits[0];
 *     return row.indexOf(Math.max(...row));
 *   }
 */
import type { Tokenizer } from '../checkpoint/tokenizer';
import type { MambaConfig } from '../types';
import type { Sequence } from './sequence';
import type { SimbaOptions } from './simba';

export type { Sequence } from './sequence';
export type { SimbaOptions, SimbaCriterion, SimbaPlan } from './simba';
export type { Tokenizer } from '../checkpoint/tokenizer';
export type { MambaConfig } from '../types';

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
  /**
   * Aborting rejects the call at once with E_ABORTED (the signal's reason as `cause`), also while a
   * native call runs: that call cannot stop mid-way, so with a signal it works on copies of the
   * sequences' states, and its result is discarded. The sequences' states and positions are left
   * exactly as before the call (for a chunked prefill too, whichever chunk was running).
   */
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

export interface DecodeOptions {
  /**
   * Aborting rejects the call at once with E_ABORTED (the signal's reason as `cause`); the step runs
   * on copies of the states, so the sequences' states and positions are left exactly as before it.
   */
  signal?: AbortSignal;
}

/** What `info()` reports. */
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

/** A loaded language model: sequences with recurrent state, batched prefill and decode. */
export interface LanguageModel {
  readonly config: MambaConfig;
  /** The model's tokenizer, or null for random-weight models. */
  readonly tokenizer: Tokenizer | null;
  /** True once dispose() was called. */
  readonly disposed: boolean;
  /** A new, empty sequence (zero state). */
  newSequence(): Sequence;
  /** Processes prompts (a batch of any lengths) and returns logits at the asked positions. */
  prefill(inputs: PrefillInput[], opts?: PrefillOptions): Promise<PrefillResult[]>;
  /** One decode step for many sequences: feeds tokens[i] to sequences[i]; next-token logits of each. */
  decode(sequences: Sequence[], tokens: ArrayLike<number>, opts?: DecodeOptions): Promise<Float32Array[]>;
  info(): ModelInfo;
  /**
   * Frees the model; later calls throw E_DISPOSED. A call that is one native call finishes normally;
   * a chunked prefill rejects with E_DISPOSED at its next chunk, its sequence left as before the call.
   */
  dispose(): void;
}
