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

import { loadAddon, type NativeEngine } from '../../bindings';
import { loadConfig, type ParseConfigOptions } from '../checkpoint/config';
import { loadTokenizer } from '../checkpoint/tokenizer';
import { openCheckpoint } from '../checkpoint/safetensors';
import { nonFiniteError, planWeights } from '../checkpoint/weights';
import { SimbaError, fromNative } from '../errors';
import { WEIGHT_FORMATS, type MambaConfig, type WeightFormat } from '../types';
import { MambaModel } from './model';

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
   *  'int8' (a quarter: per-output-feature scales, quantized at load from any checkpoint dtype; CPU only). */
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
export async function loadModel(dir: string = DEFAULT_MODEL_DIR, opts: LoadModelOptions = {}): Promise<MambaModel> {
  const weights = checkWeights(opts.weights, 'loadModel: ');
  const device = checkDevice(opts.device);
  if (typeof dir !== 'string' || !fs.existsSync(dir)) throw new SimbaError('E_IO', `loadModel: model folder '${String(dir)}' does not exist`);
  const config = loadConfig(dir, opts.config);
  const wantTok = opts.tokenizer ?? fs.existsSync(path.join(dir, 'tokenizer.json'));
  const tokenizer = wantTok ? loadTokenizer(dir) : null;
  const addon = loadAddon();
  let engine: NativeEngine;
  try {
    engine = new addon.Engine(nativeConfig(config), engineOptions(weights, device));
  } catch (e) {
    throw fromNative(e);
  }
  try {
    await uploadMapped(engine, dir, config, opts);
    engine.finalize();
  } catch (e) {
    engine.dispose();
    throw e;
  }
  return new MambaModel(engine, config, tokenizer, weights, path.resolve(dir));
}

/**
 * Every engine tensor of the checkpoint, read by the engine itself through mmap (native
 * engine/mapped_tensor.h): JavaScript parses the headers and plans the mapping (planWeights), the
 * bytes never pass through it. F32 tensors are packed straight from the mapped file.
 */
async function uploadMapped(engine: NativeEngine, dir: string, config: MambaConfig, opts: LoadModelOptions): Promise<void> {
  if (opts.nonFinite !== undefined && opts.nonFinite !== 'error' && opts.nonFinite !== 'allow')
    throw new SimbaError('E_ARG', `loadModel: nonFinite must be 'error' or 'allow', got '${String(opts.nonFinite)}'`);
  const ckpt = openCheckpoint(dir);
  try {
    const plan = planWeights(ckpt, config, dir);
    const total = plan.entries.length;
    let done = 0;
    for (const e of plan.entries) {
      const t = ckpt.info(e.source);
      const count = e.shape.reduce((a, b) => a * b, 1);
      let r;
      try {
        r = await engine.setTensorFromFile(e.name, e.layer, {
          file: t.file, offset: t.byteOffset, bytes: t.byteLength, dtype: t.dtype as 'F32' | 'F16' | 'BF16', count: t.numel,
          padTo: count, checkFinite: opts.nonFinite !== 'allow',
        });
      } catch (err) {
        throw fromNative(err);
      }
      if (r.firstBad >= 0) throw nonFiniteError(dir, e, r.firstBad, r.badValue);
      done++;
      opts.onProgress?.({ done, total, tensor: e.layer >= 0 ? `layers.${e.layer}.${e.name}` : e.name });
    }
  } finally {
    ckpt.close();
  }
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
  const weights = checkWeights(opts.weights, '');
  const device = checkDevice(opts.device);
  let engine: NativeEngine;
  try {
    engine = new (loadAddon().Engine)(nativeConfig(config), engineOptions(weights, device));
  } catch (e) {
    throw fromNative(e);
  }
  try {
    await engine.randomize(opts.seed ?? 0);
  } catch (e) {
    engine.dispose();
    throw fromNative(e);
  }
  return new MambaModel(engine, { ...config }, null, weights, typeof shape === 'string' ? `random ${shape}` : 'random');
}

/** The weights option: 'f32' (default), 'bf16' or 'int8'. */
function checkWeights(w: unknown, where: string): WeightFormat {
  if (w === undefined) return 'f32';
  if (!(WEIGHT_FORMATS as readonly unknown[]).includes(w))
    throw new SimbaError('E_ARG', `${where}weights must be one of ${WEIGHT_FORMATS.map((f) => `'${f}'`).join(', ')}, got '${String(w)}'`);
  return w as WeightFormat;
}

function engineOptions(weights: WeightFormat, device: 'cpu' | 'cuda') {
  if (weights === 'int8' && device === 'cuda') throw new SimbaError('E_ARG', "weights 'int8' run on the CPU only (use 'bf16' with device 'cuda')");
  return { bf16: weights === 'bf16', int8: weights === 'int8', device };
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
