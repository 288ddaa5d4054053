/**
 * Load time and peak memory of a GGUF file of a standard shape (default falcon-mamba-7b) with
 * random Q4_0 (or other block type) matrices: the claim that loading maps the file and converts one
 * tensor at a time, so the process's peak RSS stays within 1.3x the engine's weight bytes.
 *
 *   node dist/bench/gguf_rss.js write --out /tmp/fm7b-q4_0.gguf [--shape falcon-mamba-7b] [--type Q4_0]
 *   node dist/bench/gguf_rss.js load --model /tmp/fm7b-q4_0.gguf [--weights int8]
 *
 * `write` streams the file tensor by tensor (a few MB of memory): the matrices are random blocks with
 * finite f16 scales (their values do not matter here), the norms, conv, A (negative), D and biases
 * F32 as llama.cpp's converter leaves them. `load` runs in a fresh process and prints one JSON line:
 * seconds to load, the engine's weight bytes, peak RSS (VmHWM) and their ratio, RSS before loading.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';

import { GGUF_TENSOR_TYPES, type GgufTensorType } from '../lib/checkpoint/gguf';
import { loadModel, SHAPES } from '../lib/engine/load';
import { f32ToF16Bits } from '../lib/checkpoint/safetensors';
import type { MambaConfig, WeightFormat } from '../lib/types';
import { ggufHeader, type GgufTensorSlot } from './gguf_writer';

/** The tensors llama.cpp's converter writes for a Mamba-1 config, with their GGUF types. */
function tensorsOf(c: MambaConfig, type: GgufTensorType): (GgufTensorSlot & { fill: 'blocks' | 'ones' | 'a' | 'small' })[] {
  const mat = (name: string, rows: number, cols: number) => {
    const t: GgufTensorType = cols % GGUF_TENSOR_TYPES[type].blockElems === 0 ? type : 'F32';
    const b = GGUF_TENSOR_TYPES[t];
    return {
      name,
      dims: [cols, rows],
      type: t,
      byteLength: ((rows * cols) / b.blockElems) * b.blockBytes,
      fill: 'blocks' as const,
    };
  };
  const f32 = (name: string, dims: number[], fill: 'ones' | 'a' | 'small') => ({
    name,
    dims,
    type: 'F32' as const,
    byteLength: 4 * dims.reduce((a, b) => a * b, 1),
    fill,
  });
  const { vocabSize: V, dModel: d, dInner: E, dState: N, dtRank: R, dConv: K } = c;
  const out = [mat('token_embd.weight', V, d), f32('output_norm.weight', [d], 'ones')];
  if (!c.tieEmbeddings) out.push(mat('output.weight', V, d));
  for (let l = 0; l < c.nLayer; l++) {
    const b = `blk.${l}.`;
    out.push(
      f32(`${b}attn_norm.weight`, [d], 'ones'),
      mat(`${b}ssm_in.weight`, 2 * E, d),
      f32(`${b}ssm_conv1d.weight`, [K, E], 'small'),
      f32(`${b}ssm_conv1d.bias`, [E], 'small'),
      mat(`${b}ssm_x.weight`, R + 2 * N, E),
      mat(`${b}ssm_dt.weight`, E, R),
      f32(`${b}ssm_dt.bias`, [E], 'small'),
      f32(`${b}ssm_a`, [N, E], 'a'),
      f32(`${b}ssm_d`, [E], 'ones'),
      mat(`${b}ssm_out.weight`, d, E),
    );
  }
  return out;
}

/** Random blocks of a type with every f16 scale set to a small finite value. */
function blockChunk(type: GgufTensorType, blocks: number): Buffer {
  const { blockBytes } = GGUF_TENSOR_TYPES[type];
  const buf = crypto.randomBytes(blocks * blockBytes);
  const scale = f32ToF16Bits(type.endsWith('_K') ? 1e-4 : 2e-3);
  const at: Record<string, number[]> = { Q8_0: [0], Q4_0: [0], Q4_1: [0, 2], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208] };
  for (let b = 0; b < blocks; b++) for (const o of at[type] ?? []) buf.writeUInt16LE(scale, b * blockBytes + o);
  return buf;
}

function write(out: string, shape: string, type: GgufTensorType): void {
  const c = SHAPES[shape];
  if (!c || c.mamba2) throw new Error(`gguf_rss: --shape must be a Mamba-1 shape of SHAPES, got '${shape}'`);
  console.log(JSON.stringify({ out, shape, ...writeRandomGguf(out, c, type, `random ${shape} ${type}`) }));
}

/**
 * Streams a GGUF of a Mamba-1 config with random `type` matrices (F32 where a row is not a whole
 * number of blocks) to `out`; returns its type, size and tensor count.
 */
export function writeRandomGguf(
  out: string,
  c: MambaConfig,
  type: GgufTensorType,
  name = 'random',
): { type: GgufTensorType; bytes: number; tensors: number } {
  const tensors = tensorsOf(c, type);
  const meta = {
    'general.architecture': 'mamba',
    'general.name': name,
    'mamba.context_length': 1 << 20,
    'mamba.embedding_length': c.dModel,
    'mamba.block_count': c.nLayer,
    'mamba.ssm.conv_kernel': c.dConv,
    'mamba.ssm.inner_size': c.dInner,
    'mamba.ssm.state_size': c.dState,
    'mamba.ssm.time_step_rank': c.dtRank,
    'mamba.attention.layer_norm_rms_epsilon': c.eps,
    'mamba.ssm.dt_b_c_rms': c.mixerRmsEps !== undefined,
  };
  const { header, offsets } = ggufHeader(meta, tensors);
  const chunks = new Map<GgufTensorType, Buffer>();
  const fd = fs.openSync(out, 'w');
  try {
    fs.writeSync(fd, header);
    tensors.forEach((t, i) => {
      let pos = header.length + offsets[i];
      if (t.fill === 'blocks' && t.type !== 'F32') {
        const type = t.type as GgufTensorType;
        if (!chunks.has(type)) chunks.set(type, blockChunk(type, (1 << 22) / GGUF_TENSOR_TYPES[type].blockElems));
        const chunk = chunks.get(type)!;
        for (let left = t.byteLength; left > 0;) {
          const n = Math.min(left, chunk.length);
          fs.writeSync(fd, chunk, 0, n, pos);
          pos += n;
          left -= n;
        }
        return;
      }
      const n = t.byteLength / 4;
      const v = new Float32Array(n);
      for (let j = 0; j < n; j++) v[j] = t.fill === 'ones' ? 1 : t.fill === 'a' ? -(1 + (j % t.dims[0])) : 0.01 * Math.sin(j);
      fs.writeSync(fd, new Uint8Array(v.buffer), 0, v.byteLength, pos);
    });
  } finally {
    fs.closeSync(fd);
  }
  return { type, bytes: fs.statSync(out).size, tensors: tensors.length };
}

function vmKb(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function load(model: string, weights?: WeightFormat): Promise<void> {
  const rssBefore = vmKb('VmRSS');
  const t0 = process.hrtime.bigint();
  const m = await loadModel(model, weights ? { weights, tokenizer: false } : { tokenizer: false });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const info = m.info();
  const peak = vmKb('VmHWM');
  console.log(
    JSON.stringify({
      model,
      fileBytes: fs.statSync(model).size,
      weights: info.weights,
      seconds: Number(seconds.toFixed(2)),
      weightBytes: info.weightBytes,
      rssBeforeBytes: rssBefore,
      peakRssBytes: peak,
      peakOverWeights: Number((peak / info.weightBytes).toFixed(3)),
      rssAfterBytes: vmKb('VmRSS'),
    }),
  );
  m.dispose();
}

function main(argv: string[]): Promise<void> | void {
  const [cmd, ...rest] = argv;
  const flags: Record<string, string> = {};
  for (let i = 0; i < rest.length; i += 2) flags[rest[i]] = rest[i + 1];
  if (cmd === 'write' && flags['--out'])
    return write(flags['--out'], flags['--shape'] ?? 'falcon-mamba-7b', (flags['--type'] ?? 'Q4_0') as GgufTensorType);
  if (cmd === 'load' && flags['--model']) return load(flags['--model'], flags['--weights'] as WeightFormat | undefined);
  console.error(
    'usage: node dist/bench/gguf_rss.js write --out FILE [--shape falcon-mamba-7b] [--type Q4_0]\n' +
      '       node dist/bench/gguf_rss.js load --model FILE [--weights int8]',
  );
  process.exitCode = 2;
}

if (require.main === module) {
  Promise.resolve(main(process.argv.slice(2))).catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
