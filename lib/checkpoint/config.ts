/**
 * config.json -> MambaConfig, for both layouts:
 *   - Hugging Face `MambaForCausalLM` (hidden_size, num_hidden_layers, state_size, ...)
 *   - the original state-spaces/mamba layout (d_model, n_layer, ssm_cfg, pad_vocab_size_multiple, ...)
 *
 * Validation is strict: missing required keys, wrongly typed or non-positive sizes, inconsistent
 * duplicates (HF configs often carry both intermediate_size and expand, or leftover d_model / n_layer),
 * unsupported architectures (mamba2, falcon_mamba, hybrids) and unknown keys are errors. Unknown keys
 * become warnings with `{ allowUnknownKeys: true }`.
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

export type ConfigLayout = 'hf' | 'state-spaces';

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

/** The full allowlists, per layout. */
export const KNOWN_CONFIG_KEYS: Readonly<Record<ConfigLayout, ReadonlySet<string>>> = {
  hf: new Set([...HF_GENERIC_CONFIG_KEYS, ...HF_MAMBA_CONFIG_KEYS]),
  'state-spaces': new Set(STATE_SPACES_CONFIG_KEYS),
};

const UNSUPPORTED_MODEL_TYPES: Record<string, string> = {
  mamba2: 'Mamba-2 (SSD) models',
  falcon_mamba: 'Falcon-Mamba models (extra RMS norms inside the mixer)',
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

/** Which layout a parsed config.json uses. */
export function detectLayout(json: Json): ConfigLayout {
  const hfMarkers = ['hidden_size', 'num_hidden_layers', 'model_type', 'architectures', 'state_size'];
  if (hfMarkers.some((k) => k in json)) return 'hf';
  if ('d_model' in json || 'n_layer' in json || 'ssm_cfg' in json) return 'state-spaces';
  return 'hf';
}

function checkArchitecture(json: Json, source: string): void {
  const mt = json['model_type'];
  if (mt !== undefined) {
    if (typeof mt !== 'string') fail(source, `key 'model_type' must be a string, found ${describeValue(mt)}`);
    if (mt !== 'mamba') {
      const what = Object.hasOwn(UNSUPPORTED_MODEL_TYPES, mt) ? UNSUPPORTED_MODEL_TYPES[mt] : undefined;
      fail(source, `model_type '${mt}' is not supported${what ? ` (${what})` : ''}; expected 'mamba' (Mamba-1)`);
    }
  }
  const arch = json['architectures'];
  if (arch !== undefined && arch !== null) {
    if (!Array.isArray(arch) || !arch.every((a) => typeof a === 'string')) {
      fail(source, `key 'architectures' must be a list of strings, found ${describeValue(arch)}`);
    }
    const bad = (arch as string[]).filter((a) => a !== 'MambaForCausalLM' && a !== 'MambaModel');
    if (bad.length > 0) {
      fail(source, `architecture(s) ${bad.map((a) => `'${a}'`).join(', ')} not supported; expected 'MambaForCausalLM'`);
    }
  }
  if (json['quantization_config'] !== undefined) {
    fail(source, `quantized checkpoints ('quantization_config') are not supported; expected f32/f16/bf16 weights`);
  }
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

function parseHf(json: Json, source: string, opts: ParseConfigOptions): MambaConfig {
  checkUnknownKeys(json, KNOWN_CONFIG_KEYS.hf, source, 'config', opts);
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
    if (expandGiven && dInner !== expand * dModel) {
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
    bosTokenId: k.tokenId('bos_token_id'),
    eosTokenId: k.tokenId('eos_token_id'),
    padTokenId: k.tokenId('pad_token_id'),
  };
}

function parseStateSpaces(json: Json, source: string, opts: ParseConfigOptions): MambaConfig {
  checkUnknownKeys(json, KNOWN_CONFIG_KEYS['state-spaces'], source, 'config', opts);
  const k = new Keys(json, source);
  const dModel = k.posInt('d_model');
  const nLayer = k.posInt('n_layer');
  const rawVocab = k.posInt('vocab_size');
  const multiple = k.nonNegInt('pad_vocab_size_multiple', 8);
  const vocabSize =
    multiple > 1
      ? derived(source, `'vocab_size' ${rawVocab} padded to a multiple of ${multiple}`, Math.ceil(rawVocab / multiple) * multiple)
      : rawVocab;

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

  const s = readSsmCfg(json['ssm_cfg'], source, opts);
  const dState = s.posInt('d_state', 16);
  const dConv = s.posInt('d_conv', 4);
  const expand = s.posInt('expand', 2);
  const rank = s.rankOrAuto('dt_rank');

  return {
    vocabSize,
    dModel,
    nLayer,
    dInner: derived(source, `'ssm_cfg.expand' * 'd_model' (${expand} * ${dModel})`, expand * dModel),
    dState,
    dtRank: rank === 'auto' ? Math.ceil(dModel / 16) : rank,
    dConv,
    convBias: s.bool('conv_bias', true),
    projBias: s.bool('bias', false),
    eps: k.posFloat('norm_epsilon', 1e-5),
    tieEmbeddings: k.bool('tie_embeddings', true),
    bosTokenId: null,
    eosTokenId: null,
    padTokenId: null,
  };
}

/**
 * Normalise a parsed config.json (either layout) into a MambaConfig.
 * `source` names the file in error messages.
 */
export function parseConfig(json: unknown, source: string, options?: ParseConfigOptions): MambaConfig {
  if (typeof source !== 'string')
    throw v.argError('parseConfig', `source must be a string (a file name for messages), got ${v.describeType(source)}`);
  const opts = checkParseConfigOptions('parseConfig', options);
  if (!isObject(json)) {
    fail(source, `expected a JSON object, found ${Array.isArray(json) ? 'an array' : describeValue(json)}`);
  }
  checkArchitecture(json, source);
  return detectLayout(json) === 'hf' ? parseHf(json, source, opts) : parseStateSpaces(json, source, opts);
}

/** Read and parse `config.json` from a model directory (or the given .json file). */
export function loadConfig(dirOrFile: string, options?: ParseConfigOptions): MambaConfig {
  const opts = checkParseConfigOptions('loadConfig', options);
  if (typeof dirOrFile !== 'string')
    throw v.argError('loadConfig', `the path must be a string, got ${v.describeType(dirOrFile)}`);
  let file = dirOrFile;
  try {
    if (fs.statSync(dirOrFile).isDirectory()) file = path.join(dirOrFile, 'config.json');
  } catch (e) {
    throw new SimbaError('E_IO', `${dirOrFile}: model directory or config file not found`, { cause: e });
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SimbaError('E_IO', `${file}: cannot read config (${(e as Error).message})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SimbaError('E_CONFIG', `${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return parseConfig(json, file, opts);
}
