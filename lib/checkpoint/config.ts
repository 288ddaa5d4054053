/**
 * config.json -> MambaConfig, for both layouts:
 *   - Hugging Face `MambaForCausalLM` (hidden_size, num_hidden_layers, state_size, ...), and
 *     `FalconMambaForCausalLM` (model_type falcon_mamba: the same keys plus `mixer_rms_eps`, read
 *     into MambaConfig.mixerRmsEps; `intermediate_size` is d_inner whatever `expand` says)
 *   - the original state-spaces/mamba layout (d_model, n_layer, ssm_cfg, pad_vocab_size_multiple, ...)
 *
 * Mamba-2 configs are recognised in all three layouts they come in (HF `Mamba2ForCausalLM`,
 * state-spaces with `ssm_cfg.layer: "Mamba2"`, and Mistral's `params.json` of Mamba-Codestral),
 * parsed into a Mamba2Config (parseMamba2Config), and refused by parseConfig with an E_CONFIG
 * naming the family: the engine runs Mamba-1 and Falcon-Mamba only.
 *
 * Validation is strict: missing required keys, wrongly typed or non-positive sizes, inconsistent
 * duplicates (HF configs often carry both intermediate_size and expand, or leftover d_model / n_layer),
 * unsupported architectures (mamba2, hybrids) and unknown keys are errors. Unknown keys
 * become warnings with `{ allowUnknownKeys: true }`. The files are read as Python's json.dump
 * writes them: JSON plus the bare values NaN, Infinity and -Infinity (parsePythonJson).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { MambaConfig } from '../types';
import { SimbaError, describeValue } from '../errors';
import * as v from '../validate';

export interface ParseConfigOptions {
  /** Unknown keys are reported through onWarning instead of failing. Default false. */
  allowUnknownKeys?: boolean;
  /** Receives non-fatal findings (unknown keys when allowed). */
  onWarning?: (message: string) => void;
}
const PARSE_CONFIG_KEYS = ['allowUnknownKeys', 'onWarning'] as const;

/** Checks a ParseConfigOptions object (unknown keys, types); undefined is no options. `name` is what messages call it. */
export function checkParseConfigOptions(where: string, opts: unknown, name = 'options'): ParseConfigOptions {
  const o = v.options(where, opts, PARSE_CONFIG_KEYS, name);
  const key = (k: string) => (name === 'options' ? k : `${name}.${k}`);
  return {
    allowUnknownKeys: v.bool(where, key('allowUnknownKeys'), o.allowUnknownKeys),
    onWarning: v.func<(message: string) => void>(where, key('onWarning'), o.onWarning),
  };
}

/** Which file a config comes from: HF config.json, state-spaces (mamba_ssm) config.json, or Mistral's params.json. */
export type ConfigLayout = 'hf' | 'state-spaces' | 'mistral';

/**
 * Keys that transformers' generic PretrainedConfig may serialise into any config.json (seen in
 * configs written with `use_diff=False` or by older versions). None affects Mamba inference.
 */
const HF_GENERIC_CONFIG_KEYS: readonly string[] = [
  '_name_or_path',
  '_commit_hash',
  '_attn_implementation_autoset',
  'architectures',
  'model_type',
  'transformers_version',
  'torch_dtype',
  'dtype',
  'use_cache',
  'return_dict',
  'output_hidden_states',
  'output_attentions',
  'torchscript',
  'use_bfloat16',
  'tf_legacy_loss',
  'pruned_heads',
  'chunk_size_feed_forward',
  'is_encoder_decoder',
  'is_decoder',
  'cross_attention_hidden_size',
  'add_cross_attention',
  'tie_encoder_decoder',
  'max_length',
  'min_length',
  'do_sample',
  'early_stopping',
  'num_beams',
  'num_beam_groups',
  'diversity_penalty',
  'temperature',
  'top_k',
  'top_p',
  'typical_p',
  'repetition_penalty',
  'length_penalty',
  'no_repeat_ngram_size',
  'encoder_no_repeat_ngram_size',
  'bad_words_ids',
  'num_return_sequences',
  'output_scores',
  'return_dict_in_generate',
  'forced_bos_token_id',
  'forced_eos_token_id',
  'remove_invalid_values',
  'exponential_decay_length_penalty',
  'suppress_tokens',
  'begin_suppress_tokens',
  'finetuning_task',
  'id2label',
  'label2id',
  'num_labels',
  'tokenizer_class',
  'prefix',
  'sep_token_id',
  'decoder_start_token_id',
  'task_specific_params',
  'problem_type',
  'n_positions',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'tie_word_embeddings',
];

/** Keys of transformers' MambaConfig (plus keys the official *-hf conversions left behind). */
const HF_MAMBA_CONFIG_KEYS: readonly string[] = [
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'intermediate_size',
  'state_size',
  'time_step_rank',
  'conv_kernel',
  'expand',
  'use_bias',
  'use_conv_bias',
  'layer_norm_epsilon',
  'hidden_act',
  'initializer_range',
  'residual_in_fp32',
  'time_step_scale',
  'time_step_min',
  'time_step_max',
  'time_step_init_scheme',
  'time_step_floor',
  'rescale_prenorm_residual',
  'use_mambapy',
  'use_associative_scan',
  // leftovers of the state-spaces layout in state-spaces/mamba-*-hf (cross-checked when present)
  'd_model',
  'd_inner',
  'n_layer',
  'fused_add_norm',
  'rms_norm',
  'pad_vocab_size_multiple',
  'ssm_cfg',
];

/** Keys transformers' FalconMambaConfig has beyond MambaConfig's. */
const HF_FALCON_MAMBA_CONFIG_KEYS: readonly string[] = ['mixer_rms_eps', 'use_falcon_mambapy'];

/** Falcon-Mamba's mixer_rms_eps where a config has none (transformers' FalconMambaConfig default). */
export const DEFAULT_MIXER_RMS_EPS = 1e-6;

/** Top-level keys of the state-spaces (mamba_ssm) MambaConfig. */
const STATE_SPACES_CONFIG_KEYS: readonly string[] = [
  'd_model',
  'd_intermediate',
  'n_layer',
  'vocab_size',
  'ssm_cfg',
  'attn_layer_idx',
  'attn_cfg',
  'rms_norm',
  'residual_in_fp32',
  'fused_add_norm',
  'pad_vocab_size_multiple',
  'tie_embeddings',
  'norm_epsilon',
  'initializer_cfg',
];

/** Keys of `ssm_cfg` (arguments of mamba_ssm's Mamba module). */
const SSM_CFG_KEYS: readonly string[] = [
  'layer',
  'd_state',
  'd_conv',
  'expand',
  'dt_rank',
  'dt_min',
  'dt_max',
  'dt_init',
  'dt_scale',
  'dt_init_floor',
  'conv_bias',
  'bias',
  'use_fast_path',
  'layer_idx',
];

/** Keys of transformers' Mamba2Config (the Mamba-2 counterpart of HF_MAMBA_CONFIG_KEYS). */
const HF_MAMBA2_CONFIG_KEYS: readonly string[] = [
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'num_heads',
  'head_dim',
  'n_groups',
  'state_size',
  'expand',
  'intermediate_size',
  'conv_kernel',
  'chunk_size',
  'use_bias',
  'use_conv_bias',
  'hidden_act',
  'initializer_range',
  'residual_in_fp32',
  'time_step_rank',
  'time_step_min',
  'time_step_max',
  'time_step_floor',
  'time_step_limit',
  'time_step_init_scheme',
  'time_step_scale',
  'rescale_prenorm_residual',
  'rms_norm',
  'norm_before_gate',
  'layer_norm_epsilon',
];

/** Keys of `ssm_cfg` for `layer: "Mamba2"` (arguments of mamba_ssm's Mamba2 module). */
const MAMBA2_SSM_CFG_KEYS: readonly string[] = [
  'layer',
  'd_state',
  'd_conv',
  'conv_init',
  'expand',
  'headdim',
  'd_ssm',
  'ngroups',
  'A_init_range',
  'D_has_hdim',
  'rmsnorm',
  'norm_before_gate',
  'dt_min',
  'dt_max',
  'dt_init_floor',
  'dt_limit',
  'bias',
  'conv_bias',
  'chunk_size',
  'use_mem_eff_path',
  'layer_idx',
];

/** Keys of Mistral's params.json for Mamba (mistral_inference's MambaArgs). */
const MISTRAL_MAMBA_KEYS: readonly string[] = [
  'dim',
  'n_layers',
  'vocab_size',
  'n_groups',
  'rms_norm',
  'residual_in_fp32',
  'fused_add_norm',
  'pad_vocab_size_multiple',
  'tie_embeddings',
  'model_type',
];

/** The full allowlists, per layout. */
export const KNOWN_CONFIG_KEYS: Readonly<Record<ConfigLayout, ReadonlySet<string>>> = {
  hf: new Set([...HF_GENERIC_CONFIG_KEYS, ...HF_MAMBA_CONFIG_KEYS]),
  'state-spaces': new Set(STATE_SPACES_CONFIG_KEYS),
  mistral: new Set(MISTRAL_MAMBA_KEYS),
};

const UNSUPPORTED_MODEL_TYPES: Record<string, string> = {
  mamba2: 'Mamba-2 (SSD) models',
  jamba: 'Jamba (hybrid attention/MoE) models',
  zamba: 'Zamba (hybrid) models',
  zamba2: 'Zamba2 (hybrid) models',
  bamba: 'Bamba (hybrid) models',
  nemotron_h: 'Nemotron-H (hybrid) models',
};

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The native engine holds every size in a C int. */
export const MAX_CONFIG_SIZE = 2 ** 31 - 1;

function fail(source: string, msg: string): never {
  throw new SimbaError('E_CONFIG', `${source}: ${msg}`);
}

/** A reader of typed keys of one JSON object, producing errors that name the key and the file. */
class Keys {
  constructor(
    private readonly obj: Json,
    private readonly source: string,
    private readonly prefix = '',
  ) {}

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): unknown {
    return this.obj[key];
  }

  private name(key: string): string {
    return `'${this.prefix}${key}'`;
  }

  posInt(key: string, dflt?: number): number {
    if (!this.has(key)) {
      if (dflt !== undefined) return dflt;
      fail(this.source, `missing required key ${this.name(key)} (a positive integer)`);
    }
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      fail(this.source, `key ${this.name(key)} must be a positive integer, found ${describeValue(v)}`);
    }
    if (v > MAX_CONFIG_SIZE) fail(this.source, `key ${this.name(key)} = ${v} exceeds the engine's limit of ${MAX_CONFIG_SIZE}`);
    return v;
  }

  nonNegInt(key: string, dflt: number): number {
    if (!this.has(key)) return dflt;
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      fail(this.source, `key ${this.name(key)} must be a non-negative integer, found ${describeValue(v)}`);
    }
    return v;
  }

  posFloat(key: string, dflt: number): number {
    if (!this.has(key)) return dflt;
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      fail(this.source, `key ${this.name(key)} must be a positive finite number, found ${describeValue(v)}`);
    }
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    if (!this.has(key)) return dflt;
    const v = this.obj[key];
    if (typeof v !== 'boolean') {
      fail(this.source, `key ${this.name(key)} must be true or false, found ${describeValue(v)}`);
    }
    return v;
  }

  /** A positive integer or the string "auto" (resolved by the caller). */
  rankOrAuto(key: string): number | 'auto' {
    if (!this.has(key) || this.obj[key] === 'auto') return 'auto';
    return this.posInt(key);
  }

  /** A token id: a non-negative integer, null/absent (-> null), or a list of them (-> first). */
  tokenId(key: string): number | null {
    let v = this.obj[key];
    if (Array.isArray(v)) v = v.length > 0 ? v[0] : null;
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      fail(this.source, `key ${this.name(key)} must be a non-negative integer token id or null, found ${describeValue(v)}`);
    }
    return v;
  }
}

function checkUnknownKeys(obj: Json, known: ReadonlySet<string>, source: string, what: string, opts: ParseConfigOptions): void {
  const unknown = Object.keys(obj)
    .filter((k) => !known.has(k))
    .sort();
  if (unknown.length === 0) return;
  const msg = `${source}: unknown ${what} key(s) ${unknown.map((k) => `'${k}'`).join(', ')}`;
  if (opts.allowUnknownKeys) {
    opts.onWarning?.(`${msg} (ignored)`);
    return;
  }
  throw new SimbaError('E_CONFIG', `${msg}; pass { allowUnknownKeys: true } to ignore them`);
}

/** Which layout a parsed config.json (or params.json) uses. */
export function detectLayout(json: Json): ConfigLayout {
  const hfMarkers = ['hidden_size', 'num_hidden_layers', 'model_type', 'architectures', 'state_size'];
  // Mistral's params.json carries model_type too, so its own keys decide first.
  if ('dim' in json && 'n_layers' in json) return 'mistral';
  if (hfMarkers.some((k) => k in json)) return 'hf';
  if ('d_model' in json || 'n_layer' in json || 'ssm_cfg' in json) return 'state-spaces';
  return 'hf';
}

/** Which model family a config describes: Mamba-1 ('mamba') or Mamba-2 ('mamba2'). */
export function detectFamily(json: Json): 'mamba' | 'mamba2' {
  const layout = detectLayout(json);
  // mistral_inference builds every Mamba of a params.json as mamba_ssm's Mamba2
  if (layout === 'mistral') return 'mamba2';
  if (layout === 'state-spaces') {
    const ssm = json['ssm_cfg'];
    return isObject(ssm) && ssm['layer'] === 'Mamba2' ? 'mamba2' : 'mamba';
  }
  const arch = json['architectures'];
  const mamba2Arch = Array.isArray(arch) && arch.some((a) => a === 'Mamba2ForCausalLM' || a === 'Mamba2Model');
  return json['model_type'] === 'mamba2' || mamba2Arch ? 'mamba2' : 'mamba';
}

/** The HF model types parseConfig reads, and the architectures each names. */
const HF_ARCHITECTURES = {
  mamba: ['MambaForCausalLM', 'MambaModel'],
  falcon_mamba: ['FalconMambaForCausalLM', 'FalconMambaModel'],
} as const;
type HfModelType = keyof typeof HF_ARCHITECTURES;

/** Which of the model types a config is (model_type, else its architectures; 'mamba' when neither says). */
function checkArchitecture(json: Json, source: string): HfModelType {
  const mt = json['model_type'];
  let type: HfModelType | undefined;
  if (mt !== undefined) {
    if (typeof mt !== 'string') fail(source, `key 'model_type' must be a string, found ${describeValue(mt)}`);
    if (mt !== 'mamba' && mt !== 'falcon_mamba') {
      const what = Object.hasOwn(UNSUPPORTED_MODEL_TYPES, mt) ? UNSUPPORTED_MODEL_TYPES[mt] : undefined;
      fail(
        source,
        `model_type '${mt}' is not supported${what ? ` (${what})` : ''}; expected 'mamba' (Mamba-1) or 'falcon_mamba' (Falcon-Mamba)`,
      );
    }
    type = mt;
  }
  const arch = json['architectures'];
  if (arch !== undefined && arch !== null) {
    if (!Array.isArray(arch) || !arch.every((a) => typeof a === 'string')) {
      fail(source, `key 'architectures' must be a list of strings, found ${describeValue(arch)}`);
    }
    const known = (a: string, t: HfModelType) => (HF_ARCHITECTURES[t] as readonly string[]).includes(a);
    const bad = (arch as string[]).filter((a) => !known(a, 'mamba') && !known(a, 'falcon_mamba'));
    if (bad.length > 0) {
      fail(
        source,
        `architecture(s) ${bad.map((a) => `'${a}'`).join(', ')} not supported; expected 'MambaForCausalLM' or 'FalconMambaForCausalLM'`,
      );
    }
    type ??= (arch as string[]).some((a) => known(a, 'falcon_mamba')) ? 'falcon_mamba' : 'mamba';
    const t = type;
    const other = (arch as string[]).filter((a) => !known(a, t));
    if (other.length > 0) {
      const why = mt === undefined ? 'each other' : `model_type '${t}'`;
      fail(
        source,
        `architecture(s) ${other.map((a) => `'${a}'`).join(', ')} disagree with ${why}; expected '${HF_ARCHITECTURES[t][0]}'`,
      );
    }
  }
  if (json['quantization_config'] !== undefined) {
    fail(source, `quantized checkpoints ('quantization_config') are not supported; expected f32/f16/bf16 weights`);
  }
  return type ?? 'mamba';
}

/** Check an ssm_cfg object (state-spaces layout, or a leftover in an HF config). */
function readSsmCfg(v: unknown, source: string, opts: ParseConfigOptions): Keys {
  if (v !== undefined && v !== null && !isObject(v)) {
    fail(source, `key 'ssm_cfg' must be an object, found ${describeValue(v)}`);
  }
  const ssm = (v ?? {}) as Json;
  checkUnknownKeys(ssm, new Set(SSM_CFG_KEYS), source, "'ssm_cfg'", opts);
  const layer = ssm['layer'];
  if (layer !== undefined && layer !== 'Mamba1') {
    fail(source, `ssm_cfg.layer ${describeValue(layer)} is not supported; expected "Mamba1" (Mamba-2 is not supported)`);
  }
  return new Keys(ssm, source, 'ssm_cfg.');
}

/** A size computed from other keys (expand * d_model, a padded vocabulary) must fit the engine too. */
function derived(source: string, what: string, v: number): number {
  if (v > MAX_CONFIG_SIZE) fail(source, `${what} = ${v} exceeds the engine's limit of ${MAX_CONFIG_SIZE}`);
  return v;
}

function agree(source: string, a: string, av: number, b: string, bv: number): void {
  if (av !== bv) fail(source, `inconsistent config: '${a}' = ${av} but '${b}' = ${bv}`);
}

function parseHf(json: Json, source: string, opts: ParseConfigOptions, type: HfModelType): MambaConfig {
  const falcon = type === 'falcon_mamba';
  checkUnknownKeys(
    json,
    falcon ? new Set([...KNOWN_CONFIG_KEYS.hf, ...HF_FALCON_MAMBA_CONFIG_KEYS]) : KNOWN_CONFIG_KEYS.hf,
    source,
    'config',
    opts,
  );
  const k = new Keys(json, source);
  const dModel = k.posInt('hidden_size');
  const nLayer = k.posInt('num_hidden_layers');
  const vocabSize = k.posInt('vocab_size');
  const dState = k.posInt('state_size', 16);
  const dConv = k.posInt('conv_kernel', 4);

  let dInner: number;
  const expandGiven = k.has('expand');
  const expand = expandGiven ? k.posInt('expand') : 2;
  if (k.has('intermediate_size')) {
    dInner = k.posInt('intermediate_size');
    // Falcon-Mamba's configs carry an `expand` their weights do not have (16 in falcon-mamba-7b,
    // whose in_proj has 2 * 8192 rows): transformers reads intermediate_size there, and so do we.
    if (expandGiven && !falcon && dInner !== expand * dModel) {
      fail(
        source,
        `inconsistent config: 'intermediate_size' = ${dInner} but 'expand' * 'hidden_size' = ${expand} * ${dModel} = ${expand * dModel}`,
      );
    }
  } else {
    dInner = derived(source, `'expand' * 'hidden_size' (${expand} * ${dModel})`, expand * dModel);
  }
  const rank = k.rankOrAuto('time_step_rank');
  const dtRank = rank === 'auto' ? Math.ceil(dModel / 16) : rank;

  const act = json['hidden_act'];
  if (act !== undefined && act !== 'silu' && act !== 'swish') {
    fail(source, `hidden_act ${describeValue(act)} is not supported; expected "silu"`);
  }
  // Leftovers of the state-spaces layout: accepted only when they agree.
  if (k.has('d_model')) agree(source, 'd_model', k.posInt('d_model'), 'hidden_size', dModel);
  if (k.has('n_layer')) agree(source, 'n_layer', k.posInt('n_layer'), 'num_hidden_layers', nLayer);
  if (k.has('d_inner')) agree(source, 'd_inner', k.posInt('d_inner'), 'intermediate_size', dInner);
  k.bool('fused_add_norm', true);
  k.bool('residual_in_fp32', true);
  k.nonNegInt('pad_vocab_size_multiple', 1);
  if (!k.bool('rms_norm', true)) {
    fail(source, `'rms_norm' = false (LayerNorm) is not supported; Mamba uses RMSNorm`);
  }
  if (k.has('ssm_cfg')) {
    const s = readSsmCfg(json['ssm_cfg'], source, opts);
    if (s.has('d_state')) agree(source, 'ssm_cfg.d_state', s.posInt('d_state'), 'state_size', dState);
    if (s.has('d_conv')) agree(source, 'ssm_cfg.d_conv', s.posInt('d_conv'), 'conv_kernel', dConv);
  }

  return {
    vocabSize,
    dModel,
    nLayer,
    dInner,
    dState,
    dtRank,
    dConv,
    convBias: k.bool('use_conv_bias', true),
    projBias: k.bool('use_bias', false),
    eps: k.posFloat('layer_norm_epsilon', 1e-5),
    tieEmbeddings: k.bool('tie_word_embeddings', true),
    ...(falcon ? { mixerRmsEps: k.posFloat('mixer_rms_eps', DEFAULT_MIXER_RMS_EPS) } : {}),
    bosTokenId: k.tokenId('bos_token_id'),
    eosTokenId: k.tokenId('eos_token_id'),
    padTokenId: k.tokenId('pad_token_id'),
  };
}

/** A vocabulary padded up to a multiple, as mamba_ssm's MambaLMHeadModel pads its embedding. */
function paddedVocab(source: string, key: string, raw: number, multiple: number): number {
  if (multiple <= 1) return raw;
  return derived(source, `'${key}' ${raw} padded to a multiple of ${multiple}`, Math.ceil(raw / multiple) * multiple);
}

/** The top level of a state-spaces (mamba_ssm MambaConfig) config, shared by Mamba-1 and Mamba-2. */
function stateSpacesTop(json: Json, source: string, opts: ParseConfigOptions) {
  checkUnknownKeys(json, KNOWN_CONFIG_KEYS['state-spaces'], source, 'config', opts);
  const k = new Keys(json, source);
  const dModel = k.posInt('d_model');
  const nLayer = k.posInt('n_layer');
  const vocabSize = paddedVocab(source, 'vocab_size', k.posInt('vocab_size'), k.nonNegInt('pad_vocab_size_multiple', 8));

  if (k.nonNegInt('d_intermediate', 0) !== 0) {
    fail(source, `'d_intermediate' = ${describeValue(json['d_intermediate'])}: blocks with an MLP are not supported; expected 0`);
  }
  const attn = json['attn_layer_idx'];
  if (attn !== undefined && attn !== null && !(Array.isArray(attn) && attn.length === 0)) {
    fail(source, `'attn_layer_idx' = ${describeValue(attn)}: hybrid attention layers are not supported; expected []`);
  }
  const attnCfg = json['attn_cfg'];
  if (attnCfg !== undefined && attnCfg !== null && !isObject(attnCfg)) {
    fail(source, `key 'attn_cfg' must be an object, found ${describeValue(attnCfg)}`);
  }
  if (!k.bool('rms_norm', true)) {
    fail(source, `'rms_norm' = false (LayerNorm) is not supported; Mamba uses RMSNorm`);
  }
  k.bool('residual_in_fp32', true);
  k.bool('fused_add_norm', true);
  return {
    dModel,
    nLayer,
    vocabSize,
    eps: k.posFloat('norm_epsilon', 1e-5),
    tieEmbeddings: k.bool('tie_embeddings', true),
    // mamba_ssm's config names no special tokens
    bosTokenId: null,
    eosTokenId: null,
    padTokenId: null,
  };
}

/** The biases of a state-spaces ssm_cfg (the Mamba and Mamba2 modules name them alike). */
function ssmBiases(s: Keys): { convBias: boolean; projBias: boolean } {
  return { convBias: s.bool('conv_bias', true), projBias: s.bool('bias', false) };
}

function parseStateSpaces(json: Json, source: string, opts: ParseConfigOptions): MambaConfig {
  const top = stateSpacesTop(json, source, opts);
  const s = readSsmCfg(json['ssm_cfg'], source, opts);
  const dState = s.posInt('d_state', 16);
  const dConv = s.posInt('d_conv', 4);
  const expand = s.posInt('expand', 2);
  const rank = s.rankOrAuto('dt_rank');

  return {
    ...top,
    dInner: derived(source, `'ssm_cfg.expand' * 'd_model' (${expand} * ${top.dModel})`, expand * top.dModel),
    dState,
    dtRank: rank === 'auto' ? Math.ceil(top.dModel / 16) : rank,
    dConv,
    ...ssmBiases(s),
  };
}

// ---------------------------------------------------------------------------------------------
// Mamba-2

/**
 * A Mamba-2 (SSD) model's shape, from any of the three layouts its configs come in. The fields it
 * shares with MambaConfig mean the same; dInner = nHeads * headDim (= expand * dModel), eps is the
 * RMSNorm epsilon of the block norms and norm_f, and dt has one value per head (no dtRank).
 */
export interface Mamba2Config extends Omit<MambaConfig, 'dtRank'> {
  /** The file layout it was read from. */
  layout: ConfigLayout;
  nHeads: number;
  headDim: number;
  /** Groups of B and C; head h reads group floor(h / (nHeads / nGroups)). */
  nGroups: number;
  /** The SSD chunk length the config names (chunk_size); the outputs do not depend on it. */
  chunkSize: number;
  /** dt is clamped to [low, high] after the softplus (time_step_limit / dt_limit). */
  dtLimit: [number, number];
}

/** A [low, high] clamp of dt: 0 <= low <= high, high may be Infinity (the Python configs write it so). */
function readDtLimit(v: unknown, key: string, source: string): [number, number] {
  if (v === undefined || v === null) return [0, Infinity];
  const ok =
    Array.isArray(v) &&
    v.length === 2 &&
    v.every((x) => typeof x === 'number' && !Number.isNaN(x)) &&
    v[0] >= 0 &&
    v[0] < Infinity &&
    v[1] >= v[0];
  if (!ok) {
    const shown = Array.isArray(v) && v.every((x) => typeof x === 'number') ? `[${v.join(', ')}]` : describeValue(v);
    fail(source, `key '${key}' must be [low, high] with 0 <= low <= high (high may be Infinity), found ${shown}`);
  }
  return [v[0] as number, v[1] as number];
}

/** Heads from the inner width and head_dim, and their grouping, checked. */
function heads(source: string, dInner: number, headDim: number, nGroups: number, names: [string, string, string]): number {
  const [inner, hd, ng] = names;
  if (dInner % headDim !== 0) fail(source, `${inner} = ${dInner} is not a multiple of '${hd}' = ${headDim}`);
  const nHeads = dInner / headDim;
  if (nHeads % nGroups !== 0) fail(source, `the ${nHeads} heads do not split into '${ng}' = ${nGroups} groups`);
  return nHeads;
}

function parseHfMamba2(json: Json, source: string, opts: ParseConfigOptions): Mamba2Config {
  checkUnknownKeys(json, new Set([...HF_GENERIC_CONFIG_KEYS, ...HF_MAMBA2_CONFIG_KEYS]), source, 'config', opts);
  const mt = json['model_type'];
  if (mt !== undefined && mt !== 'mamba2')
    fail(source, `model_type ${describeValue(mt)} with a Mamba-2 architecture; expected 'mamba2'`);
  const arch = json['architectures'];
  if (arch !== undefined && arch !== null) {
    const bad = Array.isArray(arch) ? arch.filter((a) => a !== 'Mamba2ForCausalLM' && a !== 'Mamba2Model') : [arch];
    if (bad.length > 0)
      fail(source, `architecture(s) ${describeValue(bad)} with model_type 'mamba2'; expected 'Mamba2ForCausalLM'`);
  }
  const act = json['hidden_act'];
  if (act !== undefined && act !== 'silu' && act !== 'swish') {
    fail(source, `hidden_act ${describeValue(act)} is not supported; expected "silu"`);
  }
  const k = new Keys(json, source);
  const dModel = k.posInt('hidden_size');
  const expand = k.posInt('expand', 2);
  const dInner = derived(source, `'expand' * 'hidden_size' (${expand} * ${dModel})`, expand * dModel);
  if (k.has('intermediate_size'))
    agree(source, 'intermediate_size', k.posInt('intermediate_size'), 'expand * hidden_size', dInner);
  // transformers' defaults where a key is absent
  const headDim = k.posInt('head_dim', 64);
  const nGroups = k.posInt('n_groups', 8);
  const nHeads = k.posInt('num_heads');
  agree(source, 'num_heads * head_dim', nHeads * headDim, 'expand * hidden_size', dInner);
  heads(source, dInner, headDim, nGroups, ["'expand' * 'hidden_size'", 'head_dim', 'n_groups']);
  if (!k.bool('rms_norm', true)) fail(source, `'rms_norm' = false (no gated RMSNorm) is not supported`);
  k.bool('residual_in_fp32', true);
  k.bool('norm_before_gate', false); // transformers ignores it: the gate always comes first
  k.rankOrAuto('time_step_rank'); // unused by Mamba-2 (dt has one value per head)
  return {
    layout: 'hf',
    vocabSize: k.posInt('vocab_size'),
    dModel,
    nLayer: k.posInt('num_hidden_layers'),
    dInner,
    nHeads,
    headDim,
    nGroups,
    dState: k.posInt('state_size', 128),
    dConv: k.posInt('conv_kernel', 4),
    chunkSize: k.posInt('chunk_size', 256),
    dtLimit: readDtLimit(json['time_step_limit'], 'time_step_limit', source),
    convBias: k.bool('use_conv_bias', true),
    projBias: k.bool('use_bias', false),
    eps: k.posFloat('layer_norm_epsilon', 1e-5),
    tieEmbeddings: k.bool('tie_word_embeddings', false),
    bosTokenId: k.tokenId('bos_token_id'),
    eosTokenId: k.tokenId('eos_token_id'),
    padTokenId: k.tokenId('pad_token_id'),
  };
}

/** The parts of mamba_ssm's Mamba2 module outside the reference (modules/mamba2.py) are refused by name. */
function parseStateSpacesMamba2(json: Json, source: string, opts: ParseConfigOptions): Mamba2Config {
  const top = stateSpacesTop(json, source, opts);
  const ssm = json['ssm_cfg'] as Json; // an object: detectFamily saw its layer
  checkUnknownKeys(ssm, new Set(MAMBA2_SSM_CFG_KEYS), source, "'ssm_cfg'", opts);
  const s = new Keys(ssm, source, 'ssm_cfg.');
  const expand = s.posInt('expand', 2);
  const dInner = derived(source, `'ssm_cfg.expand' * 'd_model' (${expand} * ${top.dModel})`, expand * top.dModel);
  if (s.has('d_ssm') && s.posInt('d_ssm') !== dInner)
    fail(
      source,
      `'ssm_cfg.d_ssm' = ${describeValue(ssm['d_ssm'])}: a gated MLP beside the SSM is not supported; expected ${dInner} or null`,
    );
  if (s.bool('D_has_hdim', false)) fail(source, `'ssm_cfg.D_has_hdim' = true (D per channel) is not supported; expected false`);
  if (!s.bool('rmsnorm', true)) fail(source, `'ssm_cfg.rmsnorm' = false (no gated RMSNorm) is not supported`);
  if (s.bool('norm_before_gate', false))
    fail(source, `'ssm_cfg.norm_before_gate' = true is not supported; expected false (the gate before the norm)`);
  s.bool('use_mem_eff_path', true);
  const headDim = s.posInt('headdim', 64);
  const nGroups = s.posInt('ngroups', 1);
  return {
    ...top,
    layout: 'state-spaces',
    dInner,
    nHeads: heads(source, dInner, headDim, nGroups, ["'ssm_cfg.expand' * 'd_model'", 'ssm_cfg.headdim', 'ssm_cfg.ngroups']),
    headDim,
    nGroups,
    dState: s.posInt('d_state', 128),
    dConv: s.posInt('d_conv', 4),
    chunkSize: s.posInt('chunk_size', 256),
    dtLimit: readDtLimit(ssm['dt_limit'], 'ssm_cfg.dt_limit', source),
    ...ssmBiases(s),
  };
}

/** A Mistral params.json of a transformer (Mistral 7B, Mixtral, ...) is named as such. */
function notATransformer(json: Json, source: string): void {
  const transformer = ['n_heads', 'n_kv_heads', 'head_dim', 'hidden_dim'].filter((key) => key in json);
  if (transformer.length === 0) return;
  const keys = transformer.map((key) => `'${key}'`).join(', ');
  fail(source, `a Mistral transformer's params.json (${keys}), not a Mamba model; simba-ssm runs Mamba models only`);
}

/** Mistral's params.json (Mamba-Codestral): mistral_inference hands it to mamba_ssm's Mamba2 with its defaults. */
function parseMistralMamba(json: Json, source: string, opts: ParseConfigOptions): Mamba2Config {
  notATransformer(json, source);
  checkUnknownKeys(json, KNOWN_CONFIG_KEYS.mistral, source, 'params.json', opts);
  const mt = json['model_type'];
  if (mt !== undefined && mt !== 'mamba')
    fail(source, `model_type ${describeValue(mt)} in a Mamba params.json; expected 'mamba'`);
  const k = new Keys(json, source);
  const dModel = k.posInt('dim');
  const nGroups = k.posInt('n_groups');
  if (!k.bool('rms_norm', true)) fail(source, `'rms_norm' = false (LayerNorm) is not supported; Mamba uses RMSNorm`);
  k.bool('residual_in_fp32', true);
  k.bool('fused_add_norm', true);
  const dInner = derived(source, `2 * 'dim' (2 * ${dModel})`, 2 * dModel);
  return {
    layout: 'mistral',
    vocabSize: paddedVocab(source, 'vocab_size', k.posInt('vocab_size'), k.nonNegInt('pad_vocab_size_multiple', 1)),
    dModel,
    nLayer: k.posInt('n_layers'),
    dInner,
    nHeads: heads(source, dInner, 64, nGroups, ["2 * 'dim'", 'head_dim 64', 'n_groups']),
    headDim: 64,
    nGroups,
    dState: 128,
    dConv: 4,
    chunkSize: 256,
    dtLimit: [0, Infinity],
    convBias: true,
    projBias: false,
    eps: 1e-5,
    tieEmbeddings: k.bool('tie_embeddings', true),
    bosTokenId: null,
    eosTokenId: null,
    padTokenId: null,
  };
}

/**
 * A Mamba-2 config (HF Mamba2ForCausalLM config.json, a state-spaces config.json with
 * `ssm_cfg.layer: "Mamba2"`, or Mistral's params.json) as a Mamba2Config, validated as strictly
 * as parseConfig validates Mamba-1 configs. E_CONFIG for a config of another family.
 * @example parseMamba2Config(JSON.parse(paramsJson), 'params.json').nHeads  // 128 for Mamba-Codestral-7B
 */
export function parseMamba2Config(json: unknown, source: string, options?: ParseConfigOptions): Mamba2Config {
  const opts = checkParseConfigOptions('parseMamba2Config', options);
  if (!isObject(json)) fail(source, `expected a JSON object, found ${Array.isArray(json) ? 'an array' : describeValue(json)}`);
  if (detectFamily(json) !== 'mamba2') fail(source, 'not a Mamba-2 config (a Mamba-1 config: read it with parseConfig)');
  const layout = detectLayout(json);
  if (layout === 'mistral') return parseMistralMamba(json, source, opts);
  return layout === 'hf' ? parseHfMamba2(json, source, opts) : parseStateSpacesMamba2(json, source, opts);
}

/** A Mamba2Config as the engine's MambaConfig: the Mamba-2 fields under `mamba2`, dtRank 0. */
function mamba2ModelConfig(c: Mamba2Config): MambaConfig {
  const { layout: _layout, nHeads, headDim, nGroups, chunkSize, dtLimit, ...common } = c;
  return { ...common, dtRank: 0, mamba2: { nHeads, headDim, nGroups, chunkSize, dtLimit: [dtLimit[0], dtLimit[1]] } };
}

/**
 * Normalise a parsed config (HF or state-spaces config.json, Mistral's params.json) of any family
 * into a MambaConfig. `source` names the file in error messages.
 */
export function parseConfig(json: unknown, source: string, options?: ParseConfigOptions): MambaConfig {
  if (typeof source !== 'string')
    throw v.argError('parseConfig', `source must be a string (a file name for messages), got ${v.describeType(source)}`);
  const opts = checkParseConfigOptions('parseConfig', options);
  if (!isObject(json)) {
    fail(source, `expected a JSON object, found ${Array.isArray(json) ? 'an array' : describeValue(json)}`);
  }
  if (detectLayout(json) === 'mistral') notATransformer(json, source);
  if (detectFamily(json) === 'mamba2') return mamba2ModelConfig(parseMamba2Config(json, source, opts));
  const type = checkArchitecture(json, source);
  return detectLayout(json) === 'hf' ? parseHf(json, source, opts, type) : parseStateSpaces(json, source, opts);
}

/** Read and parse `config.json` (or Mistral's `params.json`) from a model directory, or the given .json file. */
export function loadConfig(dirOrFile: string, options?: ParseConfigOptions): MambaConfig {
  const opts = checkParseConfigOptions('loadConfig', options);
  if (typeof dirOrFile !== 'string')
    throw v.argError('loadConfig', `the path must be a string, got ${v.describeType(dirOrFile)}`);
  let file = dirOrFile;
  try {
    if (fs.statSync(dirOrFile).isDirectory()) {
      file = path.join(dirOrFile, 'config.json');
      const params = path.join(dirOrFile, 'params.json');
      if (!fs.existsSync(file) && fs.existsSync(params)) file = params;
    }
  } catch (e) {
    throw new SimbaError('E_IO', `${dirOrFile}: model directory or config file not found`, { cause: e });
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SimbaError('E_IO', `${file}: cannot read config (${(e as Error).message})`, { cause: e });
  }
  return parseConfig(parsePythonJson(text, file), file, opts);
}

// ---------------------------------------------------------------------------------------------
// JSON as Python writes it

/** Deeper nesting than any config has; bounds the parser's recursion. */
const MAX_JSON_DEPTH = 256;

// eslint-disable-next-line no-control-regex -- JSON strings may not hold raw control characters
const JSON_STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const JSON_NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const BARE_WORD = /-?[A-Za-z_][A-Za-z0-9_]*/y;
const BARE_VALUES: ReadonlyMap<string, unknown> = new Map<string, unknown>([
  ['true', true],
  ['false', false],
  ['null', null],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
]);

/**
 * JSON text as Python's json.dump writes it: strict JSON plus the bare values NaN, Infinity and
 * -Infinity (transformers writes `"time_step_limit": [0.0, Infinity]`). Only bare values: inside
 * strings nothing changes. Anything else malformed is an E_CONFIG naming the line and column.
 * @example parsePythonJson('{"time_step_limit": [0.0, Infinity]}', 'config.json')  // { time_step_limit: [0, Infinity] }
 */
export function parsePythonJson(text: string, source: string): unknown {
  let at = text.charCodeAt(0) === 0xfeff ? 1 : 0; // a byte order mark some editors add
  const bad = (what: string): never => {
    const before = text.slice(0, at);
    const line = before.split('\n').length;
    const column = at - before.lastIndexOf('\n');
    throw new SimbaError('E_CONFIG', `${source}: not valid JSON at line ${line}, column ${column}: ${what}`);
  };
  const space = (): void => {
    while (at < text.length && ' \t\n\r'.includes(text[at])) at++;
  };
  const match = (re: RegExp): string | null => {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) return null;
    at += m[0].length;
    return m[0];
  };
  const shown = (): string =>
    at >= text.length ? 'the end of the text' : `'${text.slice(at, at + 12).split(/[\s,:[\]{}]/)[0] || text[at]}'`;
  const value = (depth: number): unknown => {
    if (depth > MAX_JSON_DEPTH) bad(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    space();
    const c = text[at];
    if (c === '{' || c === '[') return container(c, depth);
    if (c === '"') {
      const str = match(JSON_STRING);
      if (str === null) bad('a string that is not closed, or holds a control character or a bad escape');
      return JSON.parse(str as string);
    }
    const word = match(BARE_WORD);
    if (word !== null) {
      if (!BARE_VALUES.has(word)) {
        at -= word.length;
        bad(`unexpected '${word}' (bare values are true, false, null and Python's NaN, Infinity, -Infinity)`);
      }
      return BARE_VALUES.get(word);
    }
    const num = match(JSON_NUMBER);
    if (num === null) bad(`expected a value, found ${shown()}`);
    return Number(num);
  };
  const container = (open: '{' | '[', depth: number): unknown => {
    at++;
    const close = open === '{' ? '}' : ']';
    const arr: unknown[] = [];
    const obj: Record<string, unknown> = {};
    space();
    if (text[at] === close) {
      at++;
      return open === '{' ? obj : arr;
    }
    for (;;) {
      if (open === '[') arr.push(value(depth + 1));
      else {
        space();
        if (text[at] !== '"') bad(`expected a key in double quotes, found ${shown()}`);
        const key = value(depth + 1) as string;
        space();
        if (text[at] !== ':') bad(`expected ':' after the key "${key}", found ${shown()}`);
        at++;
        // an own property even for '__proto__', as JSON.parse makes it
        Object.defineProperty(obj, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
      }
      space();
      if (text[at] === ',') {
        at++;
        continue;
      }
      if (text[at] === close) {
        at++;
        return open === '{' ? obj : arr;
      }
      bad(`expected ',' or '${close}', found ${shown()}`);
    }
  };
  const result = value(0);
  space();
  if (at < text.length) bad(`unexpected ${shown()} after the value`);
  return result;
}
