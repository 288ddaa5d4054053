/**
 * Finds and loads the compiled addon, and declares its typed surface. Only this file touches the
 * addon; only lib/engine/ and lib/platform/ import it, and it imports nothing from lib/: the addon's
 * errors carry their class as `code` (E_ARG, E_NATIVE, ...) and lib/ turns them into SimbaError
 * (lib/errors.ts fromNative).
 *
 * Search order: SIMBA_ADDON_PATH (alone, when set), build/Release (a source build), then the platform
 * package @simba-ssm/<platform>-<arch> (prebuilt, only when its version equals ours). A failure lists
 * every path tried and why, the platform and glibc, and how to fix it (loadFailureMessage).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/** Config fields the native engine needs (the same names as lib/types.ts MambaConfig). */
export interface NativeConfig {
  vocabSize: number;
  dModel: number;
  nLayer: number;
  dInner: number;
  dState: number;
  dtRank: number;
  dConv: number;
  convBias: boolean;
  projBias: boolean;
  tieEmbeddings: boolean;
  eps: number;
  /** Falcon-Mamba's mixer norm epsilon (> 0); 0 or absent: Mamba-1, no norms inside the mixer. */
  mixerRmsEps?: number;
  /** Mamba-2's heads, groups and dt clamp [low, high] (high may be Infinity); absent: Mamba-1. dtRank is 0 with it.
   *  (lib/types.ts Mamba2Shape has these fields, so a MambaConfig is a NativeConfig.) */
  mamba2?: { nHeads: number; nGroups: number; dtLimit: readonly [number, number] };
}

/**
 * The Simba scoring criteria by name, with the values of the C ABI's simba_criterion_t
 * (native/common/backend_api.h); the one mirror of that enum on this side.
 */
export const NATIVE_CRITERION = { simba: 0, local: 1, norm: 2, uniform: 3, random: 4 } as const;
export type NativeCriterion = (typeof NATIVE_CRITERION)[keyof typeof NATIVE_CRITERION];

export interface NativeSimbaOptions {
  /** [sequences * layers]: tokens kept after layer l of sequence s at keep[s * L + l]. */
  keep: Int32Array;
  /** A NATIVE_CRITERION value (any number crosses: the addon checks it). */
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

/**
 * Native sampling of forward rows (native/cpu/sampling.h): job j samples logits row rows[j].
 * params [J * 9]: temperature, topK, topP, minP, presence, frequency, repetition, logprobs (-1 none), limit (0 = V).
 * rng [J * 2]: splitmix64 states (lo, hi). history / bias: concatenated per job, offsets [J + 1].
 */
export interface NativeSampling {
  rows: Int32Array;
  params: Float64Array;
  rng: Uint32Array;
  history: Int32Array;
  historyOffsets: Int32Array;
  biasIds: Int32Array;
  biasValues: Float32Array;
  biasOffsets: Int32Array;
  /** [J] per job its grammar's matcher (masks the tokens it may pick), or null: unconstrained. */
  matchers?: (NativeGrammarMatcher | null)[];
}

/** A tokenizer's vocabulary as a token trie (native/constrain/token_trie.h): token t's bytes are bytes[offsets[t] .. offsets[t + 1]). */
export interface NativeGrammarVocab {
  size(): number;
}

/** A GBNF grammar compiled over a vocabulary (native/constrain/grammar_engine.h). */
export interface NativeGrammar {
  stats(): { states: number; cachedMasks: number; maskBytes: number; masksComputed: number; masksCached: number };
  clearCache(): void;
}

/** One sequence's position in a grammar. */
export interface NativeGrammarMatcher {
  /** Advances over the token's bytes; false (unchanged) when the grammar does not allow it here. */
  accept(token: number): boolean;
  /** The text so far is a whole sentence of the grammar. */
  complete(): boolean;
  /** Complete, and nothing may follow. */
  finished(): boolean;
  /** The token ids allowed next, ascending (uncached: walk the trie again). */
  allowed(uncached?: boolean): Int32Array;
  /** Milliseconds per mask computation, over `reps` (the bench). */
  maskMs(reps: number, uncached: boolean): number;
}

export interface NativeSampleResult {
  /** [J] chosen tokens and their logprobs (0 unless asked). */
  tokens: Int32Array;
  logprobs: Float32Array;
  /** Top logprobs per job (the largest asked), ids -1 past a job's own count. */
  topN: number;
  topIds: Int32Array;
  topLogprobs: Float32Array;
  /** [J * 2] advanced RNG states. */
  rng: Uint32Array;
  sampleMs: number;
  /** [J], present when some job's grammar failed (past its limits): why; that job's token is -1. */
  errors?: (string | null)[];
}

/** What a CPU engine of a config will hold (native plan_memory). */
export interface NativeMemoryPlan {
  /** The packed matrices: the engine's weightBytes once loaded. */
  weightBytes: number;
  /** Vectors, biases, A in the state's layout. */
  otherBytes: number;
  /** The largest tensor held in f32 on its way to the engine. */
  stagingBytes: number;
  /** One sequence's state. */
  stateBytes: number;
  /** Activations per token of a forward. */
  tokenBytes: number;
  logitsRowBytes: number;
}

export interface NativeEngineInfo {
  stateFloats: number;
  paramCount: number;
  weightBytes: number;
  bf16: boolean;
  /** int8 weights (CPU engine). */
  int8?: boolean;
  /** int4 weights (CPU engine). */
  int4?: boolean;
  /** CPU kernel build ('avx512', 'avx2', 'sse2'), or 'cuda'. */
  isa: string;
  threads: number;
  /** Where the engine runs. */
  device?: 'cpu' | 'cuda';
  /** The GPU, e.g. "NVIDIA H200, 140 GiB, sm_90, 132 SMs" (device 'cuda'). */
  deviceName?: string;
  /** Device 'cuda': recurrent-state bytes copied host -> device and device -> host so far (forwards with
   *  host states, readState, writeState); forwards on state slots copy none. */
  stateBytesToDevice?: number;
  stateBytesToHost?: number;
}

export interface NativeEngine {
  setTensor(name: string, layer: number, data: Float32Array): Promise<void>;
  /**
   * The tensors read by the engine through mmap, in order, in one job off the JS thread. onDone(n) is
   * queued after each tensor (calls may arrive after the promise settles). index >= 0: tensor `index`
   * holds a NaN / Inf at flat position firstBad, and it and the tensors after it were not set.
   */
  setTensorsFromFiles(
    tensors: ReadonlyArray<{
      name: string;
      layer: number;
      file: string;
      offset: number;
      bytes: number;
      dtype: FileTensorType;
      count: number;
      padTo?: number;
      checkFinite?: boolean;
      /** 'logOfNegated': x -> log(-x) (GGUF's ssm_a = -exp(A_log) back to A_log). */
      transform?: 'logOfNegated';
    }>,
    onDone?: (done: number) => void,
  ): Promise<{ index: number; firstBad: number; badValue: number }>;
  randomize(seed: number): Promise<void>;
  finalize(): void;
  /**
   * states: host arrays updated in place, or (device 'cuda') the sequences' device state slots.
   * cancel: setting cancel[0] to non-zero stops the forward at its next layer (rejects E_ABORTED; the
   * states are then partly updated).
   */
  forward(
    tokens: Int32Array,
    lengths: Int32Array,
    states: Float32Array[] | Int32Array,
    want: Int32Array,
    simba?: NativeSimbaOptions,
    sampling?: undefined,
    cancel?: Int32Array,
  ): Promise<NativeForwardResult>;
  /** forward + native sampling of the wanted rows (logits stay native: the result's logits is empty). */
  forward(
    tokens: Int32Array,
    lengths: Int32Array,
    states: Float32Array[] | Int32Array,
    want: Int32Array,
    simba: NativeSimbaOptions | undefined,
    sampling: NativeSampling,
    cancel?: Int32Array,
  ): Promise<NativeForwardResult & NativeSampleResult>;
  forward(
    tokens: Int32Array,
    lengths: Int32Array,
    states: Float32Array[] | Int32Array,
    want: Int32Array,
    simba: NativeSimbaOptions | undefined,
    sampling: NativeSampling | undefined,
    cancel?: Int32Array,
  ): Promise<NativeForwardResult & Partial<NativeSampleResult>>;
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
  /** format (default from bf16): 'f32' | 'bf16' | 'int8' | 'int4' weights. */
  gemm(a: {
    A: Float32Array;
    W: Float32Array;
    bias?: Float32Array | null;
    M: number;
    N: number;
    K: number;
    bf16?: boolean;
    format?: 'f32' | 'bf16' | 'int8' | 'int4';
  }): Float32Array;
  /** W [N, K] packed in the format and read back as the GEMM sees it (the quantized values). */
  readPacked(a: { W: Float32Array; N: number; K: number; format: 'f32' | 'bf16' | 'int8' | 'int4' }): Float32Array;
  rmsnorm(a: { x: Float32Array; w: Float32Array; rows: number; d: number; eps: number }): Float32Array;
  conv1d(a: {
    x: Float32Array;
    w: Float32Array;
    bias: Float32Array | null;
    state: Float32Array;
    T: number;
    E: number;
    K: number;
  }): { out: Float32Array; state: Float32Array };
  scan(a: {
    x: Float32Array;
    dt: Float32Array;
    A_log: Float32Array;
    B: Float32Array;
    C: Float32Array;
    D: Float32Array;
    z: Float32Array;
    state: Float32Array;
    T: number;
    E: number;
    N: number;
  }): { y: Float32Array; dt: Float32Array; state: Float32Array };
  score(a: {
    x: Float32Array;
    dt: Float32Array;
    A_log: Float32Array;
    B: Float32Array;
    C: Float32Array;
    T: number;
    E: number;
    N: number;
    local: boolean;
    reduceSum: boolean;
  }): Float32Array;
  /** The machine's bounds (seconds of work, on a worker thread): streaming read GB/s and FMA GFLOP/s. */
  limits(a?: { reps?: number; bufferMB?: number }): Promise<NativeLimits>;
  /** The streaming-read probe of limits() alone, over a buffer of about `bytes` (4 KiB - 16 GiB). */
  readBandwidth(a: { bytes: number; reps?: number }): Promise<{ readGBs1: number; readGBsAll: number; bufferBytes: number }>;
  /** Best seconds of one C = A W^T on random inputs, and which kernel ran. */
  gemmTime(a: {
    M: number;
    N: number;
    K: number;
    format: 'f32' | 'bf16' | 'int8' | 'int4';
    reps?: number;
    minSeconds?: number;
  }): Promise<{ seconds: number; path: string }>;
  /**
   * The thread pool's contract on a pool of its own (synchronous; 4 jobs): ids[i] is the id the last
   * job got for item i (dynamic: the thread that ran it; fixed: its range), runs[i] how often item i
   * ran. With hold, worker 1 stops as it wakes for the first job until that job has returned (at most
   * 5 s); returnedWhileHeld says whether it did.
   */
  poolCheck(a: { threads: number; items: number; dynamic: boolean; hold: boolean }): {
    ids: Int32Array;
    runs: Int32Array;
    returnedWhileHeld: boolean;
  };
  /** Whole blocks of a GGUF tensor type to f32, with llama.cpp's formulas (native/cpu/gguf_dequant.h). */
  dequantize(a: { type: FileTensorType; bytes: Uint8Array }): Float32Array;
}

/** How a tensor is stored in a checkpoint file: plain elements or GGUF (llama.cpp) blocks. */
export type FileTensorType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export interface NativeLimits {
  threads: number;
  isa: string;
  readGBs1: number;
  readGBsAll: number;
  fmaGflops1: number;
  fmaGflopsAll: number;
  /** vpdpbusd peak (GFLOP/s, a multiply-add = 2), present only where the int8 VNNI kernel runs. */
  int8DotGflops1?: number;
  int8DotGflopsAll?: number;
  /** vdpbf16ps peak (GFLOP/s), present only where the bf16 dot-product kernel runs. */
  bf16DotGflops1?: number;
  bf16DotGflopsAll?: number;
  /** AMX tile peaks (GFLOP/s: tdpbf16ps and tdpbusd), present only where the AMX kernels run. */
  amxBf16Gflops1?: number;
  amxBf16GflopsAll?: number;
  amxInt8Gflops1?: number;
  amxInt8GflopsAll?: number;
  bufferBytes: number;
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
  benchScan(a: { nSeq: number; T: number; E: number; N: number; iters: number }): {
    scanMs: number;
    scanBytes: number;
    copyGBs: number;
  };
}

/**
 * One row of the engine's tensor table (native/common/tensor_table.h); lib/types.ts EngineTensorSpec
 * names the tensors.
 */
export interface NativeTensorSpec {
  name: string;
  /** Layer index, or -1 for global tensors. */
  layer: number;
  shape: number[];
  required: boolean;
  layout: 'plain' | 'transposed' | 'neg_exp_transposed';
}

/**
 * Errors thrown or rejected by the addon carry `code`: 'E_ARG', 'E_TOKEN', 'E_SHAPE', 'E_WEIGHTS',
 * 'E_CONFIG', 'E_OOM', 'E_CUDA', 'E_DISPOSED' or 'E_NATIVE' (lib/errors.ts fromNative keeps it).
 */
export interface NativeAddon {
  Engine: new (
    config: NativeConfig,
    options: { bf16: boolean; int8?: boolean; int4?: boolean; device?: 'cpu' | 'cuda' },
  ) => NativeEngine;
  /** Every tensor of a config (tensor_table.h): names, shapes, which the config has, storage layout. */
  tensorTable(config: NativeConfig): NativeTensorSpec[];
  /** The bytes the CPU engine needs for a config, computed without allocating anything. */
  memoryPlan(config: NativeConfig, format: 'f32' | 'bf16' | 'int8' | 'int4'): NativeMemoryPlan;
  availableIsas(): string[];
  setIsa(name: string): string;
  /** Whether this CPU and OS run the AMX tile GEMMs (AMX-TILE/BF16/INT8 and, on Linux, the tile data granted). */
  amxAvailable(): boolean;
  /** Turns the AMX GEMMs on or off for this process (on by default unless SIMBA_NO_AMX=1); returns whether they now run. */
  setAmx(on: boolean): boolean;
  /** Whether the AMX GEMMs run now (available, switched on, the avx512 build active, extensions allowed). */
  amxActive(): boolean;
  activeIsa(): string;
  kernels: NativeKernels;
  cudaAvailable(): CudaStatus;
  cudaKernels: NativeCudaKernels;
  /** Samples rows of given logits [rows * V] (synchronous; the sampling tests). */
  sampleLogits(logits: Float32Array, V: number, sampling: NativeSampling): NativeSampleResult;
  GrammarVocab: new (bytes: Uint8Array, offsets: Int32Array, eos: number) => NativeGrammarVocab;
  /** Throws E_ARG naming line:column and the problem for bad GBNF. */
  Grammar: new (gbnf: string, vocab: NativeGrammarVocab) => NativeGrammar;
  /** A matcher at the grammar's start, or a copy of another matcher. */
  GrammarMatcher: new (from: NativeGrammar | NativeGrammarMatcher) => NativeGrammarMatcher;
  /** Live CPU models and the bytes of their weight storage, process-wide (leak checks; absent in older builds). */
  memoryStats?(): { models: number; alignedBytes: number };
}

// ---------------------------------------------------------------- loading
// Everything below finds the addon; scripts/install.js (via dist/bindings.js) and lib/platform/addon_info.ts
// (simba doctor) use the same functions, so the install check, the run-time load and the doctor agree.

/** The lowest glibc the prebuilt binaries run on (npm/*\/package.json `config.glibc` says the same). */
export const GLIBC_FLOOR = '2.31';
/** Platforms with a prebuilt @simba-ssm/<id> package. */
export const PREBUILT_PLATFORMS: readonly string[] = ['linux-x64'];
/** The scope of the platform packages: @simba-ssm/linux-x64 (CPU addon), @simba-ssm/linux-x64-cuda (CUDA library). */
export const PLATFORM_SCOPE = '@simba-ssm';

/** This machine as the loader sees it. */
export interface PlatformInfo {
  /** e.g. 'linux-x64' (the platform package suffix); 'linux-x64-musl' on musl systems. */
  id: string;
  platform: string;
  arch: string;
  libc: 'glibc' | 'musl' | 'unknown';
  /** The running glibc's version, e.g. '2.36' (null off glibc). */
  glibc: string | null;
  node: string;
  napi: string;
}

/** One place the loader looks for the addon, in order. `skip` says why it is not even tried. */
export interface AddonCandidate {
  /** The file ('' for a platform package that is not installed). */
  path: string;
  from: 'SIMBA_ADDON_PATH' | 'local build' | 'platform package';
  /** '@simba-ssm/linux-x64@0.1.0' for a platform package. */
  package?: string;
  skip?: string;
}

/** Where the loaded addon came from, and where the CUDA library is looked for. */
export interface AddonOrigin extends AddonCandidate {
  /** Folders passed to the native CUDA loader (SIMBA_CUDA_LIB_DIRS), after the addon's own folder. */
  cudaDirs: string[];
  /** The CUDA platform package: where it is, or why it is not used. */
  cudaPackage: { name: string; dir?: string; skip?: string };
}

let cached: NativeAddon | null = null;
let cachedOrigin: AddonOrigin | null = null;

/** The package root (the folder of simba-ssm's package.json): bindings.ts lives there, dist/bindings.js one below. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 3; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return __dirname;
}

function readJson(file: string): Record<string, unknown> | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Compares dotted versions ('2.31' < '2.36'); missing parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number),
    pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

let glibcSeen: string | null | undefined;

/**
 * The system glibc's version, once: from the version line of /usr/bin/ldd ("ldd (GNU libc) 2.36",
 * a file read), else from the process report (~30 ms); null on musl.
 */
function runtimeGlibc(): string | null {
  if (glibcSeen !== undefined) return glibcSeen;
  let ldd = '';
  try {
    ldd = fs.readFileSync('/usr/bin/ldd', 'latin1');
  } catch {
    // no ldd script: ask the process report
  }
  const m = /ldd \([^)]*\) ([0-9]+\.[0-9]+)/.exec(ldd);
  if (m) glibcSeen = m[1];
  else if (/musl/i.test(ldd)) glibcSeen = null;
  else
    glibcSeen = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ?? null;
  return glibcSeen;
}

/** The platform id, libc and glibc version of this process. */
export function platformInfo(): PlatformInfo {
  let glibc: string | null = null;
  let libc: PlatformInfo['libc'] = 'unknown';
  if (process.platform === 'linux') {
    glibc = runtimeGlibc();
    libc = glibc ? 'glibc' : 'musl';
  }
  const id = `${process.platform}-${process.arch}${libc === 'musl' ? '-musl' : ''}`;
  return {
    id,
    platform: process.platform,
    arch: process.arch,
    libc,
    glibc,
    node: process.version,
    napi: process.versions.napi ?? '?',
  };
}

/** Resolves a platform package from `root` and checks its version and glibc floor against ours. */
function platformPackage(
  name: string,
  root: string,
  version: string,
  plat: PlatformInfo,
): { dir?: string; label: string; skip?: string } {
  let pkgJson: string;
  try {
    pkgJson = require.resolve(`${name}/package.json`, { paths: [root] });
  } catch {
    return {
      label: name,
      skip: 'not installed (an optional dependency: npm skips it with --omit=optional, or when no matching version is on the registry)',
    };
  }
  const pkg = readJson(pkgJson) ?? {};
  const dir = path.dirname(pkgJson);
  const label = `${name}@${String(pkg.version)}`;
  if (pkg.version !== version)
    return { dir, label, skip: `version ${String(pkg.version)} does not match simba-ssm ${version} (reinstall so both match)` };
  const floor = (pkg.config as { glibc?: string } | undefined)?.glibc;
  if (floor && plat.glibc && compareVersions(plat.glibc, floor) < 0) {
    return { dir, label, skip: `needs glibc >= ${floor}, this system has ${plat.glibc}` };
  }
  return { dir, label };
}

/**
 * Where the addon is looked for, in order: SIMBA_ADDON_PATH (alone, when set), the local build
 * build/Release/simba_ssm.node, then the platform package @simba-ssm/<platform> (only when its version
 * equals simba-ssm's).
 */
export function addonCandidates(
  root: string = packageRoot(),
  env: NodeJS.ProcessEnv = process.env,
  plat: PlatformInfo = platformInfo(),
): AddonCandidate[] {
  if (env.SIMBA_ADDON_PATH) return [{ path: path.resolve(env.SIMBA_ADDON_PATH), from: 'SIMBA_ADDON_PATH' }];
  const version = String(readJson(path.join(root, 'package.json'))?.version);
  const out: AddonCandidate[] = [{ path: path.join(root, 'build', 'Release', 'simba_ssm.node'), from: 'local build' }];
  const p = platformPackage(`${PLATFORM_SCOPE}/${plat.id}`, root, version, plat);
  out.push({ path: p.dir ? path.join(p.dir, 'simba_ssm.node') : '', from: 'platform package', package: p.label, skip: p.skip });
  return out;
}

/** The CUDA platform package (@simba-ssm/<platform>-cuda) folder, or why it is not used. */
export function cudaPackage(root: string = packageRoot(), plat: PlatformInfo = platformInfo()): AddonOrigin['cudaPackage'] {
  const version = String(readJson(path.join(root, 'package.json'))?.version);
  const name = `${PLATFORM_SCOPE}/${plat.id}-cuda`;
  const p = platformPackage(name, root, version, plat);
  if (p.skip) return { name: p.label, skip: p.skip };
  if (!fs.existsSync(path.join(p.dir!, 'libsimba_cuda.so')))
    return { name: p.label, skip: `${p.dir}/libsimba_cuda.so: not found` };
  return { name: p.label, dir: p.dir };
}

/** The one-line label of a candidate, e.g. "platform package @simba-ssm/linux-x64@0.1.0 (/x/simba_ssm.node)". */
export function describeCandidate(c: AddonCandidate): string {
  return `${c.from}${c.package ? ` ${c.package}` : ''}${c.path ? ` (${c.path})` : ''}`;
}

/** Why a candidate cannot be loaded before trying (skipped, or no such file); null when it can be tried. */
export function candidateProblem(c: AddonCandidate): string | null {
  if (c.skip) return c.skip;
  return c.path && fs.existsSync(c.path) ? null : 'not found';
}

/**
 * The sharp-style message for "no addon could be loaded": every place tried and why, the
 * platform, libc and glibc, and what to do.
 */
export function loadFailureMessage(tried: string[], plat: PlatformInfo = platformInfo(), buildError?: string): string {
  const lines = ['simba-ssm: could not load the native addon (simba_ssm.node).', 'Tried:', ...tried.map((t) => `  - ${t}`)];
  if (buildError) lines.push(`  - source build: ${buildError}`);
  lines.push(
    `Platform: ${plat.id}, libc ${plat.libc}${plat.glibc ? ` ${plat.glibc}` : ''}, node ${plat.node} (N-API ${plat.napi})`,
  );
  lines.push('Possible solutions:');
  if (PREBUILT_PLATFORMS.includes(plat.id)) {
    lines.push(
      `  - Install the prebuilt binary with the optional dependencies: \`npm install --include=optional simba-ssm\``,
      `    (it is ${PLATFORM_SCOPE}/${plat.id}; --omit=optional, --no-optional or a lockfile made on another platform skip it).`,
    );
  } else {
    lines.push(
      `  - There is no prebuilt binary for ${plat.id} (prebuilt: ${PREBUILT_PLATFORMS.join(', ')}, glibc >= ${GLIBC_FLOOR}).`,
    );
  }
  lines.push(
    '  - Build from source: `SIMBA_BUILD_FROM_SOURCE=1 npm install simba-ssm`',
    '    (needs cmake >= 3.18, make or ninja and a C++17 compiler; add SIMBA_CUDA=1 to also build the CUDA backend with nvcc).',
  );
  if (plat.libc === 'glibc' && plat.glibc && compareVersions(plat.glibc, GLIBC_FLOOR) < 0) {
    lines.push(
      `  - The prebuilt binaries need glibc >= ${GLIBC_FLOOR} and this system has ${plat.glibc}: upgrade the OS, or build from source.`,
    );
  }
  lines.push('  - Or point SIMBA_ADDON_PATH at a simba_ssm.node you built.');
  return lines.join('\n');
}

/** The reason a require() of the addon failed, in one line. */
function loadError(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/**
 * Loads `file` in a child process (so a crashing binary cannot take this process down) and calls
 * activeIsa(). Used by the install step before it trusts a prebuilt binary.
 */
export function probeAddon(file: string, timeoutMs = 60_000): { ok: true; isa: string } | { ok: false; reason: string } {
  const code = 'const a = require(process.argv[1]); process.stdout.write(JSON.stringify({ isa: a.activeIsa() }));';
  const r = spawnSync(process.execPath, ['-e', code, file], { encoding: 'utf8', timeout: timeoutMs });
  const lastErr = (r.stderr || '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /error/i.test(l))
    .slice(-1)[0];
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT')
    return { ok: false, reason: `timed out after ${timeoutMs / 1000} s while loading` };
  if (r.error) return { ok: false, reason: `the check process failed: ${r.error.message}` };
  if (r.signal) return { ok: false, reason: `crashed on load (signal ${r.signal})${lastErr ? `: ${lastErr}` : ''}` };
  if (r.status !== 0) return { ok: false, reason: `failed to load (exit ${r.status})${lastErr ? `: ${lastErr}` : ''}` };
  try {
    return { ok: true, isa: String((JSON.parse(r.stdout) as { isa: string }).isa) };
  } catch {
    return { ok: false, reason: `loaded but answered ${JSON.stringify(r.stdout.slice(0, 80))}` };
  }
}

/** Tells the native CUDA loader where else to look for libsimba_cuda.so (after the addon's own folder). */
function passCudaDirs(root: string, plat: PlatformInfo): Pick<AddonOrigin, 'cudaDirs' | 'cudaPackage'> {
  const pkg = cudaPackage(root, plat);
  const dirs = (process.env.SIMBA_CUDA_LIB_DIRS ?? '').split(':').filter(Boolean);
  if (pkg.dir && !dirs.includes(pkg.dir)) dirs.push(pkg.dir);
  if (dirs.length) process.env.SIMBA_CUDA_LIB_DIRS = dirs.join(':');
  return { cudaDirs: dirs, cudaPackage: pkg };
}

/**
 * Loads the addon once; throws an Error with code 'E_NATIVE' listing each place tried and why it
 * failed (loadFailureMessage), shaped like the addon's own errors.
 */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot(),
    plat = platformInfo();
  const tried: string[] = [];
  for (const c of addonCandidates(root, process.env, plat)) {
    const problem = candidateProblem(c);
    if (problem) {
      tried.push(`${describeCandidate(c)}: ${problem}`);
      continue;
    }
    const cuda = passCudaDirs(root, plat);
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(c.path) as NativeAddon;
      cachedOrigin = { ...c, ...cuda };
      return cached;
    } catch (e) {
      tried.push(`${describeCandidate(c)}: ${loadError(e)}`);
    }
  }
  throw Object.assign(new Error(loadFailureMessage(tried, plat)), { code: 'E_NATIVE' });
}

/** Where the loaded addon came from (null before loadAddon() succeeded). */
export function addonOrigin(): AddonOrigin | null {
  return cachedOrigin;
}
