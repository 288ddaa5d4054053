/**
 * Device-resident decode states through the addon (Engine.allocState / readState / writeState /
 * freeState, forward with an Int32Array of slots), on the CUDA backend compiled as host code
 * (libsimba_cuda_emu.so, built by `bash bench/gpu_check.sh --emulate --quick`), against the CPU
 * engine with host states: a prefill and decode steps of a batch on slots (logits and read-back
 * states within 1e-4), a snapshot / restore of one slot replayed alone, and the error cases.
 *
 * The addon loads its CUDA library once per process, so the run happens in a child node process
 * with SIMBA_CUDA_LIB pointing at the emulated library. Skipped (with the reason) when that library
 * has not been built; SIMBA_TEST_CUDA_EMU=1 turns its absence into a failure.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..');
const EMU_LIB = process.env.SIMBA_CUDA_EMU_LIB ?? path.join(ROOT, 'build', 'gpu-check', 'libsimba_cuda_emu.so');
const required = !!process.env.SIMBA_TEST_CUDA_EMU && process.env.SIMBA_TEST_CUDA_EMU !== '0';
const have = fs.existsSync(EMU_LIB);
if (!have && !required) {
  console.log(`device-state tests skipped: ${EMU_LIB} not built (bash bench/gpu_check.sh --emulate --quick)`);
}

// Runs in the child: prints one JSON line with every measured number and error message.
const CHILD = String.raw`
const { loadAddon } = require(process.argv[1]);
(async () => {
  const a = loadAddon();
  const st = a.cudaAvailable();
  if (!st.available) throw new Error('emulated backend not loaded: ' + st.reason);
  const cfg = { vocabSize: 61, dModel: 24, nLayer: 3, dInner: 48, dState: 16, dtRank: 2, dConv: 4,
                convBias: true, projBias: false, tieEmbeddings: true, eps: 1e-5 };
  const cpu = new a.Engine(cfg, { bf16: false });
  const dev = new a.Engine(cfg, { bf16: false, device: 'cuda' });
  await cpu.randomize(3);
  await dev.randomize(3);
  const SF = cpu.info().stateFloats;
  let s = 12345;
  const tok = () => { s = (s * 1103515245 + 12345) % 2147483648; return s % cfg.vocabSize; };
  const rel = (x, y) => { let n = 0, d = 0; for (let i = 0; i < y.length; i++) { n += (x[i] - y[i]) ** 2; d += y[i] ** 2; }
                          return x.length === y.length ? Math.sqrt(n / d) : Infinity; };
  const lens = [5, 1, 9];
  const hs = lens.map(() => new Float32Array(SF));
  const slots = [];
  for (let i = 0; i < lens.length; i++) slots.push(await dev.allocState());
  const out = { slots, logits: [], states: 0, snapshot: 0, replay: 0, untouched: false, errors: {} };
  const step = async (ls) => {
    const tokens = Int32Array.from(ls.flatMap((n) => Array.from({ length: n }, tok)));
    const want = []; let off = 0; for (const n of ls) { off += n; want.push(off - 1); }
    const a1 = await cpu.forward(tokens, Int32Array.from(ls), hs, Int32Array.from(want));
    const b1 = await dev.forward(tokens, Int32Array.from(ls), Int32Array.from(slots), Int32Array.from(want));
    out.logits.push(rel(b1.logits, a1.logits));
    return { tokens, b1 };
  };
  await step(lens);
  for (let i = 0; i < 3; i++) await step([1, 1, 1]);
  for (let i = 0; i < lens.length; i++) {
    const got = new Float32Array(SF);
    await dev.readState(slots[i], got);
    out.states = Math.max(out.states, rel(got, hs[i]));
  }
  const snap = new Float32Array(SF);
  await dev.readState(slots[0], snap);
  out.snapshot = rel(snap, hs[0]);
  const last = await step([1, 1, 1]);
  const before = new Float32Array(SF), after = new Float32Array(SF);
  await dev.readState(slots[1], before);
  await dev.writeState(slots[0], snap);
  const replay = await dev.forward(last.tokens.subarray(0, 1), Int32Array.of(1), Int32Array.of(slots[0]), Int32Array.of(0));
  await dev.readState(slots[1], after);
  out.replay = rel(replay.logits, last.b1.logits.subarray(0, cfg.vocabSize));
  out.untouched = before.every((v, i) => v === after[i]);
  const msg = async (f) => { try { await f(); return 'no error'; } catch (e) { return e.message; } };
  out.errors.duplicate = await msg(() => dev.forward(Int32Array.of(1, 2), Int32Array.of(1, 1), Int32Array.of(slots[0], slots[0]), Int32Array.of(0, 1)));
  out.errors.unknown = await msg(() => dev.readState(999, new Float32Array(SF)));
  out.errors.size = await msg(() => dev.readState(slots[0], new Float32Array(3)));
  out.errors.cpu = await msg(() => cpu.allocState());
  await dev.freeState(slots[2]);
  out.errors.freed = await msg(() => dev.readState(slots[2], new Float32Array(SF)));
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
`;

(have || required ? describe : describe.skip)('device-resident states (emulated CUDA backend)', () => {
  test('slots match the CPU engine; snapshot / restore copy one slot; bad slots are refused', () => {
    if (!have) throw new Error(`SIMBA_TEST_CUDA_EMU is set but ${EMU_LIB} does not exist`);
    const r = spawnSync(process.execPath, ['-e', CHILD, path.join(ROOT, 'dist', 'bindings.js')], {
      env: { ...process.env, SIMBA_CUDA_LIB: EMU_LIB },
      encoding: 'utf8',
      timeout: 300000,
    });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(new Set(out.slots).size).toBe(3);
    expect(out.logits).toHaveLength(5);
    for (const e of out.logits) expect(e).toBeLessThan(1e-4);
    expect(out.states).toBeLessThan(1e-4);
    expect(out.snapshot).toBeLessThan(1e-4);
    expect(out.replay).toBeLessThan(1e-5);
    expect(out.untouched).toBe(true);
    expect(out.errors.duplicate).toMatch(/given to two sequences/);
    expect(out.errors.unknown).toMatch(/state slot 999 is not allocated/);
    expect(out.errors.size).toMatch(/this model's state has/);
    expect(out.errors.cpu).toMatch(/only on device 'cuda'/);
    expect(out.errors.freed).toMatch(/not allocated/);
  }, 360000);
});
