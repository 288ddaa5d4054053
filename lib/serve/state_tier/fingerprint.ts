/**
 * The model fingerprint of the shared state tier: states are content-addressed by it (plus the exact
 * token prefix), so two replicas share a state only when they run the same checkpoint the same way.
 *
 * It hashes (SHA-256) the family, the config, the weight storage format and a digest of the weights
 * that costs next to nothing at load:
 *   - a model folder: every weight file's name and size, and 17 blocks of 64 KiB spread evenly over
 *     it (first and last included), read from disk. Any fine-tune or re-quantisation changes bytes in
 *     every block; two checkpoints that differ only between the sampled blocks would collide, which
 *     is why the blocks cover the whole file at 1/16 intervals.
 *   - a random-weight model (no files): a probe. Eight fixed tokens are run through the model and the
 *     resulting state and logits are hashed, so two seeds or shapes never share keys.
 *
 * @example
 *   const fp = await modelFingerprint(model);   // 32 hex characters
 */
import { createHash, type Hash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import type { LanguageModel } from '../../engine/lm';

/** Bumped when what the fingerprint covers changes: old keys then simply stop matching. */
const FINGERPRINT_VERSION = 1;
const BLOCK = 64 << 10;
const BLOCKS = 17;
const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|gguf|ckpt)$|\.index\.json$/;
const PROBE = [1, 2, 3, 5, 8, 13, 21, 34];

/** Sorted keys at every level: the same config always hashes the same. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

function sampleFile(h: Hash, file: string): void {
  const size = fs.statSync(file).size;
  h.update(`${path.basename(file)}\u0000${size}\u0000`);
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(BLOCK);
    for (let i = 0; i < BLOCKS; i++) {
      const at = Math.floor(((size - Math.min(size, BLOCK)) * i) / (BLOCKS - 1));
      const n = fs.readSync(fd, buf, 0, Math.min(BLOCK, size - at), at);
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The weight files of a model folder, sorted (empty when `source` is no folder). */
function weightFiles(source: string): string[] {
  if (!fs.existsSync(source) || !fs.statSync(source).isDirectory()) return [];
  return fs
    .readdirSync(source)
    .filter((f) => WEIGHT_FILE.test(f))
    .sort()
    .map((f) => path.join(source, f));
}

async function probe(h: Hash, model: LanguageModel): Promise<void> {
  const V = model.config.vocabSize;
  const [r] = await model.prefill([{ tokens: PROBE.map((t) => t % V) }], { logits: 'last' });
  try {
    h.update(await r.sequence.snapshotAsync());
    for (const row of r.logits) h.update(Buffer.from(row.buffer, row.byteOffset, row.byteLength));
  } finally {
    r.sequence.dispose();
  }
}

/** The model's fingerprint: 32 hex characters (128 bits of SHA-256). */
export async function modelFingerprint(model: LanguageModel): Promise<string> {
  const info = model.info();
  const h = createHash('sha256');
  h.update(`simba-state-fingerprint v${FINGERPRINT_VERSION}\u0000${info.family}\u0000${info.weights}\u0000`);
  h.update(canonical(info.config));
  const files = weightFiles(info.source);
  if (files.length > 0) for (const f of files) sampleFile(h, f);
  else {
    h.update(`\u0000${info.source}\u0000`);
    await probe(h, model);
  }
  return h.digest('hex').slice(0, 32);
}
