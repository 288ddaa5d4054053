/**
 * A GGUF file (lib/checkpoint/gguf.ts) as a model: its config (the `{arch}.*` keys of llama.cpp's
 * `mamba` and `mamba2` architectures; `mamba.ssm.dt_b_c_rms` = Falcon-Mamba), its tensors mapped by
 * name onto the engine's tensor table, its tokenizer (`tokenizer.ggml.*`, byte-level BPE) and its
 * chat template (`tokenizer.chat_template`).
 *
 * Tensor names (llama.cpp), row-major shapes = ggml's ne reversed:
 *   token_embd.weight [V, d], output_norm.weight [d], output.weight [V, d] (absent: tied)
 *   blk.N.attn_norm.weight [d], ssm_in.weight [in_proj rows, d], ssm_conv1d.weight [CH, K],
 *   ssm_conv1d.bias [CH], ssm_out.weight [d, E]
 *   mamba:  ssm_x.weight [R + 2N, E], ssm_dt.weight [E, R], ssm_dt.bias [E], ssm_a [E, N] = -exp(A_log),
 *           ssm_d [E]
 *   mamba2: ssm_dt.bias [H], ssm_a [H, 1] = -exp(A_log), ssm_d [H, 1], ssm_norm.weight [G, E / G]
 */
import type { EngineTensorName, EngineTensorSpec, MambaConfig, WeightFormat } from '../types';
import { SimbaError } from '../errors';
import { DEFAULT_MIXER_RMS_EPS } from './config';
import { chatTemplate, PLAIN_CHAT_TEMPLATE, type ChatTemplate } from './chat_template';
import type { GgufFile, GgufTensorInfo, GgufTensorType, GgufValue } from './gguf';
import { Tokenizer } from './tokenizer';

/** Mamba-2's SSD chunk length when the file does not say (GGUF has no key; results do not depend on it). */
const MAMBA2_CHUNK = 256;
/** The engine holds sizes as 32-bit integers. */
const MAX_SIZE = 2 ** 30 - 1;

function configError(g: GgufFile, msg: string): never {
  throw new SimbaError('E_CONFIG', `${g.path}: ${msg}`);
}

function key(g: GgufFile, k: string): GgufValue | undefined {
  return Object.hasOwn(g.metadata, k) ? g.metadata[k] : undefined;
}

/** A positive integer metadata value (u32 / u64), required unless a fallback is given. */
function intKey(g: GgufFile, k: string, fallback?: number, min = 1): number {
  const val = key(g, k);
  if (val === undefined) {
    if (fallback !== undefined) return fallback;
    configError(g, `metadata key '${k}' is missing`);
  }
  const n = typeof val === 'bigint' ? Number(val) : val;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > MAX_SIZE)
    configError(g, `metadata '${k}' must be an integer from ${min} to ${MAX_SIZE}, found ${String(val)}`);
  return n;
}

/** The shortest decimal that is the same float32 (GGUF stores 1e-5 as 9.99999974737875e-6). */
function shortestF32(x: number): number {
  for (let p = 1; p < 9; p++) {
    const d = Number(x.toPrecision(p));
    if (Math.fround(d) === x) return d;
  }
  return x;
}

/** The architecture a GGUF file declares: 'mamba' (Mamba-1, Falcon-Mamba) or 'mamba2'. */
function architecture(g: GgufFile): 'mamba' | 'mamba2' {
  const arch = key(g, 'general.architecture');
  if (arch === 'mamba' || arch === 'mamba2') return arch;
  if (typeof arch !== 'string') configError(g, "metadata key 'general.architecture' is missing");
  return configError(g, `architecture '${arch}' is not supported (expected 'mamba' or 'mamba2')`);
}

/** The token id a metadata key names, or null. */
function tokenId(g: GgufFile, k: string, vocab: number): number | null {
  if (key(g, k) === undefined) return null;
  const id = intKey(g, k, undefined, 0);
  if (id >= vocab) configError(g, `metadata '${k}' = ${id} is not a token id (vocabulary ${vocab})`);
  return id;
}

/**
 * The model config of a GGUF file, from its metadata and the embedding's shape. Falcon-Mamba's mixer
 * norms take HF's default epsilon (1e-6): GGUF has no key for it.
 */
export function ggufConfig(g: GgufFile): MambaConfig {
  const arch = architecture(g);
  const emb = g.tensors.get('token_embd.weight');
  if (!emb || emb.shape.length !== 2) configError(g, "tensor 'token_embd.weight' [vocab, d_model] is missing");
  const vocabSize = emb.shape[0];
  const dModel = intKey(g, `${arch}.embedding_length`);
  const nLayer = intKey(g, `${arch}.block_count`);
  const dInner = intKey(g, `${arch}.ssm.inner_size`);
  const dState = intKey(g, `${arch}.ssm.state_size`);
  const rank = intKey(g, `${arch}.ssm.time_step_rank`);
  const dConv = intKey(g, `${arch}.ssm.conv_kernel`);
  const epsVal = key(g, `${arch}.attention.layer_norm_rms_epsilon`);
  const eps = typeof epsVal === 'number' && epsVal > 0 && epsVal < 1 ? shortestF32(epsVal) : 1e-5;
  if (epsVal !== undefined && Math.fround(eps) !== epsVal)
    configError(g, `metadata '${arch}.attention.layer_norm_rms_epsilon' must be a number in (0, 1), found ${String(epsVal)}`);
  const convBias = g.tensors.has('blk.0.ssm_conv1d.bias');
  const base = {
    vocabSize,
    dModel,
    nLayer,
    dInner,
    dState,
    dConv,
    convBias,
    projBias: false,
    eps,
    tieEmbeddings: !g.tensors.has('output.weight'),
    bosTokenId: tokenId(g, 'tokenizer.ggml.bos_token_id', vocabSize),
    eosTokenId: tokenId(g, 'tokenizer.ggml.eos_token_id', vocabSize),
    padTokenId: tokenId(g, 'tokenizer.ggml.padding_token_id', vocabSize),
  };
  if (arch === 'mamba') {
    const rms = key(g, 'mamba.ssm.dt_b_c_rms');
    if (rms !== undefined && typeof rms !== 'boolean')
      configError(g, `metadata 'mamba.ssm.dt_b_c_rms' must be a boolean, found ${String(rms)}`);
    return { ...base, dtRank: rank, ...(rms === true ? { mixerRmsEps: DEFAULT_MIXER_RMS_EPS } : {}) };
  }
  const nGroups = intKey(g, 'mamba2.ssm.group_count', 1);
  if (dInner % rank !== 0) configError(g, `mamba2.ssm.inner_size ${dInner} is not a multiple of the ${rank} heads`);
  if (rank % nGroups !== 0) configError(g, `the ${rank} heads do not split into mamba2.ssm.group_count ${nGroups} groups`);
  return {
    ...base,
    dtRank: 0,
    mamba2: { nHeads: rank, headDim: dInner / rank, nGroups, chunkSize: MAMBA2_CHUNK, dtLimit: [0, Infinity] },
  };
}

/** GGUF name (after `blk.N.` for per-layer tensors) of each engine tensor. */
const GGUF_NAMES: Partial<Record<EngineTensorName, string>> = {
  embedding: 'token_embd.weight',
  norm_f: 'output_norm.weight',
  lm_head: 'output.weight',
  norm: 'attn_norm.weight',
  in_proj: 'ssm_in.weight',
  conv_w: 'ssm_conv1d.weight',
  conv_b: 'ssm_conv1d.bias',
  x_proj: 'ssm_x.weight',
  dt_proj_w: 'ssm_dt.weight',
  dt_proj_b: 'ssm_dt.bias',
  A_log: 'ssm_a',
  D: 'ssm_d',
  out_proj: 'ssm_out.weight',
  dt_bias: 'ssm_dt.bias',
  gate_norm: 'ssm_norm.weight',
};

/** One engine tensor read from the file: what setTensorsFromFiles takes, plus the names for messages. */
export interface GgufPlanEntry {
  name: EngineTensorName;
  layer: number;
  tensor: GgufTensorInfo;
  /** ssm_a holds A = -exp(A_log): the engine takes log(-A). */
  transform?: 'logOfNegated';
}

const squeeze = (s: readonly number[]): number[] => s.filter((d) => d !== 1);
const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Whether a GGUF tensor's shape holds the engine tensor (1-dims aside; Mamba-2's grouped norm as [G, E/G]). */
function shapeFits(spec: EngineTensorSpec, t: GgufTensorInfo, config: MambaConfig): boolean {
  if (same(squeeze(t.shape), squeeze(spec.shape))) return true;
  const G = config.mamba2?.nGroups ?? 1;
  return spec.name === 'gate_norm' && same(t.shape, [G, config.dInner / G]);
}

function listNames(names: string[], max = 20): string {
  const shown = names.slice(0, max).map((n) => `'${n}'`);
  return shown.join(', ') + (names.length > max ? ` and ${names.length - max} more` : '');
}

/**
 * Every engine tensor of the table from the file, in the table's order, checked from the header
 * alone: E_WEIGHTS for missing or unexpected tensors (one error listing them all), E_SHAPE when the
 * only problems are shapes.
 */
export function planGgufWeights(g: GgufFile, config: MambaConfig, table: readonly EngineTensorSpec[]): GgufPlanEntry[] {
  const missing: string[] = [];
  const shapes: string[] = [];
  const used = new Set<string>();
  const entries: GgufPlanEntry[] = [];
  for (const spec of table) {
    if (!spec.required) continue;
    const base = GGUF_NAMES[spec.name];
    if (base === undefined) {
      missing.push(`${spec.name} (layer ${spec.layer}: GGUF has no tensor for it)`);
      continue;
    }
    const name = spec.layer >= 0 ? `blk.${spec.layer}.${base}` : base;
    const t = g.tensors.get(name);
    if (!t) {
      missing.push(name);
      continue;
    }
    used.add(name);
    if (!shapeFits(spec, t, config)) {
      shapes.push(`'${name}' expected ${fmt(spec.shape)}, found ${fmt(t.shape)}`);
      continue;
    }
    entries.push({ name: spec.name, layer: spec.layer, tensor: t, ...(spec.name === 'A_log' && { transform: 'logOfNegated' }) });
  }
  const unexpected = [...g.tensors.keys()].filter((n) => !used.has(n));
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing tensor(s) ${listNames(missing)}`);
  if (unexpected.length > 0) problems.push(`unexpected tensor(s) ${listNames(unexpected)}`);
  if (shapes.length > 0) problems.push(`shape mismatch with the metadata: ${shapes.slice(0, 20).join('; ')}`);
  if (problems.length > 0)
    throw new SimbaError(missing.length + unexpected.length > 0 ? 'E_WEIGHTS' : 'E_SHAPE', `${g.path}: ${problems.join('. ')}`);
  return entries;
}

/** The engine's storage matching the file's matrices (those of blk.0.ssm_in.weight): see README "GGUF files". */
export function ggufWeightFormat(g: GgufFile, formats: readonly WeightFormat[]): WeightFormat {
  const t: GgufTensorType = g.tensors.get('blk.0.ssm_in.weight')?.type ?? 'F32';
  if (t === 'F32') return 'f32';
  if (t === 'F16' || t === 'BF16') return 'bf16';
  // 4-bit types keep their bits in int4; Q5_K / Q6_K would lose one or two in it: int8
  if (t === 'Q8_0' || t === 'Q5_K' || t === 'Q6_K') return 'int8';
  return (formats as readonly string[]).includes('int4') ? ('int4' as WeightFormat) : 'int8';
}

// llama.cpp's token types (llama_token_type)
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_UNUSED = 5;
const TOKEN_BYTE = 6;

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };

/**
 * How llama.cpp splits text before BPE for each tokenizer.ggml.pre value we read (its
 * llama-vocab.cpp), as a tokenizer.json normalizer and pre-tokenizer.
 *   - 'gpt-2', 'mpt', 'olmo': GPT-2's byte-level regex; GPT-NeoX's families normalize to NFC.
 *   - 'falcon' (Falcon-Mamba): three splits in turn, each keeping both its matches and the text
 *     between them: runs of punctuation (Unicode P and all 32 ASCII punctuation / symbol
 *     characters), then GPT-2's regex inside each piece, then every `[0-9]{3}` inside each of
 *     those, left to right ("12345" -> "123" "45"; " 1234" -> " " "123" "4"; " 12" stays whole).
 *     No normalizer. This is llama.cpp's split, which is not quite HF's tokenizer.json for the
 *     model (whose Digits step would also cut " 12" into " " "12"): the GGUF file is llama.cpp's,
 *     and its ids are what the file's users get (test/gguf/falcon_tokenizer.test.ts).
 */
const PRE_TOKENIZERS: Readonly<Record<string, { normalizer: object | null; pre_tokenizer: object }>> = {
  'gpt-2': { normalizer: null, pre_tokenizer: BYTE_LEVEL },
  mpt: { normalizer: { type: 'NFC' }, pre_tokenizer: BYTE_LEVEL },
  olmo: { normalizer: { type: 'NFC' }, pre_tokenizer: BYTE_LEVEL },
  falcon: {
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Punctuation', behavior: 'Contiguous' },
        BYTE_LEVEL,
        { type: 'Split', pattern: { Regex: '[0-9]{3}' }, behavior: 'Isolated', invert: false },
      ],
    },
  },
};

function tokenizerError(g: GgufFile, msg: string): never {
  throw new SimbaError('E_TOKENIZER', `${g.path}: ${msg}`);
}

function stringList(g: GgufFile, k: string): string[] {
  const val = key(g, k);
  if (!Array.isArray(val) || !val.every((s) => typeof s === 'string'))
    tokenizerError(g, `metadata '${k}' must be a list of strings`);
  return val as string[];
}

/** Whether the file carries a tokenizer (tokenizer.ggml.model). */
export function ggufHasTokenizer(g: GgufFile): boolean {
  return key(g, 'tokenizer.ggml.model') !== undefined;
}

/**
 * The tokenizer of a GGUF file's `tokenizer.ggml.*` metadata, as the same Tokenizer object a
 * tokenizer.json gives: model 'gpt2' (byte-level BPE) with tokens, merges and token types (UNUSED
 * ids, a padded vocabulary's rows, are left out; CONTROL tokens are special added tokens,
 * USER_DEFINED ones plain added tokens), the ids of bos / eos / padding.
 */
export function ggufTokenizer(g: GgufFile): Tokenizer {
  const model = key(g, 'tokenizer.ggml.model');
  if (model !== 'gpt2')
    tokenizerError(g, `tokenizer.ggml.model ${JSON.stringify(model)} is not supported (only 'gpt2', byte-level BPE)`);
  const pre = key(g, 'tokenizer.ggml.pre') ?? 'gpt-2';
  if (typeof pre !== 'string' || !Object.hasOwn(PRE_TOKENIZERS, pre))
    tokenizerError(
      g,
      `tokenizer.ggml.pre ${JSON.stringify(pre)} is not supported (known: ${Object.keys(PRE_TOKENIZERS).join(', ')}); ` +
        'load with { tokenizer: false } to use the weights alone',
    );
  const tokens = stringList(g, 'tokenizer.ggml.tokens');
  const merges = key(g, 'tokenizer.ggml.merges') === undefined ? [] : stringList(g, 'tokenizer.ggml.merges');
  const typesVal = key(g, 'tokenizer.ggml.token_type');
  const types = typesVal === undefined ? tokens.map(() => TOKEN_NORMAL) : typesVal;
  if (!Array.isArray(types) || types.length !== tokens.length || !types.every((x) => typeof x === 'number'))
    tokenizerError(g, `metadata 'tokenizer.ggml.token_type' must be ${tokens.length} numbers, one per token`);
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  const added: object[] = [];
  tokens.forEach((tok, id) => {
    const type = types[id] as number;
    if (type === TOKEN_UNUSED) return;
    if (![TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_BYTE].includes(type))
      tokenizerError(g, `token ${id} has an unknown token type ${type}`);
    if (Object.hasOwn(vocab, tok)) tokenizerError(g, `token ${JSON.stringify(tok)} appears twice (ids ${vocab[tok]} and ${id})`);
    vocab[tok] = id;
    if (type === TOKEN_CONTROL || type === TOKEN_USER_DEFINED || type === TOKEN_UNKNOWN)
      added.push({
        id,
        content: tok,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: type !== TOKEN_USER_DEFINED,
      });
  });
  const json = {
    version: '1.0',
    added_tokens: added,
    ...PRE_TOKENIZERS[pre],
    post_processor: BYTE_LEVEL,
    decoder: BYTE_LEVEL,
    model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  const ids = {
    bos_token_id: key(g, 'tokenizer.ggml.bos_token_id'),
    eos_token_id: key(g, 'tokenizer.ggml.eos_token_id'),
    pad_token_id: key(g, 'tokenizer.ggml.padding_token_id'),
  };
  const asNumber = (x: GgufValue | undefined) => (typeof x === 'bigint' ? Number(x) : x);
  return new Tokenizer(json, {}, `${g.path} (tokenizer.ggml.*)`, {
    bos_token_id: asNumber(ids.bos_token_id),
    eos_token_id: asNumber(ids.eos_token_id),
    pad_token_id: asNumber(ids.pad_token_id),
  });
}

/** The chat template of `tokenizer.chat_template`, else the plain one (lib/checkpoint/chat_template.ts). */
export function ggufChatTemplate(g: GgufFile): ChatTemplate {
  const text = key(g, 'tokenizer.chat_template');
  if (typeof text !== 'string' || text.length === 0) return chatTemplate('plain', PLAIN_CHAT_TEMPLATE);
  const tokens = key(g, 'tokenizer.ggml.tokens');
  const tokenText = (k: string): string => {
    const id = key(g, k);
    const i = typeof id === 'bigint' ? Number(id) : id;
    return Array.isArray(tokens) && typeof i === 'number' && typeof tokens[i] === 'string' ? (tokens[i] as string) : '';
  };
  return chatTemplate(`${g.path} (tokenizer.chat_template)`, text, {
    bos: tokenText('tokenizer.ggml.bos_token_id'),
    eos: tokenText('tokenizer.ggml.eos_token_id'),
  });
}
