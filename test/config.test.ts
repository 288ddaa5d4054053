import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseConfig, loadConfig, KNOWN_CONFIG_KEYS, detectLayout } from '../lib/checkpoint/config';
import { SimbaError } from '../lib/errors';
import { SHAPES } from '../lib/engine/load';

const SHIPPED = path.join(__dirname, '..', 'models', 'brown-mamba-s');

/** state-spaces/mamba-130m config.json (original layout). */
const SS_130M = {
  d_model: 768,
  n_layer: 24,
  vocab_size: 50277,
  ssm_cfg: {},
  rms_norm: true,
  residual_in_fp32: true,
  fused_add_norm: true,
  pad_vocab_size_multiple: 8,
};

/** state-spaces/mamba-130m-hf config.json (HF layout with state-spaces leftovers). */
const HF_130M = {
  architectures: ['MambaForCausalLM'],
  bos_token_id: 0,
  conv_kernel: 4,
  d_inner: 1536,
  d_model: 768,
  eos_token_id: 0,
  expand: 2,
  fused_add_norm: true,
  hidden_act: 'silu',
  hidden_size: 768,
  initializer_range: 0.1,
  intermediate_size: 1536,
  layer_norm_epsilon: 1e-5,
  model_type: 'mamba',
  n_layer: 24,
  num_hidden_layers: 24,
  pad_token_id: 0,
  pad_vocab_size_multiple: 8,
  rescale_prenorm_residual: false,
  residual_in_fp32: true,
  rms_norm: true,
  ssm_cfg: {},
  state_size: 16,
  time_step_floor: 0.0001,
  time_step_init_scheme: 'random',
  time_step_max: 0.1,
  time_step_min: 0.001,
  time_step_rank: 48,
  time_step_scale: 1.0,
  torch_dtype: 'float32',
  transformers_version: '4.39.0.dev0',
  use_bias: false,
  use_cache: true,
  use_conv_bias: true,
  vocab_size: 50280,
};

function expectConfigError(json: unknown, ...patterns: RegExp[]): SimbaError {
  let err: unknown;
  try {
    parseConfig(json, 'test/config.json');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SimbaError);
  const se = err as SimbaError;
  expect(se.code).toBe('E_CONFIG');
  expect(se.message).toContain('test/config.json');
  for (const p of patterns) expect(se.message).toMatch(p);
  return se;
}

/** test/fixtures/falcon-mamba-7b/config.json: the public tiiuae/falcon-mamba-7b config. */
const FALCON_7B_DIR = path.join(__dirname, 'fixtures', 'falcon-mamba-7b');
const FALCON_7B = JSON.parse(fs.readFileSync(path.join(FALCON_7B_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;

describe('parseConfig: Falcon-Mamba (FalconMambaForCausalLM)', () => {
  it('reads the falcon-mamba-7b config: d_inner from intermediate_size (not expand 16), mixer_rms_eps, untied head', () => {
    const c = loadConfig(FALCON_7B_DIR);
    expect(c).toMatchObject({ dModel: 4096, nLayer: 64, dInner: 8192, dState: 16, dtRank: 256, dConv: 4, vocabSize: 65024 });
    expect(c).toMatchObject({ eps: 1e-5, mixerRmsEps: 1e-6, tieEmbeddings: false, convBias: true, projBias: false });
    expect(c).toMatchObject({ bosTokenId: 0, eosTokenId: 11, padTokenId: 11 });
    // the bench shape is this config
    expect(c).toEqual(SHAPES['falcon-mamba-7b']);
  });

  it('mixer_rms_eps defaults to 1e-6 (not layer_norm_epsilon) and is read as given', () => {
    const { mixer_rms_eps: _e, ...noEps } = FALCON_7B;
    expect(parseConfig({ ...noEps, layer_norm_epsilon: 1e-3 }, 'x')).toMatchObject({ eps: 1e-3, mixerRmsEps: 1e-6 });
    expect(parseConfig({ ...FALCON_7B, mixer_rms_eps: 1e-5 }, 'x').mixerRmsEps).toBe(1e-5);
    expectConfigError({ ...FALCON_7B, mixer_rms_eps: 0 }, /'mixer_rms_eps' must be a positive finite number, found 0/);
    expectConfigError({ ...FALCON_7B, mixer_rms_eps: 'small' }, /'mixer_rms_eps' must be a positive finite number/);
  });

  it('without intermediate_size, d_inner is expand * hidden_size', () => {
    const { intermediate_size: _i, ...rest } = FALCON_7B;
    expect(parseConfig({ ...rest, expand: 2 }, 'x').dInner).toBe(8192);
  });

  it('the architecture alone names the family; a Mamba-1 config has no mixerRmsEps and refuses mixer_rms_eps', () => {
    const { model_type: _m, ...noType } = FALCON_7B;
    expect(parseConfig(noType, 'x').mixerRmsEps).toBe(1e-6);
    expect('mixerRmsEps' in parseConfig(HF_130M, 'x')).toBe(false);
    expectConfigError({ ...HF_130M, mixer_rms_eps: 1e-6 }, /unknown config key\(s\) 'mixer_rms_eps'/);
  });

  it('refuses a model_type and architectures that disagree', () => {
    expectConfigError(
      { ...FALCON_7B, architectures: ['MambaForCausalLM'] },
      /'MambaForCausalLM' disagree with model_type 'falcon_mamba'; expected 'FalconMambaForCausalLM'/,
    );
    expectConfigError({ ...HF_130M, architectures: ['FalconMambaForCausalLM'] }, /disagree with model_type 'mamba'/);
    const { model_type: _m, ...noType } = FALCON_7B;
    expectConfigError({ ...noType, architectures: ['FalconMambaForCausalLM', 'MambaForCausalLM'] }, /disagree with each other/);
  });
});

describe('parseConfig: HF layout', () => {
  it('loads the shipped brown-mamba-s config', () => {
    expect(loadConfig(SHIPPED)).toEqual({
      vocabSize: 4096,
      dModel: 128,
      nLayer: 6,
      dInner: 256,
      dState: 16,
      dtRank: 8,
      dConv: 4,
      convBias: true,
      projBias: false,
      eps: 1e-5,
      tieEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
      padTokenId: 1,
    });
  });

  it('allowlists every key of the shipped config.json', () => {
    const json = JSON.parse(fs.readFileSync(path.join(SHIPPED, 'config.json'), 'utf8'));
    for (const k of Object.keys(json)) expect(KNOWN_CONFIG_KEYS.hf.has(k)).toBe(true);
  });

  it('parses the official mamba-130m-hf config (with state-spaces leftovers)', () => {
    const c = parseConfig(HF_130M, 'x');
    expect(c).toMatchObject({
      vocabSize: 50280,
      dModel: 768,
      nLayer: 24,
      dInner: 1536,
      dState: 16,
      dtRank: 48,
      dConv: 4,
      tieEmbeddings: true,
    });
  });

  it("resolves time_step_rank 'auto' to ceil(hidden/16) and defaults intermediate to expand*hidden", () => {
    const c = parseConfig(
      { model_type: 'mamba', hidden_size: 100, num_hidden_layers: 2, vocab_size: 10, time_step_rank: 'auto', expand: 3 },
      'x',
    );
    expect(c.dtRank).toBe(7);
    expect(c.dInner).toBe(300);
    expect(c.dState).toBe(16);
    expect(c.eosTokenId).toBeNull();
  });

  it('uses intermediate_size when expand is absent', () => {
    const c = parseConfig({ hidden_size: 64, num_hidden_layers: 1, vocab_size: 10, intermediate_size: 96 }, 'x');
    expect(c.dInner).toBe(96);
  });

  it('rejects intermediate_size inconsistent with expand * hidden_size', () => {
    expectConfigError(
      { ...HF_130M, d_inner: undefined, intermediate_size: 1000 },
      /'intermediate_size' = 1000/,
      /expand.*hidden_size.*1536/,
    );
  });

  it('rejects leftover keys that disagree', () => {
    expectConfigError({ ...HF_130M, n_layer: 12 }, /'n_layer' = 12 but 'num_hidden_layers' = 24/);
    expectConfigError({ ...HF_130M, d_model: 512 }, /'d_model' = 512 but 'hidden_size' = 768/);
  });

  it('names a missing required key', () => {
    const { hidden_size: _h, d_model: _d, ...rest } = HF_130M;
    expectConfigError(rest, /missing required key 'hidden_size'/);
  });

  it.each([
    ['hidden_size', 12.5],
    ['hidden_size', -128],
    ['hidden_size', 0],
    ['num_hidden_layers', '24'],
    ['state_size', true],
  ])('rejects a bad size %s = %p', (key, value) => {
    const json: Record<string, unknown> = {
      model_type: 'mamba',
      hidden_size: 64,
      num_hidden_layers: 2,
      vocab_size: 10,
      [key]: value,
    };
    expectConfigError(
      json,
      new RegExp(`'${key}' must be a positive integer, found ${JSON.stringify(value).replace(/[.]/g, '\\.')}`),
    );
  });

  it('treats null as absent (defaults apply)', () => {
    const c = parseConfig({ hidden_size: 64, num_hidden_layers: 2, vocab_size: 10, state_size: null, eos_token_id: null }, 'x');
    expect(c.dState).toBe(16);
    expect(c.eosTokenId).toBeNull();
  });

  it('rejects wrongly typed flags and epsilon', () => {
    expectConfigError({ ...HF_130M, use_bias: 'no' }, /'use_bias' must be true or false, found "no"/);
    expectConfigError({ ...HF_130M, layer_norm_epsilon: -1 }, /'layer_norm_epsilon' must be a positive finite number/);
  });

  it('reads a Mamba-2 model_type or architecture as Mamba-2, and rejects other architectures with a clear message', () => {
    // a Mamba-1 config.json relabelled is read as Mamba-2 and fails there, naming the Mamba-1 keys
    expectConfigError({ ...HF_130M, model_type: 'mamba2' }, /unknown config key\(s\) 'd_inner', 'd_model'/);
    expectConfigError({ ...HF_130M, model_type: 'jamba' }, /model_type 'jamba' is not supported.*'falcon_mamba'/);
    expectConfigError({ ...HF_130M, architectures: ['Mamba2ForCausalLM'] }, /unknown config key\(s\) 'd_inner'/);
    expectConfigError({ ...HF_130M, architectures: ['JambaForCausalLM'] }, /'JambaForCausalLM' not supported/);
  });

  it('rejects unknown keys by default, listing them', () => {
    expectConfigError(
      { ...HF_130M, zeta: 1, alpha_key: true },
      /unknown config key\(s\) 'alpha_key', 'zeta'/,
      /allowUnknownKeys/,
    );
  });

  it('turns unknown keys into warnings with allowUnknownKeys', () => {
    const warnings: string[] = [];
    const c = parseConfig({ ...HF_130M, zeta: 1 }, 'x', { allowUnknownKeys: true, onWarning: (m) => warnings.push(m) });
    expect(c.dModel).toBe(768);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/'zeta'/);
  });

  it('rejects non-objects', () => {
    expectConfigError([1, 2], /expected a JSON object, found an array/);
    expectConfigError('hello', /expected a JSON object/);
  });
});

describe('parseConfig: state-spaces layout', () => {
  it('parses mamba-130m and pads the vocabulary', () => {
    expect(detectLayout(SS_130M)).toBe('state-spaces');
    expect(parseConfig(SS_130M, 'x')).toEqual({
      vocabSize: 50280,
      dModel: 768,
      nLayer: 24,
      dInner: 1536,
      dState: 16,
      dtRank: 48,
      dConv: 4,
      convBias: true,
      projBias: false,
      eps: 1e-5,
      tieEmbeddings: true,
      bosTokenId: null,
      eosTokenId: null,
      padTokenId: null,
    });
  });

  it('reads ssm_cfg and tie_embeddings', () => {
    const c = parseConfig(
      {
        d_model: 64,
        n_layer: 3,
        vocab_size: 100,
        pad_vocab_size_multiple: 16,
        tie_embeddings: false,
        ssm_cfg: { d_state: 8, d_conv: 3, expand: 3, dt_rank: 5, conv_bias: false, bias: true },
      },
      'x',
    );
    expect(c).toMatchObject({
      vocabSize: 112,
      dInner: 192,
      dState: 8,
      dConv: 3,
      dtRank: 5,
      convBias: false,
      projBias: true,
      tieEmbeddings: false,
    });
  });

  it('pad_vocab_size_multiple 1 keeps the vocabulary', () => {
    expect(parseConfig({ ...SS_130M, pad_vocab_size_multiple: 1 }, 'x').vocabSize).toBe(50277);
  });

  it('reads Mamba-2 layers as Mamba-2 (its defaults), and rejects hybrids and MLPs', () => {
    expect(parseConfig({ ...SS_130M, ssm_cfg: { layer: 'Mamba2' } }, 'x')).toMatchObject({
      dInner: 1536,
      dState: 128,
      dtRank: 0,
      mamba2: { nHeads: 24, headDim: 64, nGroups: 1, chunkSize: 256, dtLimit: [0, Infinity] },
    });
    expectConfigError({ ...SS_130M, ssm_cfg: { layer: 'Mamba3' } }, /ssm_cfg.layer "Mamba3" is not supported/);
    expectConfigError({ ...SS_130M, attn_layer_idx: [3] }, /hybrid attention/);
    expectConfigError({ ...SS_130M, d_intermediate: 2048 }, /MLP/);
    expectConfigError({ ...SS_130M, rms_norm: false }, /LayerNorm/);
  });

  it('names bad or unknown ssm_cfg keys', () => {
    expectConfigError({ ...SS_130M, ssm_cfg: { d_state: 0 } }, /'ssm_cfg.d_state' must be a positive integer, found 0/);
    expectConfigError({ ...SS_130M, ssm_cfg: { d_stat: 16 } }, /unknown 'ssm_cfg' key\(s\) 'd_stat'/);
    expectConfigError({ ...SS_130M, extra: 1 }, /unknown config key\(s\) 'extra'/);
  });

  it('names a missing required key', () => {
    const { n_layer: _n, ...rest } = SS_130M;
    expectConfigError(rest, /missing required key 'n_layer'/);
  });
});

describe('loadConfig', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-config-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('reports a missing directory or file', () => {
    expect(() => loadConfig(path.join(tmp, 'nope'))).toThrow(expect.objectContaining({ code: 'E_IO' }));
    const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
    expect(() => loadConfig(empty)).toThrow(/config\.json: cannot read config/);
  });

  it('reports garbled JSON with the file name', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'bad-'));
    fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 12,');
    expect(() => loadConfig(dir)).toThrow(
      expect.objectContaining({ code: 'E_CONFIG', message: expect.stringMatching(/config\.json: not valid JSON/) }),
    );
  });

  it('accepts a path to the file itself', () => {
    expect(loadConfig(path.join(SHIPPED, 'config.json')).nLayer).toBe(6);
  });
});
