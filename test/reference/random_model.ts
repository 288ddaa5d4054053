/**
 * Deterministic random Mamba-1 models for tests: a config builder, sanely scaled random weights as
 * engine tensors, and the mapping back to checkpoint tensor names / config.json so a test can write
 * a real checkpoint (with lib/checkpoint/safetensors.ts's writer) and load it through the normal path.
 *
 * Weight recipe (activations stay O(1) over several layers; tied logits spread ~ sqrt(d) units):
 *   embedding       N(0, 1)                      [V, d]
 *   in_proj         N(0, 1/d)                    [2E, d]     x_proj   N(0, 1/E)   [R+2N, E]
 *   dt_proj_w       N(0, 1/R)                    [E, R]      out_proj N(0, 1/E)   [d, E]
 *   dt_proj_b       softplus^-1(dt), dt log-uniform in [dtMin, dtMax] = [0.001, 0.1]
 *   A_log           log(1..N) per row + N(0, aLogNoise^2)  (S4D-real init)
 *   D               1 + N(0, 0.1^2)              conv_w N(0, 1/K) [E, K]
 *   norm, norm_f    1 + N(0, 0.1^2)              biases N(0, biasStd^2)
 *   lm_head         N(0, 1/d) (untied only)
 */

import type { EngineTensor, EngineTensorName, MambaConfig, TensorDType } from '../../lib/types';

// ---------------------------------------------------------------------------------------------
// Seeded PRNG: mulberry32 uniforms, Box-Muller normals
// ---------------------------------------------------------------------------------------------

export interface Rng {
  /** Uniform in (0, 1). */
  uniform(): number;
  /** Standard normal. */
  normal(): number;
}

export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  const next32 = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const uniform = (): number => (next32() + 0.5) / 4294967296;
  let spare: number | null = null;
  const normal = (): number => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const phi = 2 * Math.PI * uniform();
    spare = r * Math.sin(phi);
    return r * Math.cos(phi);
  };
  return { uniform, normal };
}

/** A Float64Array of n standard normals times std (handy for kernel tests). */
export function randn(rng: Rng, n: number, std = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
  return a;
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/**
 * A small MambaConfig; every field can be overridden. dInner defaults to 2 dModel and dtRank to
 * ceil(dModel / 16) of the (possibly overridden) dModel.
 */
export function randomConfig(overrides: Partial<MambaConfig> = {}): MambaConfig {
  const dModel = overrides.dModel ?? 16;
  return {
    vocabSize: 64,
    dModel,
    nLayer: 2,
    dInner: 2 * dModel,
    dState: 8,
    dtRank: Math.ceil(dModel / 16),
    dConv: 4,
    convBias: true,
    projBias: false,
    eps: 1e-5,
    tieEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: 0,
    padTokenId: 1,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------
// Random engine tensors
// ---------------------------------------------------------------------------------------------

export interface RandomWeightOptions {
  /** Range of softplus(dt_proj_b), sampled log-uniformly (default 0.001 .. 0.1). */
  dtMin?: number;
  dtMax?: number;
  /** Std of the noise added to A_log = log(1..N) (default 0.05). */
  aLogNoise?: number;
  /** Std of conv / in_proj / out_proj biases (default 0.1). */
  biasStd?: number;
}

/** softplus^-1(y) = y + log(1 - exp(-y)), y > 0 */
export function invSoftplus(y: number): number {
  return y + Math.log(-Math.expm1(-y));
}

/** Deterministic random weights for cfg as engine tensors (global ones first, then layer by layer). */
export function randomEngineTensors(cfg: MambaConfig, seed: number, opts: RandomWeightOptions = {}): EngineTensor[] {
  const { vocabSize: V, dModel: d, dInner: E, dState: N, dtRank: R, dConv: K, nLayer: L } = cfg;
  const dtMin = opts.dtMin ?? 0.001;
  const dtMax = opts.dtMax ?? 0.1;
  const aLogNoise = opts.aLogNoise ?? 0.05;
  const biasStd = opts.biasStd ?? 0.1;
  const rng = makeRng(seed);
  const out: EngineTensor[] = [];
  const add = (name: EngineTensorName, layer: number, shape: number[], f: (i: number) => number): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = f(i);
    out.push({ name, layer, shape, data });
  };
  const normal = (mean: number, std: number) => (): number => mean + std * rng.normal();

  add('embedding', -1, [V, d], normal(0, 1));
  add('norm_f', -1, [d], normal(1, 0.1));
  if (!cfg.tieEmbeddings) add('lm_head', -1, [V, d], normal(0, Math.sqrt(1 / d)));
  for (let l = 0; l < L; l++) {
    add('norm', l, [d], normal(1, 0.1));
    add('in_proj', l, [2 * E, d], normal(0, Math.sqrt(1 / d)));
    if (cfg.projBias) add('in_proj_bias', l, [2 * E], normal(0, biasStd));
    add('conv_w', l, [E, K], normal(0, Math.sqrt(1 / K)));
    if (cfg.convBias) add('conv_b', l, [E], normal(0, biasStd));
    add('x_proj', l, [R + 2 * N, E], normal(0, Math.sqrt(1 / E)));
    add('dt_proj_w', l, [E, R], normal(0, Math.sqrt(1 / R)));
    add('dt_proj_b', l, [E], () => invSoftplus(Math.exp(Math.log(dtMin) + rng.uniform() * (Math.log(dtMax) - Math.log(dtMin)))));
    add('A_log', l, [E, N], (i) => Math.log((i % N) + 1) + aLogNoise * rng.normal());
    add('D', l, [E], normal(1, 0.1));
    add('out_proj', l, [d, E], normal(0, Math.sqrt(1 / E)));
    if (cfg.projBias) add('out_proj_bias', l, [d], normal(0, biasStd));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// f16 / bf16 rounding (round to nearest even), for writing checkpoints in other dtypes
// ---------------------------------------------------------------------------------------------

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const frac = v - f;
  if (frac < 0.5) return f;
  if (frac > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** f32 value -> IEEE half bits (round to nearest even; overflow -> inf; NaN -> quiet NaN). */
export function f32ToF16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(Math.fround(v));
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | roundHalfEven(a / 2 ** -24); // subnormal (1024 becomes the smallest normal, 0x0400)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // guard log2 rounding
  if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e++;
  }
  if (e + 15 >= 31) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}

/** IEEE half bits -> value. */
export function f16BitsToF32(b: number): number {
  const sign = b & 0x8000 ? -1 : 1;
  const e = (b >> 10) & 0x1f;
  const m = b & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 value -> bfloat16 bits (round to nearest even; NaN -> quiet NaN). */
export function f32ToBf16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7fc0;
  f32buf[0] = v;
  const x = u32buf[0];
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> value. */
export function bf16BitsToF32(b: number): number {
  u32buf[0] = (b & 0xffff) << 16;
  return f32buf[0];
}

/** Values as the dtype stores them (f32 copy for F32), plus their little-endian bytes. */
export function encodeDtype(data: Float32Array, dtype: TensorDType): { values: Float32Array; bytes: Uint8Array } {
  if (dtype === 'F32') {
    const values = Float32Array.from(data);
    return { values, bytes: new Uint8Array(values.buffer.slice(0)) };
  }
  const bytes = new Uint8Array(data.length * 2);
  const view = new DataView(bytes.buffer);
  const values = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const bits = dtype === 'F16' ? f32ToF16Bits(data[i]) : f32ToBf16Bits(data[i]);
    view.setUint16(i * 2, bits, true);
    values[i] = dtype === 'F16' ? f16BitsToF32(bits) : bf16BitsToF32(bits);
  }
  return { values, bytes };
}

// ---------------------------------------------------------------------------------------------
// Engine tensors <-> checkpoint tensors
// ---------------------------------------------------------------------------------------------

export type CheckpointLayout = 'hf' | 'state-spaces';

/** One checkpoint tensor, ready for a safetensors writer. */
export interface HfTensor {
  name: string;
  dtype: TensorDType;
  shape: number[];
  /** The values as stored in `dtype` (already rounded for F16/BF16), widened to f32. */
  data: Float32Array;
  /** The stored bytes: `data` in `dtype`, little-endian. */
  bytes: Uint8Array;
}

/** Checkpoint name of an engine tensor in a layout. */
function checkpointName(name: EngineTensorName, layer: number, layout: CheckpointLayout): string {
  const p = `backbone.layers.${layer}.`;
  switch (name) {
    case 'embedding':
      return layout === 'hf' ? 'backbone.embeddings.weight' : 'backbone.embedding.weight';
    case 'norm_f':
      return 'backbone.norm_f.weight';
    case 'lm_head':
      return 'lm_head.weight';
    case 'norm':
      return p + 'norm.weight';
    case 'in_proj':
      return p + 'mixer.in_proj.weight';
    case 'in_proj_bias':
      return p + 'mixer.in_proj.bias';
    case 'conv_w':
      return p + 'mixer.conv1d.weight';
    case 'conv_b':
      return p + 'mixer.conv1d.bias';
    case 'x_proj':
      return p + 'mixer.x_proj.weight';
    case 'dt_proj_w':
      return p + 'mixer.dt_proj.weight';
    case 'dt_proj_b':
      return p + 'mixer.dt_proj.bias';
    case 'A_log':
      return p + 'mixer.A_log';
    case 'D':
      return p + 'mixer.D';
    case 'out_proj':
      return p + 'mixer.out_proj.weight';
    case 'out_proj_bias':
      return p + 'mixer.out_proj.bias';
    case 'dt_bias':
      return p + 'mixer.dt_bias';
    case 'gate_norm':
      return p + 'mixer.norm.weight';
  }
}

/**
 * Engine tensors -> checkpoint tensors in the HF (`backbone.embeddings.weight`) or state-spaces
 * (`backbone.embedding.weight`) layout. conv_w [E, K] becomes conv1d.weight [E, 1, K]. A tied
 * state-spaces model also gets `lm_head.weight` (a copy of the embedding), as mamba_ssm saves it;
 * a tied HF model stores no lm_head. Sorted by name (like the shipped checkpoints).
 */
export function toHfTensors(cfg: MambaConfig, tensors: EngineTensor[], layout: CheckpointLayout, dtype: TensorDType): HfTensor[] {
  const out: HfTensor[] = [];
  const push = (name: string, shape: number[], data: Float32Array): void => {
    const { values, bytes } = encodeDtype(data, dtype);
    out.push({ name, dtype, shape: shape.slice(), data: values, bytes });
  };
  for (const t of tensors) {
    const shape = t.name === 'conv_w' ? [t.shape[0], 1, t.shape[1]] : t.shape;
    push(checkpointName(t.name, t.layer, layout), shape, t.data);
  }
  if (layout === 'state-spaces' && cfg.tieEmbeddings && !tensors.some((t) => t.name === 'lm_head')) {
    const emb = tensors.find((t) => t.name === 'embedding');
    if (!emb) throw new Error('no embedding tensor');
    push('lm_head.weight', emb.shape, emb.data);
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Checkpoint tensors (f32 values) -> engine tensors, the inverse of toHfTensors. For test use
 * (e.g. loading the shipped model without lib/checkpoint/weights.ts); not a validating loader.
 */
export function fromHfTensors(
  cfg: MambaConfig,
  tensors: { name: string; shape: number[]; data: Float32Array }[],
  layout: CheckpointLayout,
): EngineTensor[] {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const out: EngineTensor[] = [];
  const take = (name: EngineTensorName, layer: number): void => {
    const t = byName.get(checkpointName(name, layer, layout));
    if (!t) throw new Error(`missing checkpoint tensor ${checkpointName(name, layer, layout)}`);
    const shape = name === 'conv_w' ? [t.shape[0], t.shape[2]] : t.shape.slice();
    out.push({ name, layer, shape, data: t.data });
  };
  take('embedding', -1);
  take('norm_f', -1);
  if (!cfg.tieEmbeddings) take('lm_head', -1);
  for (let l = 0; l < cfg.nLayer; l++) {
    for (const n of ['norm', 'in_proj', 'conv_w', 'x_proj', 'dt_proj_w', 'dt_proj_b', 'A_log', 'D', 'out_proj'] as const)
      take(n, l);
    if (cfg.projBias) {
      take('in_proj_bias', l);
      take('out_proj_bias', l);
    }
    if (cfg.convBias) take('conv_b', l);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

const TORCH_DTYPE: Record<TensorDType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * A Hugging Face MambaForCausalLM config.json object for cfg; with cfg.mixerRmsEps a
 * FalconMambaForCausalLM one, which carries `mixer_rms_eps` and, like tiiuae/falcon-mamba-7b, an
 * `expand` that disagrees with intermediate_size (16; the reader must take intermediate_size).
 */
export function hfConfigJson(cfg: MambaConfig, dtype: TensorDType = 'F32'): Record<string, unknown> {
  const falcon = cfg.mixerRmsEps !== undefined;
  return {
    architectures: [falcon ? 'FalconMambaForCausalLM' : 'MambaForCausalLM'],
    model_type: falcon ? 'falcon_mamba' : 'mamba',
    ...(falcon ? { mixer_rms_eps: cfg.mixerRmsEps } : {}),
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.dModel,
    intermediate_size: cfg.dInner,
    state_size: cfg.dState,
    num_hidden_layers: cfg.nLayer,
    conv_kernel: cfg.dConv,
    expand: falcon ? 16 : cfg.dInner / cfg.dModel,
    time_step_rank: cfg.dtRank,
    time_step_scale: 1.0,
    time_step_min: 0.001,
    time_step_max: 0.1,
    time_step_init_scheme: 'random',
    time_step_floor: 0.0001,
    use_bias: cfg.projBias,
    use_conv_bias: cfg.convBias,
    hidden_act: 'silu',
    initializer_range: 0.1,
    layer_norm_epsilon: cfg.eps,
    residual_in_fp32: true,
    rescale_prenorm_residual: false,
    tie_word_embeddings: cfg.tieEmbeddings,
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenId,
    pad_token_id: cfg.padTokenId,
    use_cache: true,
    use_mambapy: false,
    torch_dtype: TORCH_DTYPE[dtype],
  };
}

/**
 * A state-spaces (mamba_ssm MambaConfig) config.json object for cfg. vocab_size is stored as is;
 * pad_vocab_size_multiple is 8 when that leaves it unchanged, else 1. mamba_ssm has no eps field
 * (its RMSNorm uses 1e-5), so cfg.eps should be 1e-5 for a faithful checkpoint.
 */
export function stateSpacesConfigJson(cfg: MambaConfig): Record<string, unknown> {
  if (cfg.mixerRmsEps !== undefined) throw new Error('Falcon-Mamba has no state-spaces layout (HF checkpoints only)');
  const expand = cfg.dInner / cfg.dModel;
  if (!Number.isInteger(expand))
    throw new Error(`state-spaces layout needs dInner a multiple of dModel, got ${cfg.dInner}/${cfg.dModel}`);
  return {
    d_model: cfg.dModel,
    n_layer: cfg.nLayer,
    vocab_size: cfg.vocabSize,
    ssm_cfg: { d_state: cfg.dState, d_conv: cfg.dConv, expand, dt_rank: cfg.dtRank, conv_bias: cfg.convBias, bias: cfg.projBias },
    rms_norm: true,
    residual_in_fp32: true,
    fused_add_norm: true,
    pad_vocab_size_multiple: cfg.vocabSize % 8 === 0 ? 8 : 1,
    tie_embeddings: cfg.tieEmbeddings,
  };
}
