/**
 * Mamba-2 checkpoint folders for tests, written from the float64 reference's weights
 * (test/reference/mamba2_ref.ts): an HF `Mamba2ForCausalLM` folder (config.json as transformers
 * writes it, with Python's `Infinity`) or a state-spaces one (`ssm_cfg.layer: "Mamba2"`), in one
 * safetensors file or in shards, stored as F32 or BF16.
 */
import * as fs from 'fs';
import * as path from 'path';

import { encodeSafetensors, type TensorToEncode } from '../../lib/checkpoint/safetensors';
import { convChannels, dInner, inProjRows, type Mamba2RefConfig, type Mamba2RefWeights } from '../reference/mamba2_ref';
import { bf16BitsToF32, f32ToBf16Bits, makeRng, randn } from '../reference/random_model';
import { encodeTorchSave } from './torch_save';
import { tmpDir } from './util';

export interface Mamba2FolderOptions {
  layout?: 'hf' | 'state-spaces';
  dtype?: 'F32' | 'BF16';
  /** Split the tensors over this many safetensors files with an index (default 1: model.safetensors). */
  shards?: number;
  /** 'torch': one pytorch_model.bin (torch.save's zip), as state-spaces ships its folders. */
  format?: 'safetensors' | 'torch';
}

/** Random weights of a trained model's scales (norms near 1, dt between 1e-3 and 1e-1, A_h in [1, 16]). */
export function randomMamba2Weights(c: Mamba2RefConfig, seed: number, tied: boolean): Mamba2RefWeights {
  const rng = makeRng(seed);
  const E = dInner(c);
  const r = (n: number, std: number) => randn(rng, n, std);
  const uniform = (n: number, lo: number, hi: number) => Float64Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
  const invSoftplus = (y: number) => y + Math.log(-Math.expm1(-y));
  return {
    embedding: r(c.V * c.d, 1),
    normF: r(c.d, 0.1).map((v) => 1 + v),
    lmHead: tied ? null : r(c.V * c.d, 0.3),
    layers: Array.from({ length: c.L }, () => ({
      norm: r(c.d, 0.1).map((v) => 1 + v),
      inProj: r(inProjRows(c) * c.d, 1 / Math.sqrt(c.d)),
      convW: r(convChannels(c) * c.K, 0.5),
      convB: c.convBias ? r(convChannels(c), 0.1) : null,
      dtBias: uniform(c.H, Math.log(1e-3), Math.log(1e-1)).map((v) => invSoftplus(Math.exp(v))),
      ALog: uniform(c.H, 0, Math.log(16)),
      D: r(c.H, 0.5).map((v) => 1 + v),
      gateNorm: r(E, 0.1).map((v) => 1 + v),
      outProj: r(c.d * E, 1 / Math.sqrt(E)),
    })),
  };
}

/** The weights as a BF16 checkpoint holds them (each value rounded to bfloat16). */
export function roundToBf16(w: Mamba2RefWeights): Mamba2RefWeights {
  const q = (a: Float64Array): Float64Array => a.map((v) => bf16BitsToF32(f32ToBf16Bits(v)));
  return {
    embedding: q(w.embedding),
    normF: q(w.normF),
    lmHead: w.lmHead && q(w.lmHead),
    layers: w.layers.map((l) => ({
      norm: q(l.norm),
      inProj: q(l.inProj),
      convW: q(l.convW),
      convB: l.convB && q(l.convB),
      dtBias: q(l.dtBias),
      ALog: q(l.ALog),
      D: q(l.D),
      gateNorm: q(l.gateNorm),
      outProj: q(l.outProj),
    })),
  };
}

function configText(c: Mamba2RefConfig, tied: boolean, layout: 'hf' | 'state-spaces'): string {
  const hi = c.dtLimit[1] === Infinity ? 'Infinity' : String(c.dtLimit[1]);
  const lo = c.dtLimit[0];
  const limit = `[${Number.isInteger(lo) ? lo.toFixed(1) : String(lo)}, ${hi}]`; // 0.0 as Python writes it
  if (layout === 'hf') {
    const json = {
      architectures: ['Mamba2ForCausalLM'],
      model_type: 'mamba2',
      hidden_size: c.d,
      num_hidden_layers: c.L,
      vocab_size: c.V,
      expand: (c.H * c.P) / c.d,
      num_heads: c.H,
      head_dim: c.P,
      n_groups: c.G,
      state_size: c.N,
      conv_kernel: c.K,
      chunk_size: c.chunk,
      use_conv_bias: c.convBias,
      use_bias: false,
      layer_norm_epsilon: c.eps,
      rms_norm: true,
      residual_in_fp32: true,
      tie_word_embeddings: tied,
      time_step_limit: '@LIMIT@',
      bos_token_id: 0,
      eos_token_id: 0,
      pad_token_id: 1,
      torch_dtype: 'float32',
    };
    return JSON.stringify(json, null, 2).replace('"@LIMIT@"', limit);
  }
  const json = {
    d_model: c.d,
    d_intermediate: 0,
    n_layer: c.L,
    vocab_size: c.V,
    ssm_cfg: {
      layer: 'Mamba2',
      d_state: c.N,
      d_conv: c.K,
      expand: (c.H * c.P) / c.d,
      headdim: c.P,
      ngroups: c.G,
      chunk_size: c.chunk,
      conv_bias: c.convBias,
      dt_limit: '@LIMIT@',
    },
    rms_norm: true,
    residual_in_fp32: true,
    fused_add_norm: true,
    pad_vocab_size_multiple: 1,
    tie_embeddings: tied,
  };
  return JSON.stringify(json, null, 2).replace('"@LIMIT@"', limit);
}

/** Writes the folder; returns its path. */
export function writeMamba2Folder(c: Mamba2RefConfig, w: Mamba2RefWeights, opts: Mamba2FolderOptions = {}): string {
  const layout = opts.layout ?? 'hf';
  const dtype = opts.dtype ?? 'F32';
  const dir = tmpDir('simba-mamba2-');
  const tensors: Record<string, TensorToEncode> = {};
  const put = (name: string, shape: number[], v: Float64Array) => {
    tensors[name] = { dtype, shape, data: Float32Array.from(v) };
  };
  const E = dInner(c);
  put(layout === 'hf' ? 'backbone.embeddings.weight' : 'backbone.embedding.weight', [c.V, c.d], w.embedding);
  put('backbone.norm_f.weight', [c.d], w.normF);
  if (w.lmHead) put('lm_head.weight', [c.V, c.d], w.lmHead);
  w.layers.forEach((l, i) => {
    const p = `backbone.layers.${i}`;
    put(`${p}.norm.weight`, [c.d], l.norm);
    put(`${p}.mixer.in_proj.weight`, [inProjRows(c), c.d], l.inProj);
    put(`${p}.mixer.conv1d.weight`, [convChannels(c), 1, c.K], l.convW);
    if (l.convB) put(`${p}.mixer.conv1d.bias`, [convChannels(c)], l.convB);
    put(`${p}.mixer.dt_bias`, [c.H], l.dtBias);
    put(`${p}.mixer.A_log`, [c.H], l.ALog);
    put(`${p}.mixer.D`, [c.H], l.D);
    put(`${p}.mixer.norm.weight`, [E], l.gateNorm);
    put(`${p}.mixer.out_proj.weight`, [c.d, E], l.outProj);
  });
  fs.writeFileSync(path.join(dir, 'config.json'), configText(c, w.lmHead === null, layout));
  if (opts.format === 'torch') {
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), encodeTorchSave(tensors));
    return dir;
  }
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors));
    return dir;
  }
  const names = Object.keys(tensors);
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = names.slice(s * per, (s + 1) * per);
    fs.writeFileSync(path.join(dir, file), encodeSafetensors(Object.fromEntries(part.map((n) => [n, tensors[n]]))));
    for (const n of part) weightMap[n] = file;
  }
  fs.writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
  );
  return dir;
}
