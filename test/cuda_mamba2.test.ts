/**
 * Mamba-2 (SSD) on the CUDA engine, through the TypeScript engine (randomModel on device 'cuda'), on
 * the CUDA backend compiled as host code (libsimba_cuda_emu.so, built by
 * `bash bench/gpu_check.sh --emulate --quick`), against a CPU randomModel of the same seed (the CPU
 * engine is itself checked against the float64 reference in test/mamba2.test.ts):
 *   - every position of a prefill whose prompt ends inside the device's second 64-token chunk, and of
 *     one that ends exactly on the first chunk's end;
 *   - decode steps of a batch after it (device-resident states), and a device snapshot restored into
 *     a CPU sequence (the same state layout) that then decodes alike;
 *   - Simba-pruned prefills with keep counts (criteria simba and local, reduce max and sum): the same
 *     exit layers and logits;
 *   - a model with more heads than a grid dimension holds is refused with E_CONFIG.
 * The model has G = 2 groups, head_dim 12 != d_state 8, an untied head and dt clamped at both ends.
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
  console.log(`Mamba-2 device tests skipped: ${EMU_LIB} not built (bash bench/gpu_check.sh --emulate --quick)`);
}

const TOL = 1e-4; // device against CPU, relative per position (as simba_gpu_check's f32 limit)

// Runs in the child: prints one JSON line with every measured number and error message.
const CHILD = String.raw`
const S = require(process.argv[1]);
(async () => {
  const cfg = { vocabSize: 61, dModel: 24, nLayer: 3, dInner: 48, dState: 8, dtRank: 0, dConv: 4, convBias: true,
                projBias: false, eps: 1e-5, tieEmbeddings: false, bosTokenId: null, eosTokenId: null, padTokenId: null,
                mamba2: { nHeads: 4, headDim: 12, nGroups: 2, chunkSize: 256, dtLimit: [0.002, 0.08] } };
  const cpu = await S.randomModel(cfg, { seed: 5 });
  const dev = await S.randomModel(cfg, { seed: 5, device: 'cuda' });
  let s = 777;
  const tok = () => { s = (s * 1103515245 + 12345) % 2147483648; return s % cfg.vocabSize; };
  const toks = (n) => Array.from({ length: n }, tok);
  const rel = (x, y) => { let n = 0, d = 0; for (let i = 0; i < y.length; i++) { n += (x[i] - y[i]) ** 2; d += y[i] ** 2; }
                          return x.length === y.length ? Math.sqrt(n / d) : Infinity; };
  const relRows = (a, b) => a.length === b.length ? Math.max(...a.map((r, i) => rel(r, b[i]))) : Infinity;
  const out = { device: dev.info().device, stateBytes: [cpu.info().stateBytes, dev.info().stateBytes] };

  // prefill (every position), prompts ending inside the second device chunk and on the first's end
  const prompts = [toks(70), toks(64), toks(1)];
  const a = await cpu.prefill(prompts.map((tokens) => ({ tokens })), { logits: 'all' });
  const b = await dev.prefill(prompts.map((tokens) => ({ tokens })), { logits: 'all' });
  out.prefill = a.map((r, i) => relRows(b[i].logits, r.logits));
  out.positions = b.map((r) => r.logits.length);
  const cs = a.map((r) => r.sequence), ds = b.map((r) => r.sequence);
  out.decode = [];
  for (let i = 0; i < 3; i++) {
    const next = toks(3);
    out.decode.push(relRows(await dev.decode(ds, next), await cpu.decode(cs, next)));
  }
  // a device state continues on the CPU as the CPU's own state does
  const toCpu = cpu.newSequence();
  await toCpu.restoreAsync(await ds[0].snapshotAsync());
  const cont = toks(3), viaSnap = [], direct = [];
  for (const t of cont) {
    viaSnap.push((await cpu.decode([toCpu], [t]))[0]);
    direct.push((await cpu.decode([cs[0]], [t]))[0]);
  }
  out.crossDevice = relRows(viaSnap, direct);

  // Simba-pruned prefills with keep counts
  const ids = prompts[0];
  out.simba = {};
  for (const [criterion, reduce] of [['simba', 'max'], ['simba', 'sum'], ['local', 'max'], ['local', 'sum']]) {
    const simba = { keepCounts: [50, 30, 12], criterion, reduce };
    const [c, d] = [await cpu.logits(ids, 'all', { simba }), await dev.logits(ids, 'all', { simba })];
    out.simba[criterion + ' ' + reduce] = { logits: relRows(d.logits, c.logits), exits: Array.from(d.exitLayer),
                                            cpuExits: Array.from(c.exitLayer) };
  }
  // more heads than a grid dimension holds: refused when the model is made, naming the limit
  const wide = { ...cfg, dModel: 4, dInner: 65536, dState: 1,
                 mamba2: { nHeads: 65536, headDim: 1, nGroups: 1, chunkSize: 256, dtLimit: [0, Infinity] } };
  out.wide = await S.randomModel(wide, { seed: 1, device: 'cuda' }).then(() => 'no error', (e) => [e.code, e.message]);
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
`;

(have || required ? describe : describe.skip)('Mamba-2 on the emulated CUDA backend', () => {
  test('prefill, decode, a snapshot across devices and Simba-pruned prefills match the CPU; 65536 heads are E_CONFIG', () => {
    if (!have) throw new Error(`SIMBA_TEST_CUDA_EMU is set but ${EMU_LIB} does not exist`);
    const r = spawnSync(process.execPath, ['-e', CHILD, path.join(ROOT, 'dist', 'lib', 'index.js')], {
      env: { ...process.env, SIMBA_CUDA_LIB: EMU_LIB },
      encoding: 'utf8',
      timeout: 300000, // alone it takes 3 s; beside other jest workers on 2 cores far longer
    });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(out.device).toBe('cuda');
    // conv state [E + 2GN, K-1] and SSM state [H, P, N] per layer, the same on both engines
    expect(out.stateBytes[1]).toBe(out.stateBytes[0]);
    expect(out.positions).toEqual([70, 64, 1]);
    for (const e of out.prefill) expect(e).toBeLessThan(TOL);
    expect(out.decode).toHaveLength(3);
    for (const e of out.decode) expect(e).toBeLessThan(TOL);
    expect(out.crossDevice).toBeLessThan(TOL);
    for (const [name, v] of Object.entries(out.simba) as [string, { logits: number; exits: number[]; cpuExits: number[] }][]) {
      // the same kept sets, of the sizes the keep counts say: 70 -> 50 -> 30 (the last layer's 12 change nothing
      // above it: its dropped tokens end there as the kept ones do)
      expect({ name, exits: v.exits }).toEqual({ name, exits: v.cpuExits });
      expect([1, 2, 3].map((l) => v.exits.filter((e) => e === l).length)).toEqual([20, 20, 30]);
      expect({ name, err: v.logits < TOL }).toEqual({ name, err: true });
    }
    expect(out.wide).toEqual(['E_CONFIG', expect.stringMatching(/at most 65535 Mamba-2 heads \(nHeads 65536\)/)]);
  }, 320000);
});
