/**
 * Property-based tests of the safetensors reader (lib/checkpoint/safetensors.ts) and, through it, of
 * the checkpoint -> engine tensor mapping (lib/checkpoint/weights.ts): random byte mutations,
 * truncations, header-length lies and header rewrites of a small synthetic file (fast) and of the
 * shipped brown-mamba-s checkpoint (a few runs).
 *
 * Oracle: opening and reading either throws a SimbaError with an expected code and a message naming
 * the file, or succeeds, and then every tensor agrees with an independent parse of the mutated bytes
 * (offsets inside the file, size = numel x dtype size, bytes and f32 values as decoded here), and a
 * tensor whose header entry and bytes are untouched equals the original values.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';

import { encodeSafetensors, openSafetensors, type SafetensorsFile } from '../../lib/checkpoint/safetensors';
import { loadConfig } from '../../lib/checkpoint/config';
import { loadWeights } from '../../lib/checkpoint/weights';
import { tensorTable } from '../../lib/engine/load';
import { SimbaError, type SimbaErrorCode } from '../../lib/errors';
import { randArray, tmpDir } from '../helpers/util';
import { fuzzParams } from './params';

/** Element size of every dtype the safetensors format defines (the spec's table, kept here as the oracle). */
const SAFETENSORS_DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

const REAL_DIR = path.join(__dirname, '..', '..', 'models', 'brown-mamba-s');
const work = tmpDir('simba-fuzz-st-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

// ------------------------------------------------------------------------------------------
// independent view of a (possibly mutated) file

type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };
interface RawView {
  headerLength: number;
  header: Record<string, unknown>;
}

/** Header length and parsed header of raw bytes, or null when either is unreadable. */
function rawView(buf: Buffer): RawView | null {
  if (buf.length < 8) return null;
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) return null;
  try {
    const header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + Number(n))));
    return { headerLength: Number(n), header };
  } catch {
    return null;
  }
}

function refHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 31,
    m = h & 1023;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * 2 ** (e - 15) * (1 + m / 1024);
}

/** Reference f32 decoding of little-endian bytes (F32 / F16 / BF16). */
function refDecode(bytes: Buffer, dtype: string): Float64Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(bytes.length / SAFETENSORS_DTYPE_SIZES[dtype]);
  const tmp = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < out.length; i++) {
    if (dtype === 'F32') out[i] = dv.getFloat32(i * 4, true);
    else if (dtype === 'F16') out[i] = refHalf(dv.getUint16(i * 2, true));
    else {
      tmp.setUint32(0, dv.getUint16(i * 2, true) << 16);
      out[i] = tmp.getFloat32(0);
    }
  }
  return out;
}

/** Index of the first element that differs (NaN equals NaN, -0 differs from 0), or -1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i]) && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  return -1;
}

/** The error is a SimbaError with one of the codes, naming `where`, with no JS internals leaking into it. */
function expectClean(e: unknown, codes: SimbaErrorCode[], where: string): void {
  if (!(e instanceof SimbaError)) throw new Error(`expected a SimbaError, got ${String(e)}\n${(e as Error)?.stack ?? ''}`);
  if (!codes.includes(e.code)) throw new Error(`expected one of ${codes.join(', ')}, got ${e.code}: ${e.message}`);
  expect(e.message).toContain(where);
  expect(e.message).not.toMatch(/\[native code\]|\[object Object\]|function \w*\(/);
}

interface Original {
  bytes: Map<string, Buffer>;
  values: Map<string, Float32Array>;
  entries: Map<string, Entry>;
}

/** Reads every tensor of a pristine file (the baseline mutated files are compared to). */
function readOriginal(file: string): Original {
  const f = openSafetensors(file);
  try {
    const o: Original = { bytes: new Map(), values: new Map(), entries: new Map() };
    for (const name of f.names()) {
      const t = f.info(name);
      o.bytes.set(name, f.readTensorBytes(name));
      o.values.set(name, f.readTensorF32(name));
      o.entries.set(name, { dtype: t.dtype, shape: t.shape, data_offsets: t.dataOffsets });
    }
    return o;
  } finally {
    f.close();
  }
}

/** Opens `buf` (written to `file`) and checks the oracle described at the top. Returns what happened. */
function checkBytes(buf: Buffer, file: string, orig: Original): 'error' | 'loaded' {
  fs.writeFileSync(file, buf);
  let f: SafetensorsFile;
  try {
    f = openSafetensors(file);
  } catch (e) {
    expectClean(e, ['E_SAFETENSORS'], file);
    return 'error';
  }
  try {
    const view = rawView(buf);
    if (!view) throw new Error('the reader accepted a file whose header length or JSON is unreadable');
    expect(f.headerLength).toBe(view.headerLength);
    expect(f.size).toBe(buf.length);
    const tensorKeys = Object.keys(view.header)
      .filter((k) => k !== '__metadata__')
      .sort();
    expect(f.names()).toEqual(tensorKeys);
    for (const name of f.names()) {
      const t = f.info(name);
      const e = view.header[name] as Entry;
      const size = SAFETENSORS_DTYPE_SIZES[e.dtype];
      expect(Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_SIZES, t.dtype)).toBe(true);
      expect(t.dtype).toBe(e.dtype);
      expect(t.shape).toEqual(e.shape);
      expect(t.numel).toBe(e.shape.reduce((a, b) => a * b, 1));
      expect(t.byteLength).toBe(t.numel * size);
      expect(t.byteOffset).toBe(8 + view.headerLength + e.data_offsets[0]);
      expect(t.byteOffset + t.byteLength).toBeLessThanOrEqual(buf.length);
      const expected = buf.subarray(t.byteOffset, t.byteOffset + t.byteLength);
      const bytes = f.readTensorBytes(name);
      expect(bytes.equals(expected)).toBe(true);
      if (t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16') {
        const values = f.readTensorF32(name);
        expect(firstDiff(values, refDecode(expected, t.dtype))).toBe(-1);
        const o = orig.entries.get(name);
        if (o && o.dtype === t.dtype && bytes.equals(orig.bytes.get(name)!)) {
          expect(firstDiff(values, orig.values.get(name)!)).toBe(-1);
        }
      } else {
        let threw: unknown = null;
        try {
          f.readTensorF32(name);
        } catch (err) {
          threw = err;
        }
        expectClean(threw, ['E_SAFETENSORS'], name);
      }
    }
    return 'loaded';
  } finally {
    f.close();
  }
}

// ------------------------------------------------------------------------------------------
// mutations

/** Splits a file into its header object and data section. */
function split(buf: Buffer): { header: Record<string, unknown>; data: Buffer } {
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

/** Header JSON (+ optional space padding) and data section -> file bytes. */
function join(header: unknown, data: Buffer, pad = 0): Buffer {
  const json = Buffer.from(JSON.stringify(header) + ' '.repeat(pad), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length), 0);
  return Buffer.concat([len, json, data]);
}

/** Values a rewritten header field may take: well-formed neighbours of valid ones, and junk. */
const nastyNumber = fc.oneof(
  fc.integer({ min: -3, max: 70 }),
  fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 64, 1e308, -0, 0.5, 1.5, -1),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const dtypeValue = fc.oneof(
  fc.constantFrom(...Object.keys(SAFETENSORS_DTYPE_SIZES)),
  fc.constantFrom('f32', 'F64 ', '', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'),
  fc.jsonValue({ maxDepth: 1 }),
);
const shapeValue = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 4 }),
  fc.array(nastyNumber, { maxLength: 4 }),
  fc.jsonValue({ maxDepth: 2 }),
);
const offsetsValue = (dataLength: number) =>
  fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: dataLength + 8 }), fc.integer({ min: 0, max: dataLength + 8 })),
    fc.tuple(nastyNumber, nastyNumber),
    fc.array(fc.integer({ min: -1, max: dataLength + 1 }), { maxLength: 3 }),
    fc.jsonValue({ maxDepth: 2 }),
  );
const tensorName = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.constantFrom('__proto__', 'constructor', 'toString', '__metadata__', ''),
);

type HeaderOp =
  | { op: 'delete'; pick: number }
  | { op: 'field'; pick: number; field: 'dtype' | 'shape' | 'data_offsets'; value: unknown }
  | { op: 'dropField'; pick: number; field: string }
  | { op: 'entry'; pick: number; value: unknown }
  | { op: 'add'; name: string; value: unknown }
  | { op: 'rename'; pick: number; name: string }
  | { op: 'metadata'; value: unknown };

const headerOp = (dataLength: number): fc.Arbitrary<HeaderOp> =>
  fc.oneof(
    fc.record({ op: fc.constant('delete' as const), pick: fc.nat() }),
    fc.record({ op: fc.constant('field' as const), pick: fc.nat(), field: fc.constant('dtype' as const), value: dtypeValue }),
    fc.record({ op: fc.constant('field' as const), pick: fc.nat(), field: fc.constant('shape' as const), value: shapeValue }),
    fc.record({
      op: fc.constant('field' as const),
      pick: fc.nat(),
      field: fc.constant('data_offsets' as const),
      value: offsetsValue(dataLength),
    }),
    fc.record({
      op: fc.constant('dropField' as const),
      pick: fc.nat(),
      field: fc.constantFrom('dtype', 'shape', 'data_offsets'),
    }),
    fc.record({ op: fc.constant('entry' as const), pick: fc.nat(), value: fc.jsonValue({ maxDepth: 2 }) }),
    fc.record({
      op: fc.constant('add' as const),
      name: tensorName,
      value: fc.record({ dtype: dtypeValue, shape: shapeValue, data_offsets: offsetsValue(dataLength) }),
    }),
    fc.record({ op: fc.constant('rename' as const), pick: fc.nat(), name: tensorName }),
    fc.record({ op: fc.constant('metadata' as const), value: fc.jsonValue({ maxDepth: 2 }) }),
  );

/** Applies header rewrites to a copy of the header (own properties only, so '__proto__' is a plain key). */
function rewrite(header: Record<string, unknown>, ops: HeaderOp[]): Record<string, unknown> {
  const h: Record<string, unknown> = JSON.parse(JSON.stringify(header));
  const set = (k: string, v: unknown) =>
    Object.defineProperty(h, k, { value: v, enumerable: true, writable: true, configurable: true });
  for (const o of ops) {
    const names = Object.keys(h).filter((k) => k !== '__metadata__');
    const name = names.length > 0 && 'pick' in o ? names[o.pick % names.length] : undefined;
    if (o.op === 'add') set(o.name, o.value);
    else if (o.op === 'metadata') set('__metadata__', o.value);
    else if (name === undefined) continue;
    else if (o.op === 'delete') delete h[name];
    else if (o.op === 'entry') set(name, o.value);
    else if (o.op === 'rename') {
      const v = h[name];
      delete h[name];
      set(o.name, v);
    } else {
      const e = h[name];
      if (typeof e !== 'object' || e === null || Array.isArray(e)) continue;
      const copy = { ...(e as Record<string, unknown>) };
      if (o.op === 'field') copy[o.field] = o.value;
      else delete copy[o.field];
      set(name, copy);
    }
  }
  return h;
}

type Mutation =
  | { kind: 'flip'; at: Array<{ pos: number; byte: number }>; headerOnly: boolean }
  | { kind: 'truncate'; keep: number }
  | { kind: 'length'; value: bigint }
  | { kind: 'header'; ops: HeaderOp[]; pad: number; dataDelta: number };

const mutation = (dataLength: number): fc.Arbitrary<Mutation> =>
  fc.oneof(
    fc.record({
      kind: fc.constant('flip' as const),
      headerOnly: fc.boolean(),
      at: fc.array(fc.record({ pos: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
    }),
    fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
    fc.record({
      kind: fc.constant('length' as const),
      value: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 600n })),
    }),
    fc.record({
      kind: fc.constant('header' as const),
      ops: fc.array(headerOp(dataLength), { minLength: 1, maxLength: 4 }),
      pad: fc.integer({ min: 0, max: 9 }),
      dataDelta: fc.integer({ min: -9, max: 9 }),
    }),
  );

function mutate(buf: Buffer, m: Mutation): Buffer {
  if (m.kind === 'truncate') return buf.subarray(0, m.keep % buf.length);
  if (m.kind === 'flip') {
    const out = Buffer.from(buf);
    const span = m.headerOnly ? Math.min(out.length, 8 + Number(out.readBigUInt64LE(0))) : out.length;
    for (const { pos, byte } of m.at) out[pos % span] = byte;
    return out;
  }
  if (m.kind === 'length') {
    const out = Buffer.from(buf);
    out.writeBigUInt64LE(m.value, 0);
    return out;
  }
  const { header, data } = split(buf);
  const d =
    m.dataDelta >= 0
      ? Buffer.concat([data, Buffer.alloc(m.dataDelta, 0x7f)])
      : data.subarray(0, Math.max(0, data.length + m.dataDelta));
  return join(rewrite(header, m.ops), d, m.pad);
}

// ------------------------------------------------------------------------------------------
// the synthetic file: every readable dtype, an empty tensor, a scalar, special values

const synthFile = path.join(work, 'synthetic.safetensors');
const specials = Float32Array.from([0, -0, 1, -1, Infinity, -Infinity, NaN, 65504, 1e-8, 3.4e38, -2.5e-41]);
const synthetic = encodeSafetensors(
  {
    'a.weight': { dtype: 'F32', shape: [3, 5], data: randArray(15, 11) },
    'b.f16': { dtype: 'F16', shape: [11], data: specials },
    'c.bf16': { dtype: 'BF16', shape: [2, 2, 3], data: randArray(12, 12, 100) },
    'd.empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    'e.scalar': { dtype: 'F32', shape: [], data: Float32Array.of(1.5) },
    'f.specials': { dtype: 'F32', shape: [11], data: specials },
  },
  { format: 'pt', note: 'fuzz' },
);
fs.writeFileSync(synthFile, synthetic);
const synthOrig = readOriginal(synthFile);
const synthDataLength = split(synthetic).data.length;

describe('safetensors reader under random corruption (synthetic file)', () => {
  const target = path.join(work, 'mutated.safetensors');

  test('the pristine file loads and round-trips', () => {
    expect(checkBytes(synthetic, target, synthOrig)).toBe('loaded');
    expect(synthOrig.values.get('e.scalar')).toEqual(Float32Array.of(1.5));
  });

  test('every mutation is a clean E_SAFETENSORS or a faithful load', () => {
    const seen = { error: 0, loaded: 0 };
    fc.assert(
      fc.property(mutation(synthDataLength), (m) => {
        seen[checkBytes(mutate(synthetic, m), target, synthOrig)]++;
      }),
      fuzzParams(400),
    );
    // The generators must reach both outcomes, else the property says little.
    expect(seen.error).toBeGreaterThan(0);
    expect(seen.loaded).toBeGreaterThan(0);
  });

  test('stacked mutations (several kinds in a row)', () => {
    fc.assert(
      fc.property(fc.array(mutation(synthDataLength), { minLength: 2, maxLength: 4 }), (ms) => {
        let buf: Buffer = synthetic;
        for (const m of ms) {
          if (m.kind === 'header' && !rawView(buf)) continue; // header rewrites need a parseable header
          buf = mutate(buf, m);
          if (buf.length < 8) break;
        }
        checkBytes(buf, target, synthOrig);
      }),
      fuzzParams(150, { offset: 1 }),
    );
  });
});

// ------------------------------------------------------------------------------------------
// the shipped checkpoint: header rewrites and truncations, through the reader and loadWeights

describe('the shipped brown-mamba-s checkpoint under random corruption', () => {
  const real = fs.readFileSync(path.join(REAL_DIR, 'model.safetensors'));
  const config = loadConfig(REAL_DIR);
  const table = tensorTable(config);
  const realOrig = readOriginal(path.join(REAL_DIR, 'model.safetensors'));
  const realDataLength = split(real).data.length;
  const dir = path.join(work, 'real');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(REAL_DIR, 'config.json'), path.join(dir, 'config.json'));
  const target = path.join(dir, 'model.safetensors');

  /** Small mutations only (the file is 4.9 MB): header rewrites, header flips, truncations. */
  const realMutation = fc.oneof(
    fc.record({
      kind: fc.constant('header' as const),
      ops: fc.array(headerOp(realDataLength), { minLength: 1, maxLength: 3 }),
      pad: fc.integer({ min: 0, max: 9 }),
      dataDelta: fc.integer({ min: -9, max: 9 }),
    }),
    fc.record({
      kind: fc.constant('flip' as const),
      headerOnly: fc.constant(true),
      at: fc.array(fc.record({ pos: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }),
    }),
    fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  );

  test("reader and loadWeights: a clean error or tensors equal to the file's bytes", () => {
    fc.assert(
      fc.property(realMutation, (m) => {
        const buf = mutate(real, m);
        if (checkBytes(buf, target, realOrig) === 'error') return;
        // It opened: the engine-side load either names the problem or hands over the original values.
        try {
          for (const t of loadWeights(dir, config, table)) {
            expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
            expect(t.data.every((v) => Number.isFinite(v))).toBe(true);
          }
        } catch (e) {
          expectClean(e, ['E_SAFETENSORS', 'E_SHAPE', 'E_WEIGHTS'], dir);
        }
      }),
      fuzzParams(12, { heavy: true, offset: 2 }),
    );
  });
});

describe('regressions found by the fuzzer', () => {
  test('a dtype that is not a safetensors dtype is named as unknown, even if Object.prototype has it', () => {
    const file = path.join(work, 'dtype.safetensors');
    const known = new Set(Object.keys(SAFETENSORS_DTYPE_SIZES));
    const name = fc
      .oneof(fc.string({ maxLength: 12 }), fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'))
      .filter((s) => !known.has(s));
    fc.assert(
      fc.property(name, (dtype) => {
        fs.writeFileSync(file, join({ t: { dtype, shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8)));
        expect(() => openSafetensors(file)).toThrow(`tensor 't': unknown dtype '${dtype}'`);
      }),
      fuzzParams(60, { offset: 3 }),
    );
  });
});
