/**
 * Loading: a checkpoint folder (loadModel) or random weights of a named shape (randomModel) into
 * the native engine, as a MambaModel.
 *
 * @example
 *   const model = await loadModel();                                   // the shipped brown-mamba-s
 *   const big = await loadModel('/models/mamba-130m-hf', { weights: 'bf16' });
 *   const rnd = await randomModel('mamba-130m', { seed: 1 });          // speed tests, no download
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadAddon, type NativeAddon, type NativeConfig, type NativeEngine } from '../../bindings';
import { checkParseConfigOptions, loadConfig, type ParseConfigOptions } from '../checkpoint/config';
import { loadTokenizer, type Tokenizer } from '../checkpoint/tokenizer';
import { openCheckpoint } from '../checkpoint/safetensors';
import { isGgufFile, openGguf } from '../checkpoint/gguf';
import { ggufConfig, ggufHasTokenizer, ggufTokenizer, ggufWeightFormat, planGgufWeights } from '../checkpoint/gguf_model';
import { nonFiniteError, planWeights } from '../checkpoint/weights';
import { SimbaError, fromNative } from '../errors';
import { LIMITS } from '../limits';
import * as v from '../validate';
import {
  WEIGHT_FORMATS,
  copyConfig,
  modelFamily,
  type EngineTensorSpec,
  type Mamba2Shape,
  type MambaConfig,
  type WeightFormat,
} from '../types';
import type { ModelInfo } from './lm';
import { checkMemory, memoryNeed } from './memory';
import { MambaModel } from './model';
import { flopsPerToken, headFlops, layerFlops } from './simba';

/** Where the package keeps its shipped demo model. */
export const DEFAULT_MODEL_DIR = path.join(packageRoot(), 'models', 'brown-mamba-s');

function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..');
}

export interface LoadModelOptions {
  /** Storage of the matrices: 'f32' (default, exact), 'bf16' (half the memory, ~1e-2 relative error) or
   *  'int8' (a quarter: per-output-feature scales, quantized at load from any checkpoint dtype; CPU only) or
   *  'int4' (4.5 bits a weight: a half-float scale per output feature and block of 32 inputs, quantized at
   *  load; CPU only). The mixer's small tensors (conv, A, D, dt bias, norms) stay f32 in every format. */
  weights?: WeightFormat;
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
  weights?: WeightFormat;
  seed?: number;
  /** As LoadModelOptions.device. */
  device?: 'cpu' | 'cuda' | 'auto';
}

/**
 * Loads a Mamba checkpoint folder (config.json, model.safetensors or a sharded index,
 * tokenizer.json). Without a folder, loads the shipped demo model brown-mamba-s.
 */
export async function loadModel(dir: string = DEFAULT_MODEL_DIR, options?: LoadModelOptions): Promise<MambaModel> {
  const w = 'loadModel',
    o = v.options(w, options, LOAD_KEYS);
  const opts: LoadModelOptions = {
    weights: v.oneOf(w, 'weights', o.weights, WEIGHTS),
    device: v.oneOf(w, 'device', o.device, DEVICES),
    config: o.config === undefined ? undefined : checkParseConfigOptions(w, o.config, 'config'),
    nonFinite: v.oneOf(w, 'nonFinite', o.nonFinite, ['error', 'allow'] as const),
    tokenizer: v.bool(w, 'tokenizer', o.tokenizer),
    onProgress: v.func(w, 'onProgress', o.onProgress),
  };
  if (typeof dir !== 'string') throw v.argError(w, `the model folder must be a path string, got ${v.describeType(dir)}`);
  if (!fs.existsSync(dir)) throw new SimbaError('E_IO', `loadModel: model folder '${dir}' does not exist`);
  if (isGgufFile(dir) || (/\.gguf$/i.test(dir) && fs.statSync(dir).isFile())) return loadGgufModel(dir, opts);
  const weights = opts.weights ?? 'f32';
  const device = checkDevice(opts.device, weights);
  if (!fs.statSync(dir).isDirectory())
    throw new SimbaError(
      'E_IO',
      `loadModel: '${dir}' is not a folder (give the folder holding config.json and the weights, or a GGUF file)`,
    );
  const config = loadConfig(dir, opts.config);
  const wantTok = opts.tokenizer ?? fs.existsSync(path.join(dir, 'tokenizer.json'));
  const table = tensorTable(config);
  return buildModel(
    { config, weights, device, source: dir },
    {
      upload: (engine) => uploadMapped(engine, planSafetensorsJobs(dir, config, table, opts), opts),
      tokenizer: () => (wantTok ? loadTokenizer(dir) : null),
    },
  );
}

/**
 * A GGUF file (lib/checkpoint/gguf.ts): config from its metadata, tensors read through mmap and
 * dequantized natively one at a time (native/cpu/gguf_dequant.h), tokenizer from tokenizer.ggml.*.
 * The default storage follows the file's matrices (ggufWeightFormat).
 */
async function loadGgufModel(file: string, opts: LoadModelOptions): Promise<MambaModel> {
  const g = await openGguf(file);
  const config = ggufConfig(g);
  const weights = opts.weights ?? ggufWeightFormat(g, WEIGHTS);
  const device = checkDevice(opts.device, weights);
  const table = tensorTable(config);
  const entries = loadOrder(planGgufWeights(g, config, table));
  const wantTok = opts.tokenizer ?? ggufHasTokenizer(g);
  const jobs: MappedJobs = {
    jobs: entries.map((e) => ({
      name: e.name,
      layer: e.layer,
      file: g.path,
      offset: e.tensor.byteOffset,
      bytes: e.tensor.byteLength,
      dtype: e.tensor.type,
      count: e.tensor.numel,
      padTo: e.tensor.numel,
      checkFinite: opts.nonFinite !== 'allow',
      ...(e.transform && { transform: e.transform }),
    })),
    labels: entries.map((e) => (e.layer >= 0 ? `layers.${e.layer}.${e.name}` : e.name)),
    nonFinite: (i, bad, value) => {
      const t = entries[i].tensor;
      const why = entries[i].transform ? ' (ssm_a holds A = -exp(A_log), so every value must be negative)' : '';
      return new SimbaError(
        'E_WEIGHTS',
        `${file}: tensor '${t.name}' has a non-finite value ${value} at flat index ${bad}${why}; pass { nonFinite: 'allow' } to load it anyway`,
      );
    },
  };
  return buildModel(
    { config, weights, device, source: file },
    {
      upload: (engine) => uploadMapped(engine, jobs, opts),
      tokenizer: () => (wantTok ? ggufTokenizer(g) : null),
    },
  );
}

/**
 * The engine of a config, its weights uploaded off the JS thread while the tokenizer is built on it,
 * finalized; disposed again if anything fails.
 */
async function buildModel(
  m: { config: MambaConfig; weights: WeightFormat; device: 'cpu' | 'cuda'; source: string },
  parts: { upload: (engine: NativeEngine) => Promise<void>; tokenizer: () => Tokenizer | null },
): Promise<MambaModel> {
  const w = 'loadModel';
  const { config, weights, device, source } = m;
  const addon = nativeAddon();
  if (device === 'cpu') checkMemory(w, memoryNeed(nativeConfig(config), weights), `'${source}' with ${weights} weights`);
  let engine: NativeEngine;
  try {
    engine = new addon.Engine(nativeConfig(config), engineOptions(weights, device));
  } catch (e) {
    throw fromNative(e);
  }
  let tokenizer: Tokenizer | null = null;
  let failure: { error: unknown } | null = null;
  const upload = parts.upload(engine).catch((error: unknown) => {
    failure ??= { error };
  });
  try {
    tokenizer = parts.tokenizer();
    if (tokenizer) checkTokenizerFits(w, tokenizer, config);
  } catch (error) {
    failure = { error };
  }
  await upload;
  if (!failure) {
    try {
      engine.finalize();
    } catch (error) {
      failure = { error: fromNative(error) };
    }
  }
  if (failure) {
    engine.dispose();
    throw failure.error;
  }
  return new MambaModel(engine, config, tokenizer, weights, path.resolve(source));
}

/**
 * E_TOKENIZER when the tokenizer has ids the model's vocabulary does not (a tokenizer of another
 * model). A vocabulary padded beyond the tokenizer's ids (50280 rows for GPT-NeoX's 50277) is fine.
 */
export function checkTokenizerFits(where: string, tokenizer: Tokenizer, config: MambaConfig): void {
  if (tokenizer.vocabSize <= config.vocabSize) return;
  throw new SimbaError(
    'E_TOKENIZER',
    `${where}: the tokenizer ${tokenizer.source} has ${tokenizer.vocabSize} token ids but the model's vocabulary ` +
      `has ${config.vocabSize} (ids ${config.vocabSize}..${tokenizer.vocabSize - 1} have no embedding): ` +
      'it is the tokenizer of another model',
  );
}

/** The native jobs of a load, their names for onProgress, and the error of a NaN / Inf found in job i. */
interface MappedJobs {
  jobs: Parameters<NativeEngine['setTensorsFromFiles']>[0];
  labels: string[];
  nonFinite: (index: number, firstBad: number, value: number) => SimbaError;
}

/**
 * The jobs of a safetensors / torch.save checkpoint: JavaScript parses the headers and plans the
 * mapping (planWeights), the bytes never pass through it. F32 tensors are packed straight from the
 * mapped file.
 */
function planSafetensorsJobs(
  dir: string,
  config: MambaConfig,
  table: readonly EngineTensorSpec[],
  opts: LoadModelOptions,
): MappedJobs {
  const ckpt = openCheckpoint(dir);
  try {
    const entries = loadOrder(planWeights(ckpt, config, table, dir).entries);
    return {
      jobs: entries.map((e) => {
        const t = ckpt.info(e.source);
        return {
          name: e.name,
          layer: e.layer,
          file: t.file,
          offset: t.byteOffset,
          bytes: t.byteLength,
          dtype: t.dtype as 'F32' | 'F16' | 'BF16',
          count: t.numel,
          padTo: e.shape.reduce((a, b) => a * b, 1),
          checkFinite: opts.nonFinite !== 'allow',
        };
      }),
      labels: entries.map((e) => (e.layer >= 0 ? `layers.${e.layer}.${e.name}` : e.name)),
      nonFinite: (i, bad, value) => nonFiniteError(dir, entries[i], bad, value),
    };
  } finally {
    ckpt.close(); // the engine maps the files itself
  }
}

/**
 * The order the engine reads the tensors in: the table's, with an untied head moved up next to the
 * embedding. Both are vocabulary-sized (65024 x 4096 for falcon-mamba-7b: 1.07 GB as f32), and the
 * engine's conversion buffer shrinks to the largest conversion still to come; with the head last it
 * stayed at that size until the end, on top of every packed layer (a 7B-shape Q4_0 GGUF as int4
 * peaked at 1.314x its weight bytes; bench/RESULTS.md, "GGUF files").
 */
function loadOrder<T extends { name: string }>(entries: T[]): T[] {
  const head = entries.filter((e) => e.name === 'lm_head');
  const rest = entries.filter((e) => e.name !== 'lm_head');
  const at = rest.findIndex((e) => e.name === 'embedding') + 1;
  return [...rest.slice(0, at), ...head, ...rest.slice(at)];
}

/**
 * Every engine tensor, read by the engine itself through mmap (native engine/mapped_tensor.h) in one
 * native job. onProgress sees every tensor once, in order, before this resolves.
 */
async function uploadMapped(engine: NativeEngine, planned: MappedJobs, opts: LoadModelOptions): Promise<void> {
  const { jobs, labels } = planned;
  // Progress: native reports each finished tensor; calls that arrive after the job settled are dropped
  // and the missing ones are made up below, so the caller sees each tensor once, in order. An error
  // thrown by onProgress fails the load once the job is over.
  let reported = 0;
  let settled = false;
  const progress: { failed: boolean; error?: unknown } = { failed: false };
  const report = (upTo: number): void => {
    const cb = opts.onProgress;
    for (; reported < upTo; reported++) {
      if (!cb || progress.failed) continue;
      try {
        cb({ done: reported + 1, total: labels.length, tensor: labels[reported] });
      } catch (error) {
        progress.failed = true;
        progress.error = error;
      }
    }
  };
  let r;
  try {
    r = await engine.setTensorsFromFiles(
      jobs,
      opts.onProgress
        ? (done) => {
            if (!settled) report(done);
          }
        : undefined,
    );
  } catch (err) {
    throw fromNative(err);
  } finally {
    settled = true;
  }
  if (r.index >= 0) {
    report(r.index);
    if (progress.failed) throw progress.error;
    throw planned.nonFinite(r.index, r.firstBad, r.badValue);
  }
  report(labels.length);
  if (progress.failed) throw progress.error;
}

/**
 * Standard shapes for speed tests without downloads: the state-spaces Mamba-1 models (vocabulary
 * padded to 50280), their Mamba-2 models and Mamba-Codestral-7B, and tiiuae/falcon-mamba-7b (Falcon-Mamba: untied head, d_inner 8192 from its
 * intermediate_size, mixer_rms_eps 1e-6).
 */
export const SHAPES: Readonly<Record<string, MambaConfig>> = Object.fromEntries([
  ...(
    [
      ['mamba-130m', 768, 24],
      ['mamba-370m', 1024, 48],
      ['mamba-790m', 1536, 48],
      ['mamba-1.4b', 2048, 48],
      ['mamba-2.8b', 2560, 64],
    ] as const
  ).map(([name, d, L]) => [
    name,
    {
      vocabSize: 50280,
      dModel: d,
      nLayer: L,
      dInner: 2 * d,
      dState: 16,
      dtRank: Math.ceil(d / 16),
      dConv: 4,
      convBias: true,
      projBias: false,
      eps: 1e-5,
      tieEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
      padTokenId: null,
    } satisfies MambaConfig,
  ]),
  [
    'falcon-mamba-7b',
    {
      vocabSize: 65024,
      dModel: 4096,
      nLayer: 64,
      dInner: 8192,
      dState: 16,
      dtRank: 256,
      dConv: 4,
      convBias: true,
      projBias: false,
      eps: 1e-5,
      tieEmbeddings: false,
      mixerRmsEps: 1e-6,
      bosTokenId: 0,
      eosTokenId: 11,
      padTokenId: 11,
    } satisfies MambaConfig,
  ],
  // state-spaces/mamba2-130m ... mamba2-2.7b (vocabulary 50277 padded to 50288), mistralai/Mamba-Codestral-7B-v0.1
  ...(
    [
      ['mamba2-130m', 768, 24, 50288, 1, true],
      ['mamba2-370m', 1024, 48, 50288, 1, true],
      ['mamba2-780m', 1536, 48, 50288, 1, true],
      ['mamba2-1.3b', 2048, 48, 50288, 1, true],
      ['mamba2-2.7b', 2560, 64, 50288, 1, true],
      ['codestral-7b', 4096, 64, 32768, 8, false],
    ] as const
  ).map(([name, d, L, vocab, groups, tied]) => [
    name,
    {
      vocabSize: vocab,
      dModel: d,
      nLayer: L,
      dInner: 2 * d,
      dState: 128,
      dtRank: 0,
      dConv: 4,
      convBias: true,
      projBias: false,
      eps: 1e-5,
      tieEmbeddings: tied,
      mamba2: { nHeads: (2 * d) / 64, headDim: 64, nGroups: groups, chunkSize: 256, dtLimit: [0, Infinity] },
      bosTokenId: tied ? 0 : null,
      eosTokenId: tied ? 0 : null,
      padTokenId: null,
    } satisfies MambaConfig,
  ]),
]);

/** A model with random, sanely scaled weights of the given config or named shape (no tokenizer). */
export async function randomModel(shape: string | MambaConfig, options?: RandomModelOptions): Promise<MambaModel> {
  const w = 'randomModel',
    o = v.options(w, options, RANDOM_KEYS);
  const config = resolveShape(w, shape);
  const weights = v.oneOf(w, 'weights', o.weights, WEIGHTS) ?? 'f32';
  const seed = v.int(w, 'seed', o.seed, 0, LIMITS.seed) ?? 0;
  const device = checkDevice(v.oneOf(w, 'device', o.device, DEVICES), weights);
  if (device === 'cpu')
    checkMemory(
      w,
      memoryNeed(nativeConfig(config), weights),
      `${typeof shape === 'string' ? shape : 'this shape'} with ${weights} weights`,
    );
  let engine: NativeEngine;
  try {
    engine = new (nativeAddon().Engine)(nativeConfig(config), engineOptions(weights, device));
  } catch (e) {
    throw fromNative(e);
  }
  try {
    await engine.randomize(seed);
  } catch (e) {
    engine.dispose();
    throw fromNative(e);
  }
  return new MambaModel(engine, { ...config }, null, weights, typeof shape === 'string' ? `random ${shape}` : 'random');
}

/** A named shape (SHAPES) or a MambaConfig given in code, checked. */
function resolveShape(where: string, shape: unknown): MambaConfig {
  if (typeof shape !== 'string') return checkConfig(where, shape);
  const config = Object.hasOwn(SHAPES, shape) ? SHAPES[shape] : undefined;
  if (config) return config;
  const near = v.nearest(shape, Object.keys(SHAPES));
  throw new SimbaError(
    'E_ARG',
    `unknown shape '${shape}' (${near ? `did you mean '${near}'? ` : ''}known: ${Object.keys(SHAPES).join(', ')})`,
  );
}

/**
 * What randomModel(shape).info() reports, computed from the config alone: no weights are allocated,
 * so it works for shapes larger than this machine's memory (`simba info --shape`).
 * @example shapeInfo('mamba-2.8b', { weights: 'bf16' }).weightBytes
 */
export function shapeInfo(shape: string | MambaConfig, options?: { weights?: WeightFormat }): ModelInfo {
  const w = 'shapeInfo',
    o = v.options(w, options, ['weights'] as const);
  const config = resolveShape(w, shape);
  const weights = v.oneOf(w, 'weights', o.weights, WEIGHTS) ?? 'f32';
  let ni;
  try {
    // An engine without weights: its constructor allocates only the tensor table.
    const engine = new (nativeAddon().Engine)(nativeConfig(config), engineOptions(weights, 'cpu'));
    ni = engine.info();
    engine.dispose();
  } catch (e) {
    throw fromNative(e);
  }
  return {
    config: copyConfig(config),
    family: modelFamily(config),
    paramCount: ni.paramCount,
    flopsPerToken: flopsPerToken(config),
    layerFlops: layerFlops(config),
    headFlops: headFlops(config),
    weights,
    weightBytes: memoryNeed(nativeConfig(config), weights).weights,
    stateBytes: ni.stateFloats * 4,
    device: 'cpu',
    isa: ni.isa,
    threads: ni.threads,
    source: typeof shape === 'string' ? `random ${shape}` : 'random',
  };
}

function engineOptions(weights: WeightFormat, device: 'cpu' | 'cuda') {
  if ((weights === 'int8' || weights === 'int4') && device === 'cuda')
    throw new SimbaError('E_ARG', `weights '${weights}' run on the CPU only (use 'bf16' with device 'cuda')`);
  return { bf16: weights === 'bf16', int8: weights === 'int8', int4: weights === 'int4', device };
}

const LOAD_KEYS = ['weights', 'device', 'config', 'nonFinite', 'tokenizer', 'onProgress'] as const;
const RANDOM_KEYS = ['weights', 'seed', 'device'] as const;
const WEIGHTS = WEIGHT_FORMATS;
const DEVICES = ['cpu', 'cuda', 'auto'] as const;

const CONFIG_INT_KEYS = ['vocabSize', 'dModel', 'nLayer', 'dInner', 'dState', 'dtRank', 'dConv'] as const;
const CONFIG_BOOL_KEYS = ['convBias', 'projBias', 'tieEmbeddings'] as const;
const CONFIG_ID_KEYS = ['bosTokenId', 'eosTokenId', 'padTokenId'] as const;

/** A MambaConfig given in code (randomModel): every field present and of the right type. */
function checkConfig(where: string, c: unknown): MambaConfig {
  if (!v.is.object(c)) throw v.argError(where, `shape must be a shape name or a MambaConfig, got ${v.describeType(c)}`);
  const o = v.options(
    where,
    c,
    [...CONFIG_INT_KEYS, ...CONFIG_BOOL_KEYS, ...CONFIG_ID_KEYS, 'eps', 'mixerRmsEps', 'mamba2'],
    'config',
  );
  const m2 = o.mamba2 === undefined ? undefined : checkMamba2(where, o.mamba2);
  // The engine holds sizes as 32-bit integers (in_proj has 2 dInner rows); Mamba-2 has no dtRank (0).
  for (const k of CONFIG_INT_KEYS)
    if (v.int(where, `config.${k}`, o[k], k === 'dtRank' && m2 ? 0 : 1, k === 'dtRank' && m2 ? 0 : 2 ** 30 - 1) === undefined)
      throw v.argError(where, `config.${k} is required`);
  for (const k of CONFIG_BOOL_KEYS)
    if (v.bool(where, `config.${k}`, o[k]) === undefined) throw v.argError(where, `config.${k} is required`);
  for (const k of CONFIG_ID_KEYS) if (o[k] !== null) v.int(where, `config.${k}`, o[k], 0);
  if (v.number(where, 'config.eps', o.eps, 0, 1, true) === undefined) throw v.argError(where, 'config.eps is required');
  v.number(where, 'config.mixerRmsEps', o.mixerRmsEps, 0, 1, true); // optional: present for Falcon-Mamba
  const cfg = c as unknown as MambaConfig;
  if (m2 && cfg.dInner !== m2.nHeads * m2.headDim)
    throw v.argError(where, `config.dInner ${cfg.dInner} must be mamba2.nHeads * mamba2.headDim (${m2.nHeads * m2.headDim})`);
  return { ...cfg, bosTokenId: cfg.bosTokenId ?? null, eosTokenId: cfg.eosTokenId ?? null, padTokenId: cfg.padTokenId ?? null };
}

/** config.mamba2 of a MambaConfig given in code: every field present, the groups dividing the heads. */
function checkMamba2(where: string, m: unknown): Mamba2Shape {
  const o = v.options(where, m, ['nHeads', 'headDim', 'nGroups', 'chunkSize', 'dtLimit'] as const, 'config.mamba2');
  for (const k of ['nHeads', 'headDim', 'nGroups', 'chunkSize'] as const)
    if (v.int(where, `config.mamba2.${k}`, o[k], 1, 2 ** 30 - 1) === undefined)
      throw v.argError(where, `config.mamba2.${k} is required`);
  const lim = o.dtLimit;
  if (!Array.isArray(lim) || lim.length !== 2 || !(lim[0] >= 0) || !Number.isFinite(lim[0]) || !(lim[1] >= lim[0]))
    throw v.argError(where, 'config.mamba2.dtLimit must be [low, high] with 0 <= low <= high (high may be Infinity)');
  const s = o as unknown as Mamba2Shape;
  if (s.nHeads % s.nGroups !== 0)
    throw v.argError(where, `config.mamba2.nHeads ${s.nHeads} must be a multiple of config.mamba2.nGroups ${s.nGroups}`);
  return s;
}

/**
 * The engine's tensor table for a config (native/common/tensor_table.h): every tensor the config can
 * have, with its shape, whether the config has it (required) and how the engine stores it, in the
 * order checkpoints are read. Throws E_CONFIG for a config the engine cannot run.
 *
 * @example
 *   tensorTable(SHAPES['mamba-130m']).filter((t) => t.required).length  // 3 + 24 * 10 - 1 = 242
 */
export function tensorTable(config: MambaConfig): EngineTensorSpec[] {
  try {
    // The native table is where the names come from; EngineTensorName lists the same ones.
    return nativeAddon().tensorTable(nativeConfig(config)) as EngineTensorSpec[];
  } catch (e) {
    throw fromNative(e);
  }
}

/**
 * Resolves the device option: 'cpu' (default), 'cuda' (throws why it is unavailable), 'auto' (cuda
 * when available). int8 or int4 on 'cuda' is an E_ARG whether or not a GPU is there: the combination is wrong.
 */
function checkDevice(device: unknown, weights: WeightFormat): 'cpu' | 'cuda' {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (device === 'cuda' && (weights === 'int8' || weights === 'int4')) engineOptions(weights, device);
  if (device === 'auto') return nativeAddon().cudaAvailable().available ? 'cuda' : 'cpu';
  if (device === 'cuda') {
    const s = nativeAddon().cudaAvailable();
    if (!s.available) throw new SimbaError('E_CUDA', `device 'cuda' is not available: ${s.reason}`);
    return 'cuda';
  }
  throw new SimbaError('E_ARG', `device must be 'cpu', 'cuda' or 'auto', got '${String(device)}'`);
}

/** The addon; a failure to load it is a SimbaError E_NATIVE listing every place tried. */
function nativeAddon(): NativeAddon {
  try {
    return loadAddon();
  } catch (e) {
    throw fromNative(e);
  }
}

function nativeConfig(c: MambaConfig): NativeConfig {
  return {
    vocabSize: c.vocabSize,
    dModel: c.dModel,
    nLayer: c.nLayer,
    dInner: c.dInner,
    dState: c.dState,
    dtRank: c.dtRank,
    dConv: c.dConv,
    convBias: c.convBias,
    projBias: c.projBias,
    tieEmbeddings: c.tieEmbeddings,
    eps: c.eps,
    mixerRmsEps: c.mixerRmsEps ?? 0,
    ...(c.mamba2 && {
      mamba2: { nHeads: c.mamba2.nHeads, nGroups: c.mamba2.nGroups, dtLimit: [c.mamba2.dtLimit[0], c.mamba2.dtLimit[1]] },
    }),
  };
}
