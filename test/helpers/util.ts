/** Shared test utilities: error measures, temporary checkpoints, random inputs. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { loadAddon, type NativeConfig } from '../../bindings';
import { encodeSafetensors } from '../../lib/checkpoint/safetensors';
import { loadModel } from '../../lib/engine/load';
import type { Sequence } from '../../lib/engine/sequence';
import { SimbaError } from '../../lib/errors';
import type { EngineTensor, MambaConfig, TensorDType } from '../../lib/types';
import { hfConfigJson, makeRng, stateSpacesConfigJson, toHfTensors, type CheckpointLayout } from '../reference/random_model';

/** ||a - b|| / ||b|| (b is the reference). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Largest per-row relative error between two lists of rows. */
export function maxRowErr(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  if (a.length !== b.length) throw new Error(`row count mismatch ${a.length} vs ${b.length}`);
  return Math.max(...a.map((r, i) => relErr(r, b[i])));
}

export function tmpDir(prefix = 'simba-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Writes an HF (or state-spaces) checkpoint folder for engine tensors; returns the folder. */
export function writeCheckpoint(
  cfg: MambaConfig,
  tensors: EngineTensor[],
  opts: { layout?: CheckpointLayout; dtype?: TensorDType; dir?: string } = {},
): string {
  const layout = opts.layout ?? 'hf',
    dtype = opts.dtype ?? 'F32';
  const dir = opts.dir ?? tmpDir();
  const hf = toHfTensors(cfg, tensors, layout, dtype);
  const enc: Record<string, { dtype: TensorDType; shape: number[]; data: Float32Array }> = {};
  for (const t of hf) enc[t.name] = { dtype: t.dtype, shape: t.shape, data: t.data };
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(enc));
  const json = layout === 'hf' ? hfConfigJson(cfg, dtype) : stateSpacesConfigJson(cfg);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(json, null, 2));
  return dir;
}

/** Fresh random Float32Array, uniform in [-scale, scale). */
export function randArray(n: number, seed: number, scale = 1): Float32Array {
  const rng = makeRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng.uniform() * 2 - 1) * scale;
  return out;
}

export const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);

/** Random token ids in [0, V). */
export function randTokens(n: number, V: number, seed: number): number[] {
  const rng = makeRng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.uniform() * V));
}

/**
 * A test's random seed: the fixed `fallback`, or SIMBA_TEST_SEED when set (an integer, to rerun
 * the suite on other inputs). A seed-dependent failure names the seed in its test name.
 */
export function testSeed(fallback: number): number {
  const env = process.env.SIMBA_TEST_SEED;
  if (env === undefined || env === '') return fallback;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`SIMBA_TEST_SEED must be a non-negative integer, got '${env}'`);
  return n;
}

/**
 * A sequence's state as floats on any device (CPU: the state itself; 'cuda': read through snapshotAsync,
 * after the snapshot's 8-word header, lib/engine/sequence.ts HEADER_BYTES).
 */
export async function stateOf(seq: Sequence): Promise<Float32Array> {
  if (seq.device === 'cpu') return seq.state;
  const b = await seq.snapshotAsync();
  return new Float32Array(b.buffer.slice(b.byteOffset + 32, b.byteOffset + b.byteLength));
}

/** The SimbaError a promise rejects with (fails the test when it resolves or rejects with anything else). */
export async function rejection(p: Promise<unknown>): Promise<SimbaError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SimbaError);
    return e as SimbaError;
  }
  throw new Error('expected a rejection');
}

/** A copy of the shipped brown-mamba-s folder in a fresh temporary folder (to damage or change). */
export function copyShipped(): string {
  const shipped = path.join(__dirname, '..', '..', 'models', 'brown-mamba-s');
  const dir = tmpDir();
  for (const f of fs.readdirSync(shipped)) fs.copyFileSync(path.join(shipped, f), path.join(dir, f));
  return dir;
}

/**
 * Loads `dir` with bf16 and with int8 weights (and int4 when tol.int4 is given): the logits `run`
 * computes are within each format's tolerance of `want`, and more than 1e-6 from it (the weights
 * really are stored in the format).
 */
export async function expectStorageFormats(
  dir: string,
  run: (m: Awaited<ReturnType<typeof loadModel>>) => Promise<ArrayLike<number>[]>,
  want: ArrayLike<number>[],
  tol: { bf16: number; int8: number; int4?: number },
): Promise<void> {
  for (const weights of ['bf16', 'int8', 'int4'] as const) {
    const bound = tol[weights];
    if (bound === undefined) continue;
    const q = await loadModel(dir, { weights });
    try {
      const err = maxRowErr(await run(q), want);
      expect(err).toBeLessThan(bound);
      expect(err).toBeGreaterThan(1e-6);
    } finally {
      q.dispose();
    }
  }
}

/** What the addon throws when an engine is made for `cfg` (code and message), or {} when it is made. */
export function engineError(cfg: NativeConfig): { code?: unknown; message?: unknown } {
  try {
    new (loadAddon().Engine)(cfg, { bf16: false }).dispose();
  } catch (e) {
    return e as { code?: unknown; message?: unknown };
  }
  return {};
}

/** Expects f() to throw a SimbaError E_ARG whose message matches. */
export function expectArgError(f: () => unknown, message: RegExp): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SimbaError);
  expect((err as SimbaError).code).toBe('E_ARG');
  expect((err as SimbaError).message).toMatch(message);
}
