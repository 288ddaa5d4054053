/**
 * Shared types of the loading layer and the engine.
 *
 * Glossary (code name -> paper symbol, Gu & Dao 2023 / Song et al. 2025):
 *   dModel  = d      model width (hidden_size)
 *   dInner  = E      mixer width (intermediate_size = expand * d)
 *   dState  = N      SSM state size per channel
 *   dtRank  = R      rank of the dt projection
 *   dConv   = K      causal conv kernel width
 *   nLayer  = L      number of Mamba blocks
 */

/**
 * Mamba-2 (SSD) fields of a MambaConfig (glossary: H = nHeads, P = headDim, G = nGroups; E = H P).
 * B and C come in G groups (head h reads group floor(h / (H / G))); dt has one value per head.
 */
export interface Mamba2Shape {
  nHeads: number;
  headDim: number;
  nGroups: number;
  /** The SSD chunk length the checkpoint names (chunk_size); results do not depend on it. */
  chunkSize: number;
  /** dt is clamped to [low, high] after the softplus (time_step_limit / dt_limit); high may be Infinity. */
  dtLimit: [number, number];
}

/**
 * A model configuration of any family, normalised from every config layout: Mamba-1, Falcon-Mamba
 * (mixerRmsEps set) and Mamba-2 (mamba2 set, dtRank 0).
 */
export interface MambaConfig {
  /** Rows of the embedding matrix (the padded vocabulary size). */
  vocabSize: number;
  dModel: number;
  nLayer: number;
  dInner: number;
  dState: number;
  /** Mamba-1's dt projection rank; 0 for Mamba-2 (dt comes from in_proj, one per head). */
  dtRank: number;
  dConv: number;
  /** conv1d has a bias (HF use_conv_bias). */
  convBias: boolean;
  /** in_proj / out_proj have biases (HF use_bias). */
  projBias: boolean;
  /** RMSNorm epsilon (HF layer_norm_epsilon). */
  eps: number;
  /** LM head shares the embedding matrix. */
  tieEmbeddings: boolean;
  /**
   * Falcon-Mamba (HF `falcon_mamba`): the epsilon of the weightless RMS norms the mixer applies to
   * dt (the dtRank slice of x_proj's output, before dt_proj), B and C (each over dState), from the
   * config's `mixer_rms_eps` (1e-6 when absent; not `eps`). Absent for Mamba-1, which has no such norms.
   */
  mixerRmsEps?: number;
  /** Mamba-2 (HF `Mamba2ForCausalLM`, state-spaces `ssm_cfg.layer: "Mamba2"`, Mamba-Codestral); absent otherwise. */
  mamba2?: Mamba2Shape;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
}

/** The model families: Mamba-1, Falcon-Mamba (Mamba-1 with its mixer norms), Mamba-2 (SSD). */
export type ModelFamily = 'mamba' | 'falcon-mamba' | 'mamba2';

/** Which family a config describes. */
export function modelFamily(c: MambaConfig): ModelFamily {
  if (c.mamba2) return 'mamba2';
  return c.mixerRmsEps !== undefined && c.mixerRmsEps !== null ? 'falcon-mamba' : 'mamba';
}

/** A copy of a config that shares nothing with it (the Mamba-2 fields are an object of their own). */
export function copyConfig(c: MambaConfig): MambaConfig {
  return c.mamba2 ? { ...c, mamba2: { ...c.mamba2, dtLimit: [c.mamba2.dtLimit[0], c.mamba2.dtLimit[1]] } } : { ...c };
}

/** Element type of a tensor stored in a safetensors file that we can read. */
export type TensorDType = 'F32' | 'F16' | 'BF16';

/**
 * How the engine stores the matrices: 'f32' (exact), 'bf16' (half the bytes, ~2e-3 relative error
 * per GEMM), 'int8' (a quarter of the bytes: a scale per output feature, activations quantized per
 * row on the fly, ~6e-3 relative error per GEMM; CPU only), 'int4' (4.5 bits a weight: 4-bit values
 * with a half-float scale per output feature and block of 32 inputs, activations quantized per row
 * as for int8, ~0.1 relative error per GEMM; CPU only).
 */
export type WeightFormat = 'f32' | 'bf16' | 'int8' | 'int4';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'bf16', 'int8', 'int4'];

/**
 * Engine-side tensor names. Per-layer tensors carry a layer index; global ones use layer -1.
 *   embedding [V, d], norm_f [d], lm_head [V, d] (only when untied)
 *   norm [d], in_proj [2E, d], in_proj_bias [2E], conv_w [E, K], conv_b [E], x_proj [R+2N, E],
 *   dt_proj_w [E, R], dt_proj_b [E], A_log [E, N], D [E], out_proj [d, E], out_proj_bias [d]
 * Mamba-2 (H heads, G groups, CH = E + 2 G N): in_proj [2E + 2GN + H, d] (z | x | B | C | dt),
 *   conv_w [CH, K], conv_b [CH], A_log [H], D [H], dt_bias [H], gate_norm [E]; no x_proj, dt_proj.
 */
export type EngineTensorName =
  | 'embedding'
  | 'norm_f'
  | 'lm_head'
  | 'norm'
  | 'in_proj'
  | 'in_proj_bias'
  | 'conv_w'
  | 'conv_b'
  | 'x_proj'
  | 'dt_proj_w'
  | 'dt_proj_b'
  | 'A_log'
  | 'D'
  | 'out_proj'
  | 'out_proj_bias'
  | 'dt_bias'
  | 'gate_norm';

/**
 * One row of the engine's tensor table (native/common/tensor_table.h, read through the addon's
 * tensorTable(config)): every tensor a config can have, in the order checkpoints are read:
 * embedding, layer 0 .. L-1 (norm .. out_proj_bias), norm_f, lm_head.
 */
export interface EngineTensorSpec {
  name: EngineTensorName;
  /** Layer index, or -1 for global tensors. */
  layer: number;
  /** Shape the engine takes (checkpoint layout, row-major). */
  shape: number[];
  /** Whether the config has this tensor (false: a bias the config lacks, or lm_head when tied). */
  required: boolean;
  /** How the engine stores it: as given, transposed (conv_w), -exp then transposed (Mamba-1's A_log), -exp (Mamba-2's). */
  layout: 'plain' | 'transposed' | 'neg_exp_transposed' | 'neg_exp';
}

/** One tensor ready for the engine: f32 values, row-major, with its engine name and expected shape. */
export interface EngineTensor {
  name: EngineTensorName;
  /** Layer index, or -1 for global tensors. */
  layer: number;
  shape: number[];
  data: Float32Array;
}
