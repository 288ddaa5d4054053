/**
 * What the engine runs on: which addon file loaded and from where, its kernels and threads, the
 * platform and glibc, and whether the CUDA library loaded (and what it found) or why not. The
 * library side of `simba doctor`; never throws (a failure to load the addon is part of the report).
 *
 * @example
 *   const r = addonReport();
 *   if (!r.addon) console.error(r.error);          // every path tried, platform, possible solutions
 *   else console.log(r.addon.path, r.addon.from, r.isa, r.cuda.available ? r.cuda.device : r.cuda.reason);
 */
import * as fs from 'fs';
import * as path from 'path';

import {
  addonOrigin,
  GLIBC_FLOOR,
  loadAddon,
  packageRoot,
  platformInfo,
  type AddonOrigin,
  type PlatformInfo,
} from '../../bindings';

export interface AddonReport {
  /** simba-ssm's version (its package.json). */
  version: string;
  platform: PlatformInfo;
  /** The glibc the prebuilt binaries need. */
  glibcFloor: string;
  /** The loaded addon (null when none loads; `error` says why). */
  addon: (AddonOrigin & { bytes: number }) | null;
  error?: string;
  /** Kernel build in use and the ones this CPU supports, e.g. 'avx2' of ['avx2', 'sse2']. */
  isa?: string;
  isas?: string[];
  /** AMX tile GEMMs: whether the CPU and OS have them, and whether they run (SIMBA_NO_AMX=1 turns them off). */
  amx?: { available: boolean; on: boolean };
  /** Worker threads of the engine (SIMBA_THREADS, else one per hardware thread). */
  threads?: number;
  cuda: {
    available: boolean;
    /** 'ok', or every library path tried and why it failed. */
    reason: string;
    library?: string;
    /** Device 0: name, memory, compute capability (sm_XY), SMs. */
    device?: string;
    /** The NVIDIA kernel driver version (/proc/driver/nvidia/version), or null when no driver is loaded. */
    driver: string | null;
  };
}

/** The NVIDIA kernel module's version, e.g. '580.95.05', or null. */
function nvidiaDriver(): string | null {
  try {
    const text = fs.readFileSync('/proc/driver/nvidia/version', 'utf8');
    return /Kernel Module(?: for \w+)?\s+([0-9.]+)/.exec(text)?.[1] ?? text.split('\n')[0].trim();
  } catch {
    return null;
  }
}

/** Engine threads, read from a minimal engine (the pool is process-wide). */
function engineThreads(addon: ReturnType<typeof loadAddon>): number | undefined {
  const tiny = {
    vocabSize: 4,
    dModel: 4,
    nLayer: 1,
    dInner: 8,
    dState: 2,
    dtRank: 1,
    dConv: 2,
    convBias: true,
    projBias: false,
    tieEmbeddings: true,
    eps: 1e-5,
  };
  try {
    const engine = new addon.Engine(tiny, { bf16: false, device: 'cpu' });
    const threads = engine.info().threads;
    engine.dispose();
    return threads;
  } catch {
    return undefined;
  }
}

function packageVersion(): string {
  try {
    return String(
      (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version,
    );
  } catch {
    return 'unknown';
  }
}

/** Loads the addon if needed and reports where it came from and what it found. */
export function addonReport(): AddonReport {
  const version = packageVersion();
  const platform = platformInfo();
  const driver = nvidiaDriver();
  let addon: ReturnType<typeof loadAddon>;
  try {
    addon = loadAddon();
  } catch (e) {
    return {
      version,
      platform,
      glibcFloor: GLIBC_FLOOR,
      addon: null,
      error: (e as Error).message,
      cuda: { available: false, reason: 'the addon did not load', driver },
    };
  }
  const origin = addonOrigin()!;
  const cuda = addon.cudaAvailable();
  return {
    version,
    platform,
    glibcFloor: GLIBC_FLOOR,
    addon: { ...origin, bytes: fs.statSync(origin.path).size },
    isa: addon.activeIsa(),
    isas: addon.availableIsas(),
    amx: { available: addon.amxAvailable(), on: addon.amxActive() },
    threads: engineThreads(addon),
    cuda: { available: cuda.available, reason: cuda.reason, library: cuda.library, device: cuda.device, driver },
  };
}
