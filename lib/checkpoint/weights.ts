/**
 * Checkpoint tensor names -> engine tensors, with shape checks against the engine's tensor table
 * (which tensors a config has and their shapes: native/common/tensor_table.h, handed in by the
 * engine as EngineTensorSpec[] so that this layer never loads the addon itself).
 *
 * All names, dtypes and shapes are checked from the file headers (safetensors, or the pickle of a
 * pytorch_model.bin) before the first tensor is read, so a bad checkpoint fails before anything is
 * uploaded. Tensor data is then read and converted one tensor at a time (generator), so the caller
 * can hand each to native code and drop it.
 */
import type { EngineTensor, EngineTensorName, EngineTensorSpec, MambaConfig } from '../types';
import { SimbaError, describeValue } from '../errors';
import { openCheckpoint, READABLE_DTYPES } from './safetensors';
import type { Checkpoint, TensorSource } from './safetensors';

export interface LoadWeightsOptions {
  /** What to do with NaN / ±Inf values: 'error' (default) names the tensor and the first bad index. */
  nonFinite?: 'error' | 'allow';
}

/** One planned engine tensor: where it comes from and how it is reshaped. */
export interface WeightPlanEntry {
  name: EngineTensorName;
  layer: number;
  /** Checkpoint tensor name. */
  source: string;
  /** Shape in the checkpoint. */
  sourceShape: number[];
  sourceDtype: string;
  /** Shape handed to the engine. */
  shape: number[];
  /** Zero rows appended (padded vocabulary), else 0. */
  padRows: number;
}

export interface WeightPlan {
  /** Which embedding key the checkpoint uses: HF ('backbone.embeddings.weight') or state-spaces ('backbone.embedding.weight'). */
  layout: 'hf' | 'state-spaces';
  entries: WeightPlanEntry[];
  /** Checkpoint tensors deliberately not used (a stored lm_head.weight when the head is tied). */
  ignored: string[];
  /** Total f32 bytes handed to the engine. */
  f32Bytes: number;
}

const HF_EMBEDDING = 'backbone.embeddings.weight';
const SS_EMBEDDING = 'backbone.embedding.weight';
const LM_HEAD = 'lm_head.weight';

/** Checkpoint key suffix after `backbone.layers.{i}.` of each per-layer engine tensor. */
const LAYER_KEYS: Partial<Record<EngineTensorName, string>> = {
  norm: 'norm.weight',
  in_proj: 'mixer.in_proj.weight',
  in_proj_bias: 'mixer.in_proj.bias',
  conv_w: 'mixer.conv1d.weight',
  conv_b: 'mixer.conv1d.bias',
  x_proj: 'mixer.x_proj.weight',
  dt_proj_w: 'mixer.dt_proj.weight',
  dt_proj_b: 'mixer.dt_proj.bias',
  A_log: 'mixer.A_log',
  D: 'mixer.D',
  out_proj: 'mixer.out_proj.weight',
  out_proj_bias: 'mixer.out_proj.bias',
  dt_bias: 'mixer.dt_bias', // Mamba-2
  gate_norm: 'mixer.norm.weight', // Mamba-2: the gated RMSNorm
};

/** The checkpoint key of an engine tensor (the embedding key depends on the checkpoint's layout). */
function checkpointKey(t: EngineTensorSpec, layout: WeightPlan['layout']): string {
  if (t.name === 'embedding') return layout === 'hf' ? HF_EMBEDDING : SS_EMBEDDING;
  if (t.name === 'norm_f') return 'backbone.norm_f.weight';
  if (t.name === 'lm_head') return LM_HEAD;
  const suffix = LAYER_KEYS[t.name];
  if (suffix === undefined || t.layer < 0)
    throw new SimbaError('E_NATIVE', `tensor table: no checkpoint key for '${t.name}' (layer ${t.layer})`);
  return `backbone.layers.${t.layer}.${suffix}`;
}

/** The checkpoint's shape of an engine tensor: conv1d weights keep PyTorch's channel dimension [E, 1, K]. */
function checkpointShape(t: EngineTensorSpec): number[] {
  return t.name === 'conv_w' ? [t.shape[0], 1, t.shape[1]] : t.shape;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmt(shape: number[]): string {
  return `[${shape.join(', ')}]`;
}

function listNames(names: string[], max = 20): string {
  const shown = names
    .slice(0, max)
    .map((n) => `'${n}'`)
    .join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/**
 * Map and check every tensor of a checkpoint against the config's tensor table (the engine's
 * tensorTable(config), lib/engine/load.ts), from headers only: the table's required tensors must
 * all be present with its shapes (the embedding / head may have fewer rows: a padded vocabulary).
 * Throws one SimbaError listing every problem: E_WEIGHTS for missing / unexpected tensors or
 * unreadable dtypes, E_SHAPE when the only problems are shape mismatches.
 */
export function planWeights(
  ckpt: TensorSource,
  config: MambaConfig,
  table: readonly EngineTensorSpec[],
  source = 'checkpoint',
): WeightPlan {
  const missing: string[] = [];
  const shapeErrors: string[] = [];
  const dtypeErrors: string[] = [];
  const used = new Set<string>();
  const entries: WeightPlanEntry[] = [];
  const ignored: string[] = [];

  const hasHf = ckpt.has(HF_EMBEDDING);
  const hasSs = ckpt.has(SS_EMBEDDING);
  if (hasHf && hasSs) {
    throw new SimbaError(
      'E_WEIGHTS',
      `${source}: both '${HF_EMBEDDING}' and '${SS_EMBEDDING}' are present; expected one embedding`,
    );
  }
  const layout = hasSs ? 'state-spaces' : 'hf';

  const add = (
    name: EngineTensorName,
    layer: number,
    src: string,
    shape: number[],
    opts: { sourceShape?: number[]; vocabRows?: boolean } = {},
  ): void => {
    if (!ckpt.has(src)) {
      missing.push(src);
      return;
    }
    used.add(src);
    const info = ckpt.info(src);
    if (!(READABLE_DTYPES as readonly string[]).includes(info.dtype)) {
      dtypeErrors.push(`'${src}' has dtype ${info.dtype}, expected one of ${READABLE_DTYPES.join(', ')}`);
    }
    const want = opts.sourceShape ?? shape;
    let padRows = 0;
    if (opts.vocabRows && info.shape.length === 2 && info.shape[1] === want[1] && info.shape[0] < want[0]) {
      padRows = want[0] - info.shape[0]; // padded vocabulary: zero rows are appended
    } else if (!sameShape(info.shape, want)) {
      let why = '';
      if (opts.vocabRows && info.shape.length === 2 && info.shape[0] > want[0]) {
        why = ` (more rows than the config's vocab_size ${config.vocabSize})`;
      }
      shapeErrors.push(`'${src}' expected ${fmt(want)}, found ${fmt(info.shape)}${why}`);
      return;
    }
    entries.push({ name, layer, source: src, sourceShape: info.shape.slice(), sourceDtype: info.dtype, shape, padRows });
  };

  for (const t of table) {
    if (t.required) {
      const vocabRows = t.name === 'embedding' || t.name === 'lm_head';
      add(t.name, t.layer, checkpointKey(t, layout), t.shape, { sourceShape: checkpointShape(t), vocabRows });
    } else if (t.name === 'lm_head' && ckpt.has(LM_HEAD)) {
      ignored.push(LM_HEAD); // a stored copy of the tied head
      used.add(LM_HEAD);
    }
  }

  const unexpected = ckpt.names().filter((n) => !used.has(n));
  const problems: string[] = [];
  if (missing.length > 0) {
    let hint = '';
    if (missing.includes(LM_HEAD)) hint = ' (the config says the LM head is not tied to the embeddings)';
    problems.push(`missing tensor(s) ${listNames(missing)}${hint}`);
  }
  if (unexpected.length > 0) problems.push(`unexpected tensor(s) ${listNames(unexpected)}`);
  if (dtypeErrors.length > 0) problems.push(`unusable dtype: ${dtypeErrors.slice(0, 20).join('; ')}`);
  if (shapeErrors.length > 0) {
    const more = shapeErrors.length > 20 ? `; and ${shapeErrors.length - 20} more` : '';
    problems.push(`shape mismatch with the config: ${shapeErrors.slice(0, 20).join('; ')}${more}`);
  }
  if (problems.length > 0) {
    const code = missing.length + unexpected.length + dtypeErrors.length === 0 ? 'E_SHAPE' : 'E_WEIGHTS';
    throw new SimbaError(code, `${source}: ${problems.join('. ')}`);
  }
  const f32Bytes = entries.reduce((a, e) => a + 4 * e.shape.reduce((x, y) => x * y, 1), 0);
  return { layout, entries, ignored, f32Bytes };
}

/** Index of the first NaN / ±Inf value, or -1. */
export function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) return i; // NaN - NaN and Inf - Inf are NaN
  }
  return -1;
}

/** The E_WEIGHTS error for a NaN / Inf `value` at flat index `bad` of the checkpoint tensor of e. */
export function nonFiniteError(source: string, e: WeightPlanEntry, bad: number, value: number): SimbaError {
  const idx: number[] = [];
  let rest = bad;
  for (let d = e.sourceShape.length - 1; d >= 0; d--) {
    idx.unshift(rest % e.sourceShape[d]);
    rest = Math.floor(rest / e.sourceShape[d]);
  }
  return new SimbaError(
    'E_WEIGHTS',
    `${source}: tensor '${e.source}' has a non-finite value ${value} at flat index ${bad} (index ${fmt(idx)}); pass { nonFinite: 'allow' } to load it anyway`,
  );
}

function readEntry(ckpt: TensorSource, e: WeightPlanEntry, opts: LoadWeightsOptions, source: string): EngineTensor {
  let data = ckpt.readTensorF32(e.source);
  if (opts.nonFinite !== 'allow') {
    const bad = firstNonFinite(data);
    if (bad >= 0) throw nonFiniteError(source, e, bad, data[bad]);
  }
  if (e.padRows > 0) {
    const padded = new Float32Array(e.shape[0] * e.shape[1]);
    padded.set(data);
    data = padded;
  }
  return { name: e.name, layer: e.layer, shape: e.shape.slice(), data };
}

/**
 * Yield every engine tensor of the checkpoint at `dirOrCheckpoint` (a model directory, a .safetensors,
 * pytorch_model.bin or index file, or an open Checkpoint, which is then left open), in the table's order: embedding,
 * layer 0..L-1 (norm, in_proj, [in_proj_bias], conv_w, [conv_b], x_proj, dt_proj_w, dt_proj_b, A_log,
 * D, out_proj, [out_proj_bias]), norm_f, [lm_head].
 *
 * Everything but the finiteness of the values is checked before the first tensor is yielded.
 * Files opened here are closed when the generator finishes, throws, or is abandoned via return().
 */
export function* loadWeights(
  dirOrCheckpoint: string | Checkpoint,
  config: MambaConfig,
  table: readonly EngineTensorSpec[],
  opts: LoadWeightsOptions = {},
): Generator<EngineTensor, void, undefined> {
  if (opts.nonFinite !== undefined && opts.nonFinite !== 'error' && opts.nonFinite !== 'allow') {
    throw new SimbaError('E_ARG', `loadWeights: nonFinite must be 'error' or 'allow', found ${describeValue(opts.nonFinite)}`);
  }
  const own = typeof dirOrCheckpoint === 'string';
  const ckpt = own ? openCheckpoint(dirOrCheckpoint) : dirOrCheckpoint;
  const source = own ? dirOrCheckpoint : ckpt.dir;
  try {
    const plan = planWeights(ckpt, config, table, source);
    for (const e of plan.entries) yield readEntry(ckpt, e, opts, source);
  } finally {
    if (own) ckpt.close();
  }
}

/** Check a checkpoint against a config's tensor table without reading tensor data (headers only). */
export function inspectWeights(dir: string, config: MambaConfig, table: readonly EngineTensorSpec[]): WeightPlan {
  const ckpt = openCheckpoint(dir);
  try {
    return planWeights(ckpt, config, table, dir);
  } finally {
    ckpt.close();
  }
}
