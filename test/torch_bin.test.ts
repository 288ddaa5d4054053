/**
 * The torch.save reader (lib/checkpoint/torch_bin.ts over lib/checkpoint/pickle.ts and zip.ts) on
 * files Python's own pickler wrote (test/fixtures/torch-bin/make_fixtures.py: torch.save's records
 * without torch), the hostile pickles that would run a command, and random mutations.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';

import { readPickle } from '../lib/checkpoint/pickle';
import { openTorchBin } from '../lib/checkpoint/torch_bin';
import { SimbaError } from '../lib/errors';
import { fuzzParams } from './fuzz/params';
import { tmpDir } from './helpers/util';

const FIX = path.join(__dirname, 'fixtures', 'torch-bin');
const fix = (name: string) => path.join(FIX, name);
const work = tmpDir('simba-torch-bin-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** f32 rounding of a number. */
const f = (v: number) => Math.fround(v);

test('a torch.save state dict: names, dtypes, shapes and values (f32, bf16, f16, shared storages, offsets, parameters)', () => {
  const t = openTorchBin(fix('tiny.bin'));
  try {
    expect(t.archive).toBe('tiny');
    expect(t.names()).toEqual(
      ['a.f32', 'b.bf16', 'c.f16', 'param', 'scalar', 'tied.same_object', 'unit.dims', 'view.offset2', 'view.whole'].sort(),
    );
    const a = Array.from({ length: 12 }, (_, i) => i * 0.25 - 1);
    expect(t.info('a.f32')).toMatchObject({ dtype: 'F32', shape: [3, 4], numel: 12, byteLength: 48 });
    expect(Array.from(t.readTensorF32('a.f32'))).toEqual(a);
    expect(Array.from(t.readTensorF32('tied.same_object'))).toEqual(a);
    expect(t.info('b.bf16')).toMatchObject({ dtype: 'BF16', shape: [5], byteLength: 10 });
    expect(Array.from(t.readTensorF32('b.bf16'))).toEqual([1.5, -2.0, 0.0078125, 3.0, -0.5]);
    expect(t.info('c.f16')).toMatchObject({ dtype: 'F16', shape: [2, 3] });
    expect(Array.from(t.readTensorF32('c.f16'))).toEqual([0.5, -1.25, 2.0, 1024.0, -0.001953125, 6.0].map(f));
    // one storage of 0..9 seen through views
    expect(Array.from(t.readTensorF32('view.whole'))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(t.readTensorF32('view.offset2'))).toEqual([2, 3, 4, 5, 6, 7]);
    expect(t.info('view.offset2').dataOffsets).toEqual([8, 32]);
    expect(t.info('scalar')).toMatchObject({ shape: [], numel: 1 });
    expect(Array.from(t.readTensorF32('scalar'))).toEqual([9]);
    expect(Array.from(t.readTensorF32('param'))).toEqual([4, 5]);
    expect(Array.from(t.readTensorF32('unit.dims'))).toEqual([1, 2, 3]);
    expect(t.readTensorBytes('view.offset2')).toEqual(Buffer.from(new Float32Array([2, 3, 4, 5, 6, 7]).buffer));
    expect(() => t.info('nope')).toThrow(/no tensor named 'nope'/);
  } finally {
    t.close();
  }
});

const code = (fn: () => unknown): { code: string; message: string } => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof SimbaError)) throw e;
    return { code: e.code, message: e.message };
  }
  throw new Error('did not throw');
};

test.each([
  ['evil-os-system.bin', /global 'posix\.system' is not allowed: loading a file never runs code/],
  ['evil-eval.bin', /global '__builtin__\.eval' is not allowed/],
  ['evil-stack-global.bin', /global 'posix\.system' is not allowed/],
  ['evil-inst.bin', /STRING \(0x53\) is not allowed/],
])('%s, a pickle that runs a command when Python loads it, is refused and runs nothing', (name, why) => {
  const marker = '/tmp/simba-pickle-ran-code';
  fs.rmSync(marker, { force: true });
  const e = code(() => openTorchBin(fix(name)));
  expect(e.code).toBe('E_WEIGHTS');
  expect(e.message).toMatch(why);
  expect(e.message).toContain(fix(name));
  expect(fs.existsSync(marker)).toBe(false);
});

test('INST, OBJ, NEWOBJ and REDUCE of a non-global are refused by name', () => {
  const opts = { source: 'x', globals: { 'collections.OrderedDict': { call: () => new Map() } } };
  const run = (bytes: number[]) => code(() => readPickle(Uint8Array.from(bytes), opts)).message;
  const ascii = (s: string) => [...Buffer.from(s, 'latin1')];
  expect(run([0x28, ...ascii('ios\nsystem\n'), 0x2e])).toMatch(/INST \(0x69\) is not allowed/);
  expect(run([0x28, 0x6f, 0x2e])).toMatch(/OBJ \(0x6f\) is not allowed/);
  expect(run([0x80, 2, 0x29, 0x29, 0x81, 0x2e])).toMatch(/NEWOBJ \(0x81\) is not allowed/);
  expect(run([0x80, 2, 0x4e, 0x29, 0x52, 0x2e])).toMatch(/REDUCE on a None, not an allowed global/);
  expect(run([0x80, 2, 0x4e])).toMatch(/ended without STOP/);
  expect(run([0x80, 2, 0x68, 7, 0x2e])).toMatch(/BINGET \(0x68\) of memo slot 7, which was never set/);
  expect(run([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f])).toMatch(/truncated/);
  // BUILD only on what an allowed global made and accepts state for (the state dict's _metadata)
  const od = [0x80, 2, 0x63, ...ascii('collections\nOrderedDict\n'), 0x29, 0x52];
  expect(readPickleValue(opts, [...od, 0x2e])).toBe('ok');
  expect(readPickleValue(opts, [0x80, 2, 0x7d, 0x7d, 0x62, 0x2e])).toMatch(
    /BUILD on a dict of 0 \(only objects of an allowed global/,
  );
  expect(
    readPickleValue({ ...opts, globals: { 'collections.OrderedDict': { call: () => new Map() } } }, [...od, 0x7d, 0x62, 0x2e]),
  ).toMatch(/BUILD on a dict of 0/);
});

/** The message readPickle gives (or 'ok' when it reads the bytes). */
function readPickleValue(opts: Parameters<typeof readPickle>[1], bytes: number[]): string {
  try {
    readPickle(Uint8Array.from(bytes), opts);
    return 'ok';
  } catch (e) {
    return (e as Error).message;
  }
}

test.each([
  ['transposed.bin', /tensor 't' is not contiguous \(size \[4,3\], stride \[1,4\]\): save it after \.contiguous\(\)/],
  ['deflated.bin', /is compressed \(method 8\); only stored entries can be read in place/],
])('%s is refused with a clear E_WEIGHTS', (name, why) => {
  const e = code(() => openTorchBin(fix(name)));
  expect(e.code).toBe('E_WEIGHTS');
  expect(e.message).toMatch(why);
});

test('not a torch.save ZIP: the legacy format, another file, a missing file', () => {
  const legacy = path.join(work, 'legacy.bin');
  fs.writeFileSync(legacy, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46]));
  expect(code(() => openTorchBin(legacy)).message).toMatch(/legacy \(pre-1\.6, non-ZIP\) torch\.save format/);
  const text = path.join(work, 'text.bin');
  fs.writeFileSync(text, 'hello world, not a checkpoint');
  expect(code(() => openTorchBin(text)).message).toMatch(/not a PyTorch checkpoint: no ZIP header/);
  expect(code(() => openTorchBin(path.join(work, 'missing.bin'))).code).toBe('E_IO');
});

describe('fuzz: mutations of a torch.save file', () => {
  const orig = fs.readFileSync(fix('tiny.bin'));
  const pklStart = orig.indexOf(Buffer.from('tiny/data.pkl')) + 'tiny/data.pkl'.length;
  const file = path.join(work, 'mutated.bin');

  /** Opens and reads every tensor: either all of it works or a SimbaError is thrown. */
  const openAndRead = (bytes: Buffer): 'ok' | string => {
    fs.writeFileSync(file, bytes);
    try {
      const t = openTorchBin(file);
      try {
        for (const n of t.names()) {
          const info = t.info(n);
          expect(info.byteOffset + info.byteLength).toBeLessThanOrEqual(bytes.length);
          if (['F32', 'F16', 'BF16'].includes(info.dtype)) expect(t.readTensorF32(n)).toHaveLength(info.numel);
        }
      } finally {
        t.close();
      }
      return 'ok';
    } catch (e) {
      if (!(e instanceof SimbaError)) throw e;
      expect(['E_WEIGHTS', 'E_SAFETENSORS', 'E_IO']).toContain(e.code);
      return e.code;
    }
  };

  test('random byte changes anywhere, and in the pickle, give a SimbaError or a consistent read', () => {
    const mutation = fc.record({
      at: fc.nat(orig.length - 1),
      inPickle: fc.boolean(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }),
    });
    fc.assert(
      fc.property(mutation, ({ at, inPickle, bytes }) => {
        const b = Buffer.from(orig);
        const pos = inPickle ? pklStart + (at % 400) : at;
        for (let i = 0; i < bytes.length && pos + i < b.length; i++) b[pos + i] = bytes[i];
        openAndRead(b);
      }),
      fuzzParams(300),
    );
  });

  test('every truncation is an error, never a crash or a hang', () => {
    fc.assert(
      fc.property(fc.nat(orig.length - 1), (n) => {
        expect(openAndRead(orig.subarray(0, n))).not.toBe('ok');
      }),
      fuzzParams(100),
    );
  });
});
