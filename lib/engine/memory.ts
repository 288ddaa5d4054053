/**
 * Host memory a model needs, from its config alone, against what this machine (and its cgroup) can
 * still give: loadModel and randomModel refuse with E_OOM before allocating anything, instead of
 * growing until the kernel's OOM killer ends the process.
 *
 * @example
 *   const need = memoryNeed(SHAPES['mamba-2.8b'], 'f32');   // { total: 1.1e10, weights: ..., ... }
 *   checkMemory('randomModel', need);                         // E_OOM when it cannot fit
 */
import * as fs from 'fs';
import * as os from 'os';

import { loadAddon, type NativeConfig, type NativeMemoryPlan } from '../../bindings';
import { SimbaError, fromNative } from '../errors';
import type { WeightFormat } from '../types';

/** Tokens of activations counted as the least workspace a model needs (a short prompt, a decode batch). */
export const WORKSPACE_TOKENS = 512;

export interface MemoryNeed {
  /** Everything below, in bytes. */
  total: number;
  /** The packed matrices (what info().weightBytes reports once loaded). */
  weights: number;
  /** Vectors, biases and the largest tensor held in f32 while it is converted. */
  other: number;
  /** One sequence's recurrent state. */
  state: number;
  /** Activations of a WORKSPACE_TOKENS-token forward and one row of logits. */
  workspace: number;
  /** The native plan the figures come from. */
  plan: NativeMemoryPlan;
}

/** The host bytes a CPU engine of this config needs, computed without allocating (native plan_memory). */
export function memoryNeed(config: NativeConfig, weights: WeightFormat): MemoryNeed {
  let plan: NativeMemoryPlan;
  try {
    plan = loadAddon().memoryPlan(config, weights);
  } catch (e) {
    throw fromNative(e);
  }
  const other = plan.otherBytes + plan.stagingBytes;
  const workspace = plan.tokenBytes * WORKSPACE_TOKENS + plan.logitsRowBytes;
  return {
    total: plan.weightBytes + other + plan.stateBytes + workspace,
    weights: plan.weightBytes,
    other,
    state: plan.stateBytes,
    workspace,
    plan,
  };
}

export interface AvailableMemory {
  /** The least of what the machine and the process's cgroup can still give, in bytes. */
  bytes: number;
  /** Where the figure comes from, for messages ("MemAvailable 12.3 GB; cgroup limit 4 GB with 1.2 GB in use"). */
  detail: string;
}

/** Host memory available now: /proc/meminfo MemAvailable (else os.freemem()), capped by the cgroup's limit less its usage. */
export function availableMemory(): AvailableMemory {
  let bytes = os.freemem(),
    detail = `free ${formatBytes(bytes)}`;
  const avail = meminfoAvailable();
  if (avail !== null) {
    bytes = avail;
    detail = `MemAvailable ${formatBytes(avail)}`;
  }
  const cg = cgroupRoom();
  if (cg && cg.limit - cg.usage < bytes) {
    bytes = Math.max(0, cg.limit - cg.usage);
    detail += `; cgroup limit ${formatBytes(cg.limit)} with ${formatBytes(cg.usage)} in use`;
  }
  return { bytes, detail };
}

/** Throws E_OOM when `need` does not fit in the memory available now, naming both. */
export function checkMemory(where: string, need: MemoryNeed, what = 'the model', available = availableMemory()): void {
  if (need.total <= available.bytes) return;
  throw new SimbaError(
    'E_OOM',
    `${where}: ${what} needs ${formatBytes(need.total)} of memory (weights ${formatBytes(need.weights)}, ` +
      `other tensors and staging ${formatBytes(need.other)}, state ${formatBytes(need.state)}, ` +
      `workspace ${formatBytes(need.workspace)}) but only ${formatBytes(available.bytes)} is available ` +
      `(${available.detail}); use smaller weights (weights: 'bf16', 'int8' or 'int4') or free memory`,
  );
}

/** 1.5 GB, 12.3 MB, 4.0 kB (decimal units, as `simba info` prints). */
export function formatBytes(b: number): string {
  if (b >= 1e12) return `${(b / 1e12).toFixed(1)} TB`;
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(2)} MB`;
  return `${(b / 1e3).toFixed(1)} kB`;
}

function meminfoAvailable(): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The memory limit and usage of this process's cgroup (v2, else v1), or null when unlimited or unknown. */
function cgroupRoom(): { limit: number; usage: number } | null {
  const read = (f: string): string | null => {
    try {
      return fs.readFileSync(f, 'utf8').trim();
    } catch {
      return null;
    }
  };
  let rel = '';
  const self = read('/proc/self/cgroup');
  const v2 = self ? /^0::(.*)$/m.exec(self) : null;
  if (v2) rel = v2[1];
  for (const dir of [`/sys/fs/cgroup${rel}`, '/sys/fs/cgroup']) {
    const max = read(`${dir}/memory.max`),
      cur = read(`${dir}/memory.current`);
    if (max !== null && cur !== null) return max === 'max' ? null : { limit: Number(max), usage: Number(cur) };
  }
  const lim = read('/sys/fs/cgroup/memory/memory.limit_in_bytes'),
    use = read('/sys/fs/cgroup/memory/memory.usage_in_bytes');
  // v1 reports "no limit" as a huge number (page-rounded 2^63).
  if (lim !== null && use !== null && Number(lim) < 2 ** 60) return { limit: Number(lim), usage: Number(use) };
  return null;
}
