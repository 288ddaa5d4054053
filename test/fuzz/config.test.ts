/**
 * Property-based tests of config.json parsing (lib/checkpoint/config.ts parseConfig): random key
 * deletions, type swaps, huge / negative / fractional / non-finite numbers and prototype-named keys
 * applied to real configs of both layouts. Every outcome is a SimbaError E_CONFIG naming the source
 * (and, for a bad value, the key), or a MambaConfig that satisfies the invariants below.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';

import { KNOWN_CONFIG_KEYS, parseConfig, parsePythonJson } from '../../lib/checkpoint/config';
import { SimbaError } from '../../lib/errors';
import type { MambaConfig } from '../../lib/types';
import { fuzzParams } from './params';

const SOURCE = 'fuzz/config.json';
/** The engine stores every size as a C int. */
const INT32_MAX = 2 ** 31 - 1;

const shipped = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'brown-mamba-s', 'config.json'), 'utf8'));
/** The shipped Mamba-2 config, its dt limit [0, Infinity] as [0, 1e9] (the mutations copy through JSON, which has no Infinity). */
const shippedMamba2 = {
  ...(parsePythonJson(
    fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'brown-mamba2-s', 'config.json'), 'utf8'),
    'config.json',
  ) as Record<string, unknown>),
  time_step_limit: [0, 1e9],
};
/** A state-spaces (mamba_ssm) layout config, as state-spaces/mamba-130m ships it. */
const stateSpaces = {
  d_model: 768,
  d_intermediate: 0,
  n_layer: 24,
  vocab_size: 50277,
  ssm_cfg: { layer: 'Mamba1', d_state: 16 },
  attn_layer_idx: [],
  attn_cfg: {},
  rms_norm: true,
  residual_in_fp32: true,
  fused_add_norm: true,
  pad_vocab_size_multiple: 8,
  tie_embeddings: true,
};

/** Invariants of every config parseConfig returns. */
function checkInvariants(c: MambaConfig, json: Record<string, unknown>): void {
  for (const k of ['vocabSize', 'dModel', 'nLayer', 'dInner', 'dState', 'dConv'] as const) {
    const v = c[k];
    if (!(Number.isSafeInteger(v) && v > 0 && v <= INT32_MAX)) throw new Error(`${k} = ${v} is not a positive int32`);
  }
  if (c.mamba2) {
    // Mamba-2: no dtRank; heads tile d_inner and split into the groups; a valid dt clamp
    const m = c.mamba2;
    expect(c.dtRank).toBe(0);
    for (const v of [m.nHeads, m.headDim, m.nGroups, m.chunkSize]) expect(Number.isSafeInteger(v) && v > 0).toBe(true);
    expect(m.nHeads * m.headDim).toBe(c.dInner);
    expect(m.nHeads % m.nGroups).toBe(0);
    expect(m.dtLimit[0] >= 0 && Number.isFinite(m.dtLimit[0]) && m.dtLimit[1] >= m.dtLimit[0]).toBe(true);
    return;
  }
  if (!(Number.isSafeInteger(c.dtRank) && c.dtRank > 0 && c.dtRank <= INT32_MAX))
    throw new Error(`dtRank = ${c.dtRank} is not a positive int32`);
  for (const k of ['convBias', 'projBias', 'tieEmbeddings'] as const) expect(typeof c[k]).toBe('boolean');
  expect(Number.isFinite(c.eps) && c.eps > 0).toBe(true);
  for (const k of ['bosTokenId', 'eosTokenId', 'padTokenId'] as const) {
    const v = c[k];
    expect(v === null || (Number.isSafeInteger(v) && v >= 0)).toBe(true);
  }
  // Derived sizes follow the keys that define them.
  if (
    'hidden_size' in json ||
    'model_type' in json ||
    'architectures' in json ||
    'state_size' in json ||
    'num_hidden_layers' in json
  ) {
    expect(c.dModel).toBe(json['hidden_size']);
    expect(c.nLayer).toBe(json['num_hidden_layers']);
    expect(c.vocabSize).toBe(json['vocab_size']);
    const inner = json['intermediate_size'] ?? ((json['expand'] ?? 2) as number) * c.dModel;
    expect(c.dInner).toBe(inner);
    const rank = json['time_step_rank'];
    expect(c.dtRank).toBe(typeof rank === 'number' ? rank : Math.ceil(c.dModel / 16));
  } else {
    expect(c.dModel).toBe(json['d_model']);
    expect(c.vocabSize).toBeGreaterThanOrEqual(json['vocab_size'] as number);
    const mult = (json['pad_vocab_size_multiple'] ?? 8) as number;
    if (mult > 1) expect(c.vocabSize % mult).toBe(0);
  }
}

// ------------------------------------------------------------------------------------------
// mutations

const nasty = fc.oneof(
  fc.constantFrom(0, -1, -0, 1, 2, 0.5, 1e-300, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 1e308, -1e308),
  fc.constantFrom(NaN, Infinity, -Infinity), // only reachable by callers that pass objects, not by JSON
  fc.integer({ min: -5, max: 5000 }),
  fc.double(),
  fc.constantFrom('auto', '16', '', 'mamba', 'mamba2', 'silu', 'Mamba1', 'Mamba2', 'constructor', '__proto__', true, false, null),
  fc.constantFrom([], [1], [null], ['MambaForCausalLM'], {}, { d_state: 16 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** Every key either layout may use, plus prototype names and a few junk keys. */
const keyName = fc.oneof(
  fc.constantFrom(...KNOWN_CONFIG_KEYS.hf, ...KNOWN_CONFIG_KEYS['state-spaces']),
  fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'quantization_config', 'd_state', 'expand'),
  fc.string({ maxLength: 8 }),
);

type ConfigOp =
  | { op: 'delete'; pick: number }
  | { op: 'set'; key: string; value: unknown }
  | { op: 'swap'; pick: number; value: unknown }
  | { op: 'ssm'; key: string; value: unknown };

const configOp: fc.Arbitrary<ConfigOp> = fc.oneof(
  fc.record({ op: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ op: fc.constant('set' as const), key: keyName, value: nasty }),
  fc.record({ op: fc.constant('swap' as const), pick: fc.nat(), value: nasty }),
  fc.record({
    op: fc.constant('ssm' as const),
    key: fc.constantFrom('d_state', 'd_conv', 'expand', 'dt_rank', 'layer', 'bias', 'conv_bias', 'constructor'),
    value: nasty,
  }),
);

/** Applies the ops to a deep copy (own data properties only, so '__proto__' is an ordinary key, as JSON.parse makes it). */
function apply(base: Record<string, unknown>, ops: ConfigOp[]): Record<string, unknown> {
  const j: Record<string, unknown> = JSON.parse(JSON.stringify(base));
  const set = (o: Record<string, unknown>, k: string, v: unknown) =>
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  for (const o of ops) {
    const keys = Object.keys(j);
    if (o.op === 'set') set(j, o.key, o.value);
    else if (o.op === 'ssm') {
      const s = j['ssm_cfg'];
      const obj = typeof s === 'object' && s !== null && !Array.isArray(s) ? { ...(s as Record<string, unknown>) } : {};
      set(obj, o.key, o.value);
      set(j, 'ssm_cfg', obj);
    } else if (keys.length > 0) {
      const k = keys[o.pick % keys.length];
      if (o.op === 'delete') delete j[k];
      else set(j, k, o.value);
    }
  }
  return j;
}

function check(json: Record<string, unknown>, allowUnknownKeys: boolean): 'error' | 'parsed' {
  let c: MambaConfig;
  const warnings: string[] = [];
  try {
    c = parseConfig(json, SOURCE, { allowUnknownKeys, onWarning: (m) => warnings.push(m) });
  } catch (e) {
    if (!(e instanceof SimbaError))
      throw new Error(`expected a SimbaError, got ${String(e)}\n${(e as Error)?.stack ?? ''}`, { cause: e });
    expect(e.code).toBe('E_CONFIG');
    expect(e.message.startsWith(`${SOURCE}: `)).toBe(true);
    expect(e.message).not.toMatch(/\[native code\]|\[object Object\]|function \w*\(/);
    return 'error';
  }
  checkInvariants(c, json);
  for (const w of warnings) expect(w).toContain(SOURCE);
  return 'parsed';
}

describe('parseConfig under random edits', () => {
  test('the base configs parse', () => {
    expect(check(shipped, false)).toBe('parsed');
    expect(check(stateSpaces, false)).toBe('parsed');
    expect(check(shippedMamba2, false)).toBe('parsed');
    expect(parseConfig(stateSpaces, SOURCE).vocabSize).toBe(50280);
  });

  for (const [label, base, offset] of [
    ['HF (shipped brown-mamba-s)', shipped, 10],
    ['state-spaces', stateSpaces, 11],
    ['HF Mamba-2 (shipped brown-mamba2-s)', shippedMamba2, 12],
  ] as const) {
    test(`${label}: E_CONFIG or a config satisfying the invariants`, () => {
      const seen = { error: 0, parsed: 0 };
      fc.assert(
        fc.property(fc.array(configOp, { minLength: 1, maxLength: 5 }), fc.boolean(), (ops, allowUnknown) => {
          seen[check(apply(base, ops), allowUnknown)]++;
        }),
        fuzzParams(400, { offset }),
      );
      expect(seen.error).toBeGreaterThan(0);
      expect(seen.parsed).toBeGreaterThan(0);
    });
  }

  test('any JSON value at all', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), (v) => {
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) check(v as Record<string, unknown>, true);
        else expect(() => parseConfig(v, SOURCE)).toThrow(SimbaError);
      }),
      fuzzParams(200, { offset: 12 }),
    );
  });
});

describe('regressions found by the fuzzer', () => {
  test("sizes beyond the engine's int32 (or whose product is) are E_CONFIG, not an unsafe dInner", () => {
    expect(() =>
      parseConfig({ ...shipped, hidden_size: 2 ** 52, intermediate_size: undefined, time_step_rank: undefined }, SOURCE),
    ).toThrow(/hidden_size.*2147483647|2147483647.*hidden_size/);
    expect(() => parseConfig({ ...shipped, intermediate_size: undefined, expand: 2 ** 30 }, SOURCE)).toThrow(
      /dInner|intermediate|expand/,
    );
    expect(() => parseConfig({ ...stateSpaces, vocab_size: 2 ** 31 - 3 }, SOURCE)).toThrow(/vocab/);
  });

  test('a model_type named like an Object.prototype member is reported as itself', () => {
    expect(() => parseConfig({ ...shipped, model_type: 'constructor' }, SOURCE)).toThrow(
      new SimbaError(
        'E_CONFIG',
        `${SOURCE}: model_type 'constructor' is not supported; expected 'mamba' (Mamba-1) or 'falcon_mamba' (Falcon-Mamba)`,
      ),
    );
  });
});
