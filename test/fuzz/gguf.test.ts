/**
 * Property-based tests of the GGUF reader (lib/checkpoint/gguf.ts) and, through loadModel, of the
 * GGUF -> model mapping (lib/checkpoint/gguf_model.ts): random byte flips in the header, truncations,
 * lies in the counts, in string lengths, and in each field of the tensor infos (n_dims, dims, type,
 * offset) of the committed Q8_0 fixture; and hand-written files with a lying alignment.
 *
 * Oracle: opening either throws a SimbaError E_WEIGHTS whose message names the file, or succeeds, and
 * then every tensor agrees with an independent walk of the mutated bytes (type, dims, offset inside
 * the file, size = blocks x block bytes); a truncated file never opens; loading either gives a model
 * or a SimbaError of the loading codes, never a crash.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';

import { GGUF_TENSOR_TYPES, openGguf } from '../../lib/checkpoint/gguf';
import { loadModel } from '../../lib/engine/load';
import { SimbaError } from '../../lib/errors';
import { encodeGguf, f32Bytes } from '../../bench/gguf_writer';
import { tmpDir } from '../helpers/util';
import { fuzzParams } from './params';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'gguf', 'mamba-q8_0.gguf');
const base = fs.readFileSync(FIXTURE);
const work = tmpDir('simba-fuzz-gguf-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

// ------------------------------------------------------------------------------------------
// independent walk of the header (oracle): where each tensor info's fields are

interface RawTensor {
  name: string;
  /** Byte positions of n_dims, each dim, type and offset. */
  at: { nDims: number; dims: number[]; type: number; offset: number };
  dims: bigint[];
  type: number;
  offset: bigint;
}

/** Size of one metadata value of type t at p (strings and arrays walked), or null past the end. */
function valueSize(b: Buffer, t: number, p: number): number | null {
  const fixed: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  if (t in fixed) return fixed[t];
  if (p + 8 > b.length) return null;
  if (t === 8) return 8 + Number(b.readBigUInt64LE(p));
  if (t !== 9 || p + 12 > b.length) return null;
  const et = b.readUInt32LE(p);
  const n = Number(b.readBigUInt64LE(p + 4));
  let size = 12;
  for (let i = 0; i < n; i++) {
    const s = valueSize(b, et, p + size);
    if (s === null || p + size + s > b.length) return null;
    size += s;
  }
  return size;
}

/** The tensor infos of raw bytes, or null when the header does not walk to its end inside the file. */
function walk(b: Buffer): { tensors: RawTensor[]; end: number } | null {
  if (b.length < 24) return null;
  const nT = Number(b.readBigUInt64LE(8)),
    nKv = Number(b.readBigUInt64LE(16));
  let p = 24;
  for (let i = 0; i < nKv; i++) {
    if (p + 8 > b.length) return null;
    p += 8 + Number(b.readBigUInt64LE(p));
    if (p + 4 > b.length) return null;
    const s = valueSize(b, b.readUInt32LE(p), p + 4);
    if (s === null) return null;
    p += 4 + s;
  }
  const tensors: RawTensor[] = [];
  for (let i = 0; i < nT; i++) {
    if (p + 8 > b.length) return null;
    const len = Number(b.readBigUInt64LE(p));
    if (p + 8 + len + 4 > b.length) return null;
    const name = b.subarray(p + 8, p + 8 + len).toString('utf8');
    p += 8 + len;
    const nDims = b.readUInt32LE(p);
    const at = { nDims: p, dims: [] as number[], type: 0, offset: 0 };
    p += 4;
    const dims: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      if (p + 8 > b.length) return null;
      at.dims.push(p);
      dims.push(b.readBigUInt64LE(p));
      p += 8;
    }
    if (p + 12 > b.length) return null;
    at.type = p;
    at.offset = p + 4;
    tensors.push({ name, at, dims, type: b.readUInt32LE(p), offset: b.readBigUInt64LE(p + 4) });
    p += 12;
  }
  return { tensors, end: p };
}

const baseWalk = walk(base)!;
const headerEnd = baseWalk.end;
const lastTensorEnd = Math.max(
  ...baseWalk.tensors.map((t) => {
    const type = Object.values(GGUF_TENSOR_TYPES).find((x) => x.id === t.type)!;
    const numel = t.dims.reduce((a, d) => a * Number(d), 1);
    return Math.ceil(headerEnd / 32) * 32 + Number(t.offset) + (numel / type.blockElems) * type.blockBytes;
  }),
);

// ------------------------------------------------------------------------------------------
// mutations

type Mutation =
  | { kind: 'flip'; pos: number; value: number }
  | { kind: 'truncate'; length: number }
  | { kind: 'count'; which: 8 | 16; value: bigint }
  | { kind: 'string'; value: bigint }
  | { kind: 'tensor'; index: number; field: 'nDims' | 'dim' | 'type' | 'offset'; dim: number; value: bigint };

const lie = fc.oneof(
  fc.bigInt({ min: 0n, max: 70n }),
  fc.constantFrom(2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(headerEnd - 1), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('truncate' as const), length: fc.nat(base.length - 1) }),
  fc.record({ kind: fc.constant('count' as const), which: fc.constantFrom(8 as const, 16 as const), value: lie }),
  fc.record({ kind: fc.constant('string' as const), value: lie }),
  fc.record({
    kind: fc.constant('tensor' as const),
    index: fc.nat(baseWalk.tensors.length - 1),
    field: fc.constantFrom('nDims' as const, 'dim' as const, 'type' as const, 'offset' as const),
    dim: fc.nat(3),
    value: lie,
  }),
);

function mutate(m: Mutation): Buffer {
  if (m.kind === 'truncate') return Buffer.from(base.subarray(0, m.length));
  const b = Buffer.from(base);
  if (m.kind === 'flip') b[m.pos] = m.value;
  else if (m.kind === 'count') b.writeBigUInt64LE(m.value, m.which);
  else if (m.kind === 'string')
    b.writeBigUInt64LE(m.value, 24); // the first key's length
  else {
    const t = baseWalk.tensors[m.index];
    const u32 = m.value & 0xffffffffn;
    if (m.field === 'nDims') b.writeUInt32LE(Number(u32), t.at.nDims);
    else if (m.field === 'type') b.writeUInt32LE(Number(u32), t.at.type);
    else if (m.field === 'offset') b.writeBigUInt64LE(m.value, t.at.offset);
    else b.writeBigUInt64LE(m.value, t.at.dims[m.dim % t.at.dims.length]);
  }
  return b;
}

let fileNo = 0;
function writeTmp(b: Buffer): string {
  const f = path.join(work, `f${fileNo++}.gguf`);
  fs.writeFileSync(f, b);
  return f;
}

/** Opens the bytes: 'error' (checked: E_WEIGHTS naming the file) or 'opened' (checked against walk). */
async function checkOpen(b: Buffer): Promise<'error' | 'opened'> {
  const file = writeTmp(b);
  let g;
  try {
    g = await openGguf(file);
  } catch (e) {
    expect(e).toBeInstanceOf(SimbaError);
    expect((e as SimbaError).code).toBe('E_WEIGHTS');
    expect((e as SimbaError).message).toContain(file);
    return 'error';
  }
  const w = walk(b);
  expect(w).not.toBeNull();
  expect(g.tensors.size).toBe(w!.tensors.length);
  expect(g.dataOffset).toBe(Math.ceil(w!.end / g.alignment) * g.alignment);
  for (const r of w!.tensors) {
    const t = g.tensors.get(r.name)!;
    const type = GGUF_TENSOR_TYPES[t.type];
    expect(type.id).toBe(r.type);
    expect(t.dims.map(BigInt)).toEqual(r.dims);
    expect(t.byteOffset).toBe(g.dataOffset + Number(r.offset));
    expect(t.byteLength).toBe((t.numel / type.blockElems) * type.blockBytes);
    expect(t.byteOffset + t.byteLength).toBeLessThanOrEqual(b.length);
    expect(t.byteOffset % g.alignment).toBe(0);
  }
  return 'opened';
}

describe('GGUF header fuzz', () => {
  test('the unmutated fixture opens', async () => {
    expect(await checkOpen(base)).toBe('opened');
  });

  test('mutated headers are refused cleanly or read consistently', async () => {
    const seen = { error: 0, opened: 0 };
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const r = await checkOpen(mutate(m));
        seen[r]++;
        if (m.kind === 'truncate' && m.length < lastTensorEnd) expect(r).toBe('error');
      }),
      fuzzParams(300),
    );
    expect(seen.error).toBeGreaterThan(0);
    expect(seen.opened).toBeGreaterThan(0);
  }, 120000);

  test('loading a mutated file gives a model or a loading error, never a crash', async () => {
    const codes = new Set(['E_WEIGHTS', 'E_CONFIG', 'E_SHAPE', 'E_TOKENIZER']);
    const seen = { error: 0, loaded: 0 };
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const file = writeTmp(mutate(m));
        try {
          (await loadModel(file)).dispose();
          seen.loaded++;
        } catch (e) {
          expect(e).toBeInstanceOf(SimbaError);
          expect(codes).toContain((e as SimbaError).code);
          seen.error++;
        }
      }),
      fuzzParams(60, { heavy: true, offset: 1 }),
    );
    expect(seen.error).toBeGreaterThan(0);
    expect(seen.loaded).toBeGreaterThan(0);
  }, 120000);
});

describe('lying alignment', () => {
  const tensor = { name: 'token_embd.weight', dims: [8, 4], type: 'F32' as const, data: f32Bytes(new Float32Array(32)) };
  test.each([
    [0, /general\.alignment/],
    [3, /general\.alignment 3 is not a power of two/],
    [2 ** 31, /general\.alignment 2147483648 is not a power of two/],
  ])('general.alignment %d is refused', async (alignment, msg) => {
    const b = encodeGguf({ 'general.alignment': alignment }, [tensor]);
    await expect(openGguf(writeTmp(b))).rejects.toMatchObject({ code: 'E_WEIGHTS', message: expect.stringMatching(msg) });
  });

  test('a tensor offset that is not a multiple of the alignment is refused', async () => {
    const b = encodeGguf({}, [tensor], { alignment: 64 });
    expect((await openGguf(writeTmp(b))).alignment).toBe(64);
    const lied = Buffer.from(b);
    lied.writeBigUInt64LE(32n, walk(b)!.tensors[0].at.offset);
    await expect(openGguf(writeTmp(lied))).rejects.toMatchObject({
      code: 'E_WEIGHTS',
      message: expect.stringMatching(/tensor 'token_embd\.weight': offset 32 is not a multiple of the alignment 64/),
    });
  });
});
