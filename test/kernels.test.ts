/**
 * Every CPU kernel against a float64 reference, on random inputs (a fixed seed; SIMBA_TEST_SEED
 * overrides it), for every instruction-set build this CPU can run (AVX-512, AVX2, SSE2): relative
 * error ||a-b||/||b||. The op / shape cases and their limits are the kernel table shared with the
 * CUDA tests (test/helpers/kernel_cases.ts); the tests after it check properties of single kernels.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';

import { loadAddon } from '../bindings';
import { kernelCases, overLimits, underFloors } from './helpers/kernel_cases';
import { repeats } from './helpers/sanitized';
import { randArray, relErr, testSeed } from './helpers/util';
import { refGemm, softplus } from './reference/mamba_ref';

const addon = loadAddon();
const isas = addon.availableIsas();
const seed0 = testSeed(20251); // fixed (SIMBA_TEST_SEED overrides); the seed is in the test names
const cases = kernelCases(seed0);

afterAll(() => {
  addon.setIsa(isas[0]);
});

describe.each(isas)('kernels on %s', (isa) => {
  beforeAll(() => {
    addon.setIsa(isa);
  });

  test.each(cases.map((c) => [c.name, c] as const))(`%s against float64 (seed ${seed0})`, (_name, c) => {
    const got = c.run(addon.kernels),
      want = c.reference();
    expect(overLimits(got, want, c.tol.ref)).toEqual([]);
    if (c.minRef) expect(underFloors(got, want, c.minRef)).toEqual([]);
  });

  // The packed-A tiles (M >= 14 rows on AVX-512), the row remainders and the one-row decode kernel
  // sum over k in the same order, so a row's result does not depend on how many rows share its GEMM.
  test.each([
    [45, 70, 1031],
    [100, 33, 300],
  ])(`f32 gemm: each row of M=%i equals the same row computed alone (N=%i K=%i)`, (M, N, K) => {
    const A = randArray(M * K, seed0 + 11 * M),
      W = randArray(N * K, seed0 + 11 * N),
      bias = randArray(N, seed0 + 11 * K);
    const all = addon.kernels.gemm({ A, W, bias, M, N, K, format: 'f32' });
    for (const m of [0, 13, 14, 27, M - 1]) {
      const one = addon.kernels.gemm({ A: A.subarray(m * K, (m + 1) * K), W, bias, M: 1, N, K, format: 'f32' });
      expect(Array.from(all.subarray(m * N, (m + 1) * N))).toEqual(Array.from(one));
    }
  });

  // The int8 kernels tile rows by 8 (vpdpbusd) or 6 / 3 (pmaddwd), then 4, 2 and 1: integer sums,
  // so a row's result does not depend on its tile (AMX off: its tiles start at 16 rows).
  test('int8 gemm: each row of M = 2..15 equals the same row computed alone (every tile size)', () => {
    const N = 45,
      K = 300;
    const amx = addon.amxAvailable() && addon.amxActive();
    if (amx) addon.setAmx(false);
    try {
      for (let M = 2; M <= 15; M++) {
        const A = randArray(M * K, seed0 + 131 * M),
          W = randArray(N * K, seed0 + 132),
          bias = randArray(N, seed0 + 133);
        const all = addon.kernels.gemm({ A, W, bias, M, N, K, format: 'int8' });
        for (let m = 0; m < M; m++) {
          const one = addon.kernels.gemm({ A: A.subarray(m * K, (m + 1) * K), W, bias, M: 1, N, K, format: 'int8' });
          expect(Array.from(all.subarray(m * N, (m + 1) * N))).toEqual(Array.from(one));
        }
      }
    } finally {
      if (amx) addon.setAmx(true);
    }
  });

  test('int8 gemm: a row of zeros gives the bias, and the largest weights are exact', () => {
    const M = 2,
      N = 3,
      K = 5;
    const A = new Float32Array([0, 0, 0, 0, 0, 1, -2, 0.5, 4, -4]);
    const W = new Float32Array([1, 0, 0, 0, 0, 0, -3, 0, 0, 0, 0, 0, 0, 0, 2]); // one nonzero per row: exact in int8
    const bias = new Float32Array([0.5, -1, 2]);
    const C = addon.kernels.gemm({ A, W, bias, M, N, K, format: 'int8' });
    expect(Array.from(C.subarray(0, 3))).toEqual([0.5, -1, 2]);
    // row 1: A quantized with scale 4/127: 1 -> 32/127*4 = 1.0079, -2 -> -2.0157, -4 exact
    expect(C[3]).toBeCloseTo(0.5 + 1, 1);
    expect(C[4]).toBeCloseTo(-1 + 6, 1);
    expect(C[5]).toBeCloseTo(2 - 8, 5);
  });

  test('softplus is accurate across its range (incl. the threshold at 20 and tiny values)', () => {
    const T = 1,
      E = 64,
      N = 1;
    const dtRaw = Float32Array.from({ length: E }, (_, i) => -30 + i * 0.85);
    const r = addon.kernels.scan({
      x: new Float32Array(E),
      dt: dtRaw.slice(),
      A_log: new Float32Array(E),
      B: new Float32Array(1),
      C: new Float32Array(1),
      D: new Float32Array(E),
      z: new Float32Array(E),
      state: new Float32Array(E),
      T,
      E,
      N,
    });
    for (let i = 0; i < E; i++) expect(Math.abs(r.dt[i] - softplus(dtRaw[i])) / softplus(dtRaw[i])).toBeLessThan(3e-7);
  });
});

test('the kernel table has a case of every op, and every op CUDA runs has its CUDA limits', () => {
  expect([...new Set(cases.map((c) => c.op))].sort()).toEqual(['conv1d', 'gemm', 'rmsnorm', 'scan', 'score']);
  expect([...new Set(cases.filter((c) => c.tol.cuda).map((c) => c.op))].sort()).toEqual(['conv1d', 'gemm', 'scan', 'score']);
  // every name once: a case is found by its name in a failure
  expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
});

test('gemm kernel choice: AMX tiles for prefill where the CPU has them, else int8 vpdpbusd with AVX512-VNNI and bf16 vdpbf16ps with AVX512-BF16; decode keeps the vector kernels', async () => {
  const flags = fs.readFileSync('/proc/cpuinfo', 'utf8');
  addon.setIsa(isas[0]);
  const path = async (M: number, format: 'f32' | 'bf16' | 'int8') =>
    (await addon.kernels.gemmTime({ M, N: 64, K: 64, format, reps: 1, minSeconds: 0 })).path;
  expect(await path(32, 'f32')).toBe('f32 fma');
  expect(await path(1, 'bf16')).toBe('bf16 weights, f32 fma');
  const avx512 = isas[0] === 'avx512';
  const amx = avx512 && addon.amxAvailable();
  expect(amx).toBe(avx512 && [' amx_tile', ' amx_bf16', ' amx_int8'].every((f) => flags.includes(f)) && addon.amxAvailable());
  const bf16Prefill = avx512 && / avx512_bf16/.test(flags) ? 'bf16 vdpbf16ps' : 'bf16 weights, f32 fma';
  const int8Vector = avx512 && / avx512_vnni/.test(flags) ? 'int8 vpdpbusd' : 'int8 (portable)';
  expect(await path(32, 'bf16')).toBe(amx ? 'bf16 amx' : bf16Prefill);
  // AMX from 4 rows for bf16, 16 for int8; fewer (decode) stay on the vector kernels
  expect(await path(3, 'bf16')).toBe('bf16 weights, f32 fma');
  expect(await path(4, 'bf16')).toBe(amx ? 'bf16 amx' : 'bf16 weights, f32 fma');
  expect(await path(15, 'bf16')).toBe(amx ? 'bf16 amx' : 'bf16 weights, f32 fma');
  expect(await path(16, 'bf16')).toBe(amx ? 'bf16 amx' : bf16Prefill);
  expect(await path(1, 'int8')).toBe(int8Vector);
  expect(await path(15, 'int8')).toBe(int8Vector);
  expect(await path(16, 'int8')).toBe(amx ? 'int8 amx' : int8Vector);
  expect(addon.amxActive()).toBe(amx);
  if (amx) {
    // the switch tests and SIMBA_NO_AMX use: off gives the vector kernels back
    expect(addon.setAmx(false)).toBe(false);
    expect(addon.amxActive()).toBe(false);
    try {
      expect(await path(32, 'bf16')).toBe(bf16Prefill);
      expect(await path(32, 'int8')).toBe(int8Vector);
    } finally {
      expect(addon.setAmx(true)).toBe(true);
    }
  } else {
    expect(() => addon.setAmx(true)).toThrow(/does not support AMX/);
    expect(addon.setAmx(false)).toBe(false);
  }
  expect(() => addon.setAmx('yes' as never)).toThrow(/setAmx\(on: boolean\)/);
  // SIMBA_NO_AMX=1 starts a process with AMX off
  const script = `const a = require(${JSON.stringify(process.env.SIMBA_ADDON_PATH || require.resolve('../build/Release/simba_ssm.node'))});
    a.kernels.gemmTime({ M: 32, N: 64, K: 64, format: 'bf16', reps: 1, minSeconds: 0 }).then((r) => console.log(r.path));`;
  const child = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, SIMBA_NO_AMX: '1' }, timeout: 20000 });
  expect(child.stdout.toString().trim()).toBe(bf16Prefill);
  expect(() => addon.kernels.gemmTime({ M: 1, N: 1, K: 1, format: 'int3' as never })).toThrow(/format must be/);
});

test('int8 gemm gives the same numbers on every build (vpdpbusd and pmaddwd compute the same integers)', () => {
  const M = 37,
    N = 70,
    K = 300; // one k-slice: the float epilogues then match exactly
  const A = randArray(M * K, seed0 + 91),
    W = randArray(N * K, seed0 + 92),
    bias = randArray(N, seed0 + 93);
  const outs = isas.map((isa) => {
    addon.setIsa(isa);
    return addon.kernels.gemm({ A, W, bias, M, N, K, format: 'int8' });
  });
  addon.setIsa(isas[0]);
  for (const o of outs.slice(1)) expect(Array.from(o)).toEqual(Array.from(outs[0]));
});

// AMX tiles (16 x 16 results, 32 bf16 / 64 int8 k per tile) against float64 and against the vector
// kernels, on shapes with row, column and k tails, one and several k-slices; skipped where the CPU
// or OS has no AMX.
const amxDescribe = isas[0] === 'avx512' && addon.amxAvailable() ? describe : describe.skip;
amxDescribe('AMX gemm', () => {
  beforeAll(() => addon.setIsa(isas[0]));
  afterAll(() => addon.setAmx(true));
  const shapes = [
    [4, 70, 100],
    [9, 33, 1300],
    [16, 32, 64],
    [17, 45, 48],
    [33, 64, 1300],
    [200, 45, 1031],
    [129, 17, 2049],
  ];
  test.each(shapes)(`M=%i N=%i K=%i against float64 and the vector kernels (seed ${seed0})`, async (M, N, K) => {
    const A = randArray(M * K, seed0 + 13 * M),
      W = randArray(N * K, seed0 + 13 * N),
      bias = randArray(N, seed0 + 13 * K);
    const ref = refGemm(A, W, bias, M, N, K);
    const run = (format: 'bf16' | 'int8') => addon.kernels.gemm({ A, W, bias, M, N, K, format });
    const pathOf = async (format: 'bf16' | 'int8') =>
      (await addon.kernels.gemmTime({ M, N, K, format, reps: 1, minSeconds: 0 })).path;
    addon.setAmx(true);
    expect(await pathOf('bf16')).toBe('bf16 amx');
    expect(await pathOf('int8')).toBe(M >= 16 ? 'int8 amx' : 'int8 vpdpbusd');
    const bfAmx = run('bf16'),
      q8Amx = run('int8');
    addon.setAmx(false);
    const bfVec = run('bf16'),
      q8Vec = run('int8');
    addon.setAmx(true);
    // bf16: A and W rounded to 8 mantissa bits, f32 accumulation in both kernels
    const ebA = relErr(bfAmx, ref),
      ebV = relErr(bfVec, ref);
    expect(ebA).toBeLessThan(5e-3);
    if (M >= 16) {
      // against vdpbf16ps: the same roundings of A and W, another summation order
      expect(ebA).toBeLessThan(1.5 * ebV + 1e-6);
      expect(relErr(bfAmx, bfVec)).toBeLessThan(1e-5);
    } else {
      // below 16 rows the vector kernel widens W to f32 and keeps A exact: only W's rounding
      expect(ebV).toBeLessThan(ebA);
    }
    // int8: the same integer dot products and the same epilogue; one k-slice (K <= 1024) is exact
    expect(relErr(q8Amx, ref)).toBeLessThan(1.5e-2);
    if (K <= 1024) expect(Array.from(q8Amx)).toEqual(Array.from(q8Vec));
    else expect(relErr(q8Amx, q8Vec)).toBeLessThan(1e-6);
  });
});

test('machine limits: positive, finite bandwidth, FMA peak and the dot-product peaks where they run', async () => {
  const l = await addon.kernels.limits({ reps: 1, bufferMB: 32 });
  for (const k of ['readGBs1', 'readGBsAll', 'fmaGflops1', 'fmaGflopsAll'] as const) {
    expect(Number.isFinite(l[k])).toBe(true);
    expect(l[k]).toBeGreaterThan(0.1);
  }
  expect(l.threads).toBeGreaterThanOrEqual(1);
  expect(l.bufferBytes).toBe(32 * 2 ** 20);
  // each dot-product peak exactly where its kernel runs
  const path = async (format: 'int8' | 'bf16', M: number) =>
    (await addon.kernels.gemmTime({ M, N: 32, K: 32, format, reps: 1, minSeconds: 0 })).path;
  const amx = (await path('bf16', 2048)) === 'bf16 amx';
  expect(amx).toBe((await path('int8', 2048)) === 'int8 amx');
  if (amx) addon.setAmx(false); // which vector kernels run under AMX
  const bf16Dot = (await path('bf16', 2048)) === 'bf16 vdpbf16ps';
  if (amx) addon.setAmx(true);
  const dots = [
    [(await path('int8', 8)) === 'int8 vpdpbusd', l.int8DotGflops1, l.int8DotGflopsAll],
    [bf16Dot, l.bf16DotGflops1, l.bf16DotGflopsAll],
    [amx, l.amxBf16Gflops1, l.amxBf16GflopsAll],
    [amx, l.amxInt8Gflops1, l.amxInt8GflopsAll],
  ] as const;
  for (const [runs, one, all] of dots) {
    if (!runs) {
      expect(one).toBeUndefined();
      expect(all).toBeUndefined();
      continue;
    }
    for (const v of [one, all]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0.1);
    }
  }
  expect(() => addon.kernels.limits({ reps: 0 })).toThrow(/reps must be an integer/);
});

test('unknown instruction set is a clear error', () => {
  expect(() => addon.setIsa('avx9000')).toThrow(/unknown instruction set 'avx9000'/);
});

test('fresh processes running a threaded kernel right after loading the addon never hang', () => {
  // Regression: the thread pool's workers could miss a job posted before they started running.
  const script = `const a = require(${JSON.stringify(process.env.SIMBA_ADDON_PATH || require.resolve('../build/Release/simba_ssm.node'))});
    const M = 64, N = 256, K = 256;
    const r = a.kernels.gemm({ A: new Float32Array(M * K).fill(1), W: new Float32Array(N * K).fill(1), M, N, K, bf16: false });
    if (r[0] !== K) process.exit(3);`;
  for (let i = 0; i < repeats(12, 4); i++) {
    const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
  }
});
