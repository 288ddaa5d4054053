/**
 * Finds and loads the compiled addon, and declares its typed surface. Only this file touches the
 * addon; only lib/engine/ imports it.
 *
 * Search order: build/Release (a local `npm install` / `npm run build:native`), then
 * prebuilds/<platform>-<arch>/simba_ssm.node (shipped binaries). A failure lists every path tried
 * and why, and how to build from source.
 */
import * as fs from 'fs';
import * as path from 'path';

import type { EngineTensorSpec, MambaConfig } from './lib/types';

/** Config fields the native engine needs (a subset of MambaConfig, same names). */
export type NativeConfig = Pick<MambaConfig,
  'vocabSize' | 'dModel' | 'nLayer' | 'dInner' | 'dState' | 'dtRank' | 'dConv' | 'convBias' | 'projBias' | 'tieEmbeddings' | 'eps'>;

export interface NativeSimbaOptions {
  /** [sequences * layers]: tokens kept after layer l of sequence s at keep[s * L + l]. */
  keep: Int32Array;
  /** 0 simba, 1 local, 2 norm, 3 uniform, 4 random. */
  criterion: number;
  reduceSum: boolean;
  protectFirst: number;
  protectLast: number;
  seed: number;
}

export interface NativeForwardResult {
  /** [want.length, vocabSize] logits. */
  logits: Float32Array;
  /** [sequences * layers]: tokens each layer processed. */
  processed: Int32Array;
  /** [tokens]: how many layers each token went through (nLayer = not pruned). */
  exitLayer: Int32Array;
}

export interface NativeEngineInfo {
  stateFloats: number;
  paramCount: number;
  weightBytes: number;
  bf16: boolean;
  /** CPU kernel build ('avx512', 'avx2', 'sse2'), or 'cuda'. */
  isa: string;
  threads: number;
  /** Where the engine runs. */
  device?: 'cpu' | 'cuda';
  /** The GPU, e.g. "NVIDIA H200, 140 GiB, sm_90, 132 SMs" (device 'cuda'). */
  deviceName?: string;
}

export interface NativeEngine {
  setTensor(name: string, layer: number, data: Float32Array): Promise<void>;
  randomize(seed: number): Promise<void>;
  finalize(): void;
  /** states: host arrays updated in place, or (device 'cuda') the sequences' device state slots. */
  forward(tokens: Int32Array, lengths: Int32Array, states: Float32Array[] | Int32Array, want: Int32Array,
          simba?: NativeSimbaOptions): Promise<NativeForwardResult>;
  info(): NativeEngineInfo;
  dispose(): void;
  /** Device-resident states (device 'cuda' only; throws on the CPU): a zeroed slot of stateFloats floats. */
  allocState(): Promise<number>;
  freeState(slot: number): Promise<void>;
  /** Copies that slot only into out (stateFloats floats): a snapshot. */
  readState(slot: number, out: Float32Array): Promise<void>;
  /** Restores a slot from src (null: zeros). */
  writeState(slot: number, src: Float32Array | null): Promise<void>;
}

/** Single-kernel entry points (synchronous, small inputs), used by the kernel tests. */
export interface NativeKernels {
  gemm(a: { A: Float32Array; W: Float32Array; bias?: Float32Array | null; M: number; N: number; K: number; bf16: boolean }): Float32Array;
  rmsnorm(a: { x: Float32Array; w: Float32Array; rows: number; d: number; eps: number }): Float32Array;
  conv1d(a: { x: Float32Array; w: Float32Array; bias: Float32Array | null; state: Float32Array; T: number; E: number; K: number }):
    { out: Float32Array; state: Float32Array };
  scan(a: { x: Float32Array; dt: Float32Array; A_log: Float32Array; B: Float32Array; C: Float32Array; D: Float32Array;
            z: Float32Array; state: Float32Array; T: number; E: number; N: number }):
    { y: Float32Array; dt: Float32Array; state: Float32Array };
  score(a: { x: Float32Array; dt: Float32Array; A_log: Float32Array; B: Float32Array; C: Float32Array;
             T: number; E: number; N: number; local: boolean; reduceSum: boolean }): Float32Array;
}

/** Whether the CUDA backend (libsimba_cuda.so next to the addon) loads and finds a GPU. */
export interface CudaStatus {
  available: boolean;
  /** 'ok', or every library path tried and why it failed (not built / no driver / no device). */
  reason: string;
  /** Device 0, when available. */
  device?: string;
  /** The library loaded, when available. */
  library?: string;
}

/** The CUDA kernels behind the same argument objects as NativeKernels (device vs CPU tests). */
export interface NativeCudaKernels {
  gemm: NativeKernels['gemm'];
  conv1d: NativeKernels['conv1d'];
  scan: NativeKernels['scan'];
  score: NativeKernels['score'];
  /** Times the selective scan alone on device-resident data and a 1 GiB device copy (bench/gpu.sh). */
  benchScan(a: { nSeq: number; T: number; E: number; N: number; iters: number }): { scanMs: number; scanBytes: number; copyGBs: number };
}

/**
 * Errors thrown or rejected by the addon carry `code`: 'E_ARG', 'E_TOKEN', 'E_SHAPE', 'E_WEIGHTS',
 * 'E_CONFIG', 'E_OOM', 'E_CUDA', 'E_DISPOSED' or 'E_NATIVE' (lib/errors.ts fromNative keeps it).
 */
export interface NativeAddon {
  Engine: new (config: NativeConfig, options: { bf16: boolean; device?: 'cpu' | 'cuda' }) => NativeEngine;
  /** Every tensor of a config (tensor_table.h): names, shapes, which the config has, storage layout. */
  tensorTable(config: NativeConfig): EngineTensorSpec[];
  availableIsas(): string[];
  setIsa(name: string): string;
  activeIsa(): string;
  kernels: NativeKernels;
  cudaAvailable(): CudaStatus;
  cudaKernels: NativeCudaKernels;
}

let cached: NativeAddon | null = null;

function packageRoot(): string {
  // bindings.ts lives at the root; compiled to dist/bindings.js.
  let dir = __dirname;
  for (let i = 0; i < 3; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return __dirname;
}

/** Loads the addon once; throws an Error listing each path tried and why it failed. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  const candidates = [
    process.env.SIMBA_ADDON_PATH,
    path.join(root, 'build', 'Release', 'simba_ssm.node'),
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'simba_ssm.node'),
  ].filter((p): p is string => !!p);
  const tried: string[] = [];
  for (const p of candidates) {
    if (!fs.existsSync(p)) {
      tried.push(`  ${p}: not found`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(p) as NativeAddon;
      return cached;
    } catch (e) {
      tried.push(`  ${p}: ${(e as Error).message}`);
    }
  }
  throw new Error(
    `simba-ssm: could not load the native addon. Tried:\n${tried.join('\n')}\n` +
    `Build it from source with \`npm run build:native\` (needs cmake >= 3.18 and a C++17 compiler).`);
}
