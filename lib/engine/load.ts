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
import { loadWeights } from '../checkpoint/weights';
import { SimbaError, fromNative } from '../errors';
import type { EngineTensorSpec, MambaConfig } from '../types';
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
  const table = tensorTable(config);
  let engine: NativeEngine;
  try {
    engine = new addon.Engine(nativeConfig(config), { bf16: weights === 'bf16', device });
  } catch (e) {
    throw fromNative(e);
  }
  try {
    const gen = loadWeights(dir, config, table, { nonFinite: opts.nonFinite });
    const total = table.filter((t) => t.required).length;
    let done = 0;
    for (const t of gen) {
      try {
        await engine.setTensor(t.name, t.layer, t.data);
      } catch (e) {
        throw fromNative(e);
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

/**
 * The engine's tensor table for a config (native/engine/tensor_table.h): every tensor the config can
 * have, with its shape, whether the config has it (required) and how the engine stores it, in the
 * order checkpoints are read. Throws E_CONFIG for a config the engine cannot run.
 *
 * @example
 *   tensorTable(SHAPES['mamba-130m']).filter((t) => t.required).length  // 3 + 24 * 10 - 1 = 242
 */
export function tensorTable(config: MambaConfig): EngineTensorSpec[] {
  try {
    return loadAddon().tensorTable(nativeConfig(config));
  } catch (e) {
    throw fromNative(e);
  }
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
