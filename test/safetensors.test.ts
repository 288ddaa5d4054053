import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  openSafetensors,
  openCheckpoint,
  encodeSafetensors,
  f32ToF16Bits,
  f16BitsToF32,
  f32ToBf16Bits,
  bf16BitsToF32,
} from '../lib/checkpoint/safetensors';
import { SimbaError } from '../lib/errors';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the module object itself, so jest can spy on its functions
import fsModule = require('fs');

let tmp: string;
let counter = 0;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-st-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(bytes: Buffer | Uint8Array, name = `f${counter++}.safetensors`): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
}

/** A file with the given header (object or raw text) and data section. */
function raw(header: unknown, data: Buffer = Buffer.alloc(0), headerLenOverride?: bigint): string {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLenOverride ?? BigInt(h.length));
  return write(Buffer.concat([len, h, data]));
}

function expectOpenError(file: string, ...patterns: RegExp[]): void {
  let err: unknown;
  try {
    openSafetensors(file).close();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SimbaError);
  expect((err as SimbaError).code).toBe('E_SAFETENSORS');
  expect((err as SimbaError).message).toContain(file);
  for (const p of patterns) expect((err as SimbaError).message).toMatch(p);
}

const f32 = (...v: number[]): Float32Array => Float32Array.from(v);

describe('f16 / bf16 conversion', () => {
  it('f16: known values, round to nearest even', () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [-0, 0x8000],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002],
      [2 ** -14, 0x0400],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    ];
    for (const [v, bits] of cases) expect([v, f32ToF16Bits(v)]).toEqual([v, bits]);
    expect(f32ToF16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16Bits(NaN) & 0x3ff).not.toBe(0);
    expect(f16BitsToF32(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(f16BitsToF32(0x7e00))).toBe(true);
  });

  it('f16: every bit pattern survives f16 -> f32 -> f16', () => {
    for (let h = 0; h < 65536; h++) {
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN16) continue;
      if (f32ToF16Bits(f16BitsToF32(h)) !== h) throw new Error(`f16 0x${h.toString(16)} does not round trip`);
    }
  });

  it('bf16: known values, round to nearest even', () => {
    const cases: Array<[number, number]> = [
      [1, 0x3f80],
      [-1.5, 0xbfc0],
      [Math.PI, 0x4049],
      [1 + 2 ** -8, 0x3f80],
      [1 + 3 * 2 ** -8, 0x3f82],
      [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [3.4028234663852886e38, 0x7f80],
      [-0, 0x8000],
      [Infinity, 0x7f80],
    ];
    for (const [v, bits] of cases) expect([v, f32ToBf16Bits(v)]).toEqual([v, bits]);
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true);
    expect(bf16BitsToF32(0x4049)).toBe(3.140625);
    for (let b = 0; b < 65536; b++) {
      const isNaNb = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      if (!isNaNb && f32ToBf16Bits(bf16BitsToF32(b)) !== b) throw new Error(`bf16 0x${b.toString(16)} does not round trip`);
    }
  });
});

describe('encodeSafetensors + openSafetensors', () => {
  it('round-trips F32 / F16 / BF16 tensors with metadata', () => {
    const vals = f32(1, -2, 0.1, 1 / 3, 65504, 2 ** -24);
    const file = write(
      encodeSafetensors(
        {
          'b.f32': { dtype: 'F32', shape: [2, 3], data: vals },
          'a.f16': { dtype: 'F16', shape: [6], data: vals },
          'c.bf16': { dtype: 'BF16', shape: [3, 2], data: vals },
          empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
        },
        { format: 'pt' },
      ),
    );
    const st = openSafetensors(file);
    try {
      expect(st.names()).toEqual(['a.f16', 'b.f32', 'c.bf16', 'empty']);
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.info('b.f32')).toMatchObject({ dtype: 'F32', shape: [2, 3], numel: 6, byteLength: 24 });
      expect(st.headerLength % 8).toBe(0);
      expect(Array.from(st.readTensorF32('b.f32'))).toEqual(Array.from(vals));
      expect(Array.from(st.readTensorF32('a.f16'))).toEqual([1, -2, 0.0999755859375, 0.333251953125, 65504, 2 ** -24]);
      expect(Array.from(st.readTensorF32('c.bf16'))).toEqual([1, -2, 0.10009765625, 0.333984375, 65536, 2 ** -24]);
      expect(st.readTensorF32('empty').length).toBe(0);
      expect(() => st.info('nope')).toThrow(/no tensor named 'nope'/);
    } finally {
      st.close();
    }
  });

  it('writes a space-padded, 8-byte aligned header with names in sorted order', () => {
    const buf = encodeSafetensors({
      z: { dtype: 'F32', shape: [1], data: f32(1) },
      a: { dtype: 'F16', shape: [1], data: f32(2) },
    });
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    expect(text.trimEnd().length).toBeLessThanOrEqual(n);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    expect(text.indexOf('"a"')).toBeLessThan(text.indexOf('"z"'));
    expect(JSON.parse(text).a.data_offsets).toEqual([0, 2]);
    expect(JSON.parse(text).z.data_offsets).toEqual([2, 6]);
  });

  it('rejects bad encoder input', () => {
    expect(() => encodeSafetensors({ t: { dtype: 'F32', shape: [2, 2], data: f32(1, 2, 3) } })).toThrow(
      /'t'.*needs 4 values, found 3/,
    );
    expect(() => encodeSafetensors({ t: { dtype: 'F64' as 'F32', shape: [1], data: f32(1) } })).toThrow(/dtype "F64"/);
  });

  it('reads only the requested tensor bytes (positioned reads, not the whole file)', () => {
    const big = new Float32Array(1 << 20); // 4 MiB
    const file = write(
      encodeSafetensors({
        big: { dtype: 'F32', shape: [big.length], data: big },
        small: { dtype: 'F32', shape: [3], data: f32(7, 8, 9) },
      }),
    );
    const st = openSafetensors(file);
    const spy = jest.spyOn(fsModule, 'readSync');
    const readFile = jest.spyOn(fsModule, 'readFileSync');
    try {
      expect(Array.from(st.readTensorF32('small'))).toEqual([7, 8, 9]);
      const bytes = spy.mock.results.reduce((a, r) => a + (r.value as number), 0);
      expect(bytes).toBe(12);
      expect(readFile).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
      readFile.mockRestore();
      st.close();
    }
  });

  it('close() is idempotent and later reads fail clearly', () => {
    const st = openSafetensors(write(encodeSafetensors({ t: { dtype: 'F32', shape: [1], data: f32(1) } })));
    st.close();
    st.close();
    expect(() => st.readTensorF32('t')).toThrow(/closed.*'t'/);
  });

  it('lists but refuses to convert non-float dtypes', () => {
    const file = raw({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, Buffer.alloc(16));
    const st = openSafetensors(file);
    try {
      expect(st.info('ids').dtype).toBe('I64');
      expect(st.readTensorBytes('ids').length).toBe(16);
      expect(() => st.readTensorF32('ids')).toThrow(/tensor 'ids' has dtype I64; only F32, F16, BF16/);
    } finally {
      st.close();
    }
  });
});

describe('openSafetensors: malformed files', () => {
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('file too short for the header length', () => {
    expectOpenError(write(Buffer.from([1, 2, 3])), /too short \(3 bytes\)/);
    expectOpenError(write(Buffer.alloc(0)), /too short \(0 bytes\)/);
  });

  it('header length past the end of the file', () => {
    expectOpenError(raw(ok, Buffer.alloc(8), 1000n), /header length 1000 runs past the end of the file/);
    expectOpenError(raw(ok, Buffer.alloc(8), 0xffffffffffffffffn), /header length 18446744073709551615/);
  });

  it('header that is not JSON / not an object', () => {
    expectOpenError(raw('{"t": {"dtype": "F32",'), /not valid UTF-8 JSON/);
    expectOpenError(raw('[1, 2, 3]'), /must be a JSON object, found an array/);
    expectOpenError(raw(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1')), /not valid UTF-8 JSON/);
  });

  it('unknown dtype, named', () => {
    expectOpenError(
      raw({ w: { dtype: 'F12', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8)),
      /tensor 'w': unknown dtype 'F12'/,
    );
  });

  it('shape x dtype size disagreeing with the byte range', () => {
    expectOpenError(
      raw({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 8] } }, Buffer.alloc(8)),
      /tensor 'w'.*needs 24 bytes but data_offsets \[0, 8\] span 8/,
    );
  });

  it('offsets outside the data section (incl. truncated data)', () => {
    expectOpenError(
      raw({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, Buffer.alloc(12)),
      /tensor 'w': data_offsets \[8, 16\] lie outside the data section \(12 bytes\)/,
    );
  });

  it('overlapping ranges', () => {
    expectOpenError(
      raw(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        Buffer.alloc(12),
      ),
      /tensors 'a' \[0, 8\] and 'b' \[4, 12\] overlap/,
    );
  });

  it('non-integer, negative or reversed offsets; bad shapes', () => {
    expectOpenError(
      raw({ w: { dtype: 'F32', shape: [2], data_offsets: [0.5, 8.5] } }, Buffer.alloc(9)),
      /'w': data_offsets must be non-negative integers/,
    );
    expectOpenError(
      raw({ w: { dtype: 'F32', shape: [2], data_offsets: ['0', 8] } }, Buffer.alloc(8)),
      /'w': data_offsets must be non-negative integers/,
    );
    expectOpenError(raw({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, Buffer.alloc(8)), /end 0 is before begin 8/);
    expectOpenError(
      raw({ w: { dtype: 'F32', shape: [2], data_offsets: [0] } }, Buffer.alloc(8)),
      /'data_offsets' must be \[begin, end\]/,
    );
    expectOpenError(
      raw({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, Buffer.alloc(8)),
      /'shape' must be a list of non-negative integers/,
    );
    expectOpenError(raw({ w: 5 }), /'w': header entry must be an object/);
  });

  it('bad __metadata__', () => {
    expectOpenError(raw({ __metadata__: { n: 1 }, ...ok }, Buffer.alloc(8)), /'__metadata__' must be an object of string values/);
  });

  it('accepts a header padded with spaces', () => {
    const st = openSafetensors(raw(JSON.stringify(ok) + '     ', Buffer.from(f32(3, 4).buffer)));
    expect(Array.from(st.readTensorF32('t'))).toEqual([3, 4]);
    st.close();
  });

  it('missing file is an E_IO error', () => {
    expect(() => openSafetensors(path.join(tmp, 'absent.safetensors'))).toThrow(expect.objectContaining({ code: 'E_IO' }));
  });
});

describe('openCheckpoint', () => {
  function shardedDir(opts: { dropShard?: boolean; lieAbout?: string; traversal?: boolean } = {}): string {
    const dir = fs.mkdtempSync(path.join(tmp, 'sharded-'));
    const s1 = encodeSafetensors({
      a: { dtype: 'F32', shape: [2], data: f32(1, 2) },
      b: { dtype: 'BF16', shape: [1], data: f32(3) },
    });
    const s2 = encodeSafetensors({ c: { dtype: 'F16', shape: [2], data: f32(4, 5) } });
    fs.writeFileSync(path.join(dir, 'model-00001-of-00002.safetensors'), s1);
    if (!opts.dropShard) fs.writeFileSync(path.join(dir, 'model-00002-of-00002.safetensors'), s2);
    const weightMap: Record<string, string> = {
      a: 'model-00001-of-00002.safetensors',
      b: 'model-00001-of-00002.safetensors',
      c: 'model-00002-of-00002.safetensors',
    };
    if (opts.lieAbout) weightMap[opts.lieAbout] = 'model-00002-of-00002.safetensors';
    if (opts.traversal) weightMap['a'] = '../elsewhere.safetensors';
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: 14 }, weight_map: weightMap }),
    );
    return dir;
  }

  it('opens a sharded checkpoint through its index', () => {
    const ck = openCheckpoint(shardedDir());
    try {
      expect(ck.names()).toEqual(['a', 'b', 'c']);
      expect(ck.files.map((f) => path.basename(f))).toEqual([
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
      ]);
      expect(Array.from(ck.readTensorF32('a'))).toEqual([1, 2]);
      expect(Array.from(ck.readTensorF32('b'))).toEqual([3]);
      expect(Array.from(ck.readTensorF32('c'))).toEqual([4, 5]);
      expect(ck.info('c').file).toMatch(/00002-of-00002/);
      expect(ck.metadata).toEqual({ total_size: 14 });
    } finally {
      ck.close();
    }
  });

  it('names a missing shard', () => {
    expect(() => openCheckpoint(shardedDir({ dropShard: true }))).toThrow(
      /shard 'model-00002-of-00002.safetensors' listed in weight_map is missing/,
    );
  });

  it('names a tensor listed in the index but absent from its shard', () => {
    expect(() => openCheckpoint(shardedDir({ lieAbout: 'zz' }))).toThrow(
      /tensor 'zz' is listed in weight_map for shard 'model-00002-of-00002.safetensors' but is absent/,
    );
  });

  it('refuses shard paths outside the directory', () => {
    expect(() => openCheckpoint(shardedDir({ traversal: true }))).toThrow(/points outside the checkpoint directory/);
  });

  it('rejects a garbled index', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'badidx-'));
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    expect(() => openCheckpoint(dir)).toThrow(/index\.json: cannot read shard index/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": [1]}');
    expect(() => openCheckpoint(dir)).toThrow(/'weight_map' must be an object/);
  });

  it('opens model.safetensors, or a file path directly', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'single-'));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors({ x: { dtype: 'F32', shape: [1], data: f32(9) } }));
    for (const p of [dir, path.join(dir, 'model.safetensors')]) {
      const ck = openCheckpoint(p);
      expect(Array.from(ck.readTensorF32('x'))).toEqual([9]);
      ck.close();
    }
  });

  it('explains a directory without a checkpoint', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'none-'));
    fs.writeFileSync(path.join(dir, 'weights.safetensors'), encodeSafetensors({}));
    expect(() => openCheckpoint(dir)).toThrow(
      /no checkpoint file \(looked for model\.safetensors\.index\.json, .*\) \(found weights\.safetensors; sharded/,
    );
    // a pytorch_model.bin is read (test/checkpoint_formats.test.ts); one that is not a torch.save file says so
    const dir2 = fs.mkdtempSync(path.join(tmp, 'bin-'));
    fs.writeFileSync(path.join(dir2, 'pytorch_model.bin'), 'x');
    expect(() => openCheckpoint(dir2)).toThrow(/pytorch_model\.bin: not a PyTorch checkpoint: no ZIP header/);
  });
});
