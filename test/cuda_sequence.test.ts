/**
 * Device-resident sequence states through the TypeScript engine (MambaModel / Sequence on device
 * 'cuda'), on the CUDA backend compiled as host code (libsimba_cuda_emu.so, built by
 * `bash bench/gpu_check.sh --emulate --quick`), against a CPU randomModel of the same seed: prefill,
 * decode, step with native sampling at temperature 0, snapshotAsync / restoreAsync (within the
 * device and across devices), generate(), the scheduler with a prefix cache and n = 2, an aborted
 * decode and step on slots (state untouched), and the errors (sync snapshot / restore / state on a
 * device sequence, a CPU sequence on the device model). The engine's state-copy counters
 * (info().stateBytesToDevice / stateBytesToHost) show that decode and step on slots copy no state,
 * and that a snapshot or restore copies exactly one state.
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
  console.log(`device-sequence tests skipped: ${EMU_LIB} not built (bash bench/gpu_check.sh --emulate --quick)`);
}

// Runs in the child: prints one JSON line with every measured number, token list and error.
const CHILD = String.raw`
const S = require(process.argv[1]);
(async () => {
  const cfg = { vocabSize: 61, dModel: 24, nLayer: 3, dInner: 48, dState: 16, dtRank: 2, dConv: 4, convBias: true,
                projBias: false, eps: 1e-5, tieEmbeddings: true, bosTokenId: null, eosTokenId: null, padTokenId: null };
  const cpu = await S.randomModel(cfg, { seed: 7 });
  const dev = await S.randomModel(cfg, { seed: 7, device: 'cuda' });
  const SB = dev.info().stateBytes;
  let s = 4321;
  const tok = () => { s = (s * 1103515245 + 12345) % 2147483648; return s % cfg.vocabSize; };
  const toks = (n) => Array.from({ length: n }, tok);
  const rel = (x, y) => { let n = 0, d = 0; for (let i = 0; i < y.length; i++) { n += (x[i] - y[i]) ** 2; d += y[i] ** 2; }
                          return x.length === y.length ? Math.sqrt(n / d) : Infinity; };
  const relRows = (a, b) => Math.max(...a.map((r, i) => rel(r, b[i])));
  const floats = (buf) => new Float32Array(buf.buffer.slice(buf.byteOffset + 32, buf.byteOffset + buf.byteLength)); // after the 32-byte header
  const copies = () => { const i = dev.info(); return [i.stateBytesToDevice, i.stateBytesToHost]; };
  const since = (c0) => { const c = copies(); return [c[0] - c0[0], c[1] - c0[1]]; };
  const out = { device: dev.info().device, seqDevice: dev.newSequence().device, SB, err: {} };

  // prefill a batch (all positions), then decode steps
  const prompts = [toks(5), toks(1), toks(9)];
  const a = await cpu.prefill(prompts.map((tokens) => ({ tokens })), { logits: 'all' });
  let c0 = copies();
  const b = await dev.prefill(prompts.map((tokens) => ({ tokens })), { logits: 'all' });
  out.prefillCopies = since(c0);
  out.prefill = Math.max(...a.map((r, i) => relRows(b[i].logits, r.logits)));
  const cs = a.map((r) => r.sequence), ds = b.map((r) => r.sequence);
  out.decode = [];
  c0 = copies();
  for (let i = 0; i < 4; i++) {
    const next = toks(3);
    out.decode.push(relRows(await dev.decode(ds, next), await cpu.decode(cs, next)));
  }
  out.decodeCopies = since(c0);

  // decode at batch 256: no state crosses to the host
  const many = Array.from({ length: 256 }, () => dev.newSequence());
  await dev.prefill(many.map((sequence, i) => ({ sequence, tokens: [i % cfg.vocabSize, 1] })), { logits: 'none' });
  c0 = copies();
  for (let i = 0; i < 3; i++)
    await dev.decodeSample(many, many.map((_, j) => (i + j) % cfg.vocabSize), many.map(() => ({ temperature: 0, rng: S.rngFromSeed(0) })));
  out.batch256Copies = since(c0);
  for (const q of many) q.dispose();

  // step: a decode token, a prompt chunk and a new prompt, sampled natively at temperature 0
  const mk = (seqs, fresh) => [
    { sequence: seqs[0], tokens: [3], sample: [{ temperature: 0, rng: S.rngFromSeed(1), logprobs: 2 }] },
    { sequence: seqs[1], tokens: [4, 5, 6, 7], sample: [{ temperature: 0, rng: S.rngFromSeed(2) }] },
    { sequence: seqs[2], tokens: [8] },
    { sequence: fresh, tokens: [9, 10, 11], sample: [{ temperature: 0, rng: S.rngFromSeed(3) }] },
  ];
  const cfresh = cpu.newSequence(), dfresh = dev.newSequence();
  c0 = copies();
  const sa = await cpu.step(mk(cs, cfresh)), sb = await dev.step(mk(ds, dfresh));
  out.stepCopies = since(c0);
  out.stepTokens = [sa.samples.map((x) => x.map((y) => y.token)), sb.samples.map((x) => x.map((y) => y.token))];
  out.stepLogprob = Math.abs(sa.samples[0][0].logprob - sb.samples[0][0].logprob);
  const t0 = [], t1 = [];
  for (let i = 0; i < 5; i++) {
    const [x] = await cpu.decodeSample([cs[0]], [i + 1], [{ temperature: 0, rng: S.rngFromSeed(0) }]);
    const [y] = await dev.decodeSample([ds[0]], [i + 1], [{ temperature: 0, rng: S.rngFromSeed(0) }]);
    t0.push(x.token); t1.push(y.token);
  }
  out.decodeSample = [t0, t1];

  // snapshotAsync / restoreAsync: one state each way, continuing identically
  c0 = copies();
  const snap = await ds[1].snapshotAsync();
  out.snapCopies = since(c0);
  out.snapState = rel(floats(snap), cs[1].state);
  out.snapPosition = [ds[1].position, cs[1].position];
  const cpuSnap = cs[1].snapshot();
  out.asyncOnCpu = (await cs[1].snapshotAsync()).equals(cpuSnap);
  const cont = toks(3);
  const goOn = async (m, seq) => { const r = []; for (const t of cont) r.push((await m.decode([seq], [t]))[0]); return r; };
  const first = await goOn(dev, ds[1]);
  const copy = dev.newSequence();
  c0 = copies();
  await copy.restoreAsync(snap);
  out.restoreCopies = since(c0);
  out.copyPosition = copy.position;
  out.replay = relRows(await goOn(dev, copy), first);
  await ds[1].restoreAsync(snap);
  out.replaySelf = relRows(await goOn(dev, ds[1]), first);
  const fromCpu = dev.newSequence();
  await fromCpu.restoreAsync(cpuSnap);          // across devices, both ways
  const toCpu = cpu.newSequence();
  await toCpu.restoreAsync(snap);
  out.crossDevice = Math.max(relRows(await goOn(dev, fromCpu), await goOn(cpu, cs[1])), relRows(await goOn(cpu, toCpu), first));
  const emptySnap = await dev.newSequence().snapshotAsync();
  out.emptySnap = floats(emptySnap).every((v) => v === 0);

  // aborted decode and step on slots: the state is as before
  const before = await ds[2].snapshotAsync();
  const ac = new AbortController();
  const pd = dev.decode([ds[2]], [5], { signal: ac.signal });
  ac.abort(new Error('stop'));
  out.abortDecode = await pd.then(() => 'resolved', (e) => e.code);
  out.abortDecodeUntouched = (await ds[2].snapshotAsync()).equals(before);
  const ac2 = new AbortController();
  const ps = dev.step([{ sequence: ds[2], tokens: [1, 2, 3], sample: [{ temperature: 0, rng: S.rngFromSeed(0) }] }], { signal: ac2.signal });
  setImmediate(() => ac2.abort());
  out.abortStep = await ps.then(() => 'resolved', (e) => e.code);
  out.abortUntouched = (await ds[2].snapshotAsync()).equals(before);
  const okSig = new AbortController();
  const withSig = await dev.decode([ds[2]], [5], { signal: okSig.signal });
  const noSig = await cpu.decode([cs[2]], [5]);
  out.signalDecode = rel(withSig[0], noSig[0]);

  // reset() gives the slot back; the sequence starts from zeros again
  ds[0].reset();
  cs[0].reset();
  out.reset = relRows((await dev.prefill([{ sequence: ds[0], tokens: [1, 2] }]))[0].logits,
                      (await cpu.prefill([{ sequence: cs[0], tokens: [1, 2] }]))[0].logits);

  // generate() and logits()
  const gen = async (m, o) => { const r = []; for await (const p of S.generate(m, [1, 2, 3, 4], o)) r.push(p.token); return r; };
  out.generate = [await gen(cpu, { maxTokens: 12, temperature: 0 }), await gen(dev, { maxTokens: 12, temperature: 0 })];
  out.generateSignal = await gen(dev, { maxTokens: 12, temperature: 0, signal: new AbortController().signal });
  const lt = toks(20);
  out.logits = relRows((await dev.logits(lt, 'all')).logits, (await cpu.logits(lt, 'all')).logits);

  // the scheduler with a prefix cache and n = 2 (snapshotAsync / restoreAsync inside)
  const serve = async (m) => {
    const sched = new S.Scheduler(m, { cache: new S.PrefixCache({ maxBytes: 1 << 24, blockTokens: 4 }), maxRunning: 8 });
    const prompt = toksFrom(7, 11);
    const run = () => new Promise((res) => {
      const got = [[], []];
      sched.submit({ prompt, maxTokens: 6, sampling: [{ temperature: 0, rng: S.rngFromSeed(1) }, { temperature: 0, rng: S.rngFromSeed(2) }],
                     stopAtEos: false, onEvent: (e) => { if (e.type === 'token') got[e.choice].push(e.token); if (e.type === 'done' || e.type === 'error') res(e.type === 'error' ? e.error.message : got); } });
    });
    const r1 = await run(), r2 = await run();
    await sched.close(1000);
    return [r1, r2];
  };
  const toksFrom = (seed, n) => { let x = seed; return Array.from({ length: n }, () => { x = (x * 69069 + 1) % 4294967296; return x % cfg.vocabSize; }); };
  out.serve = [await serve(cpu), await serve(dev)];

  // errors
  const code = (f) => { try { f(); return 'no error'; } catch (e) { return e.code + ' ' + e.message; } };
  const acode = async (f) => { try { await f(); return 'no error'; } catch (e) { return e.code + ' ' + e.message; } };
  out.err.snapshot = code(() => ds[1].snapshot());
  out.err.restore = code(() => ds[1].restore(snap));
  out.err.state = code(() => ds[1].state);
  out.err.cpuSeqOnDevice = await acode(() => dev.decode([cs[1]], [1]));
  out.err.devSeqOnCpu = await acode(() => cpu.decode([ds[1]], [1]));
  out.err.badSnapshot = await acode(() => ds[1].restoreAsync(new Uint8Array(3)));
  const gone = dev.newSequence();
  await dev.decode([gone], [1]);
  gone.dispose();
  out.err.disposedSeq = await acode(() => gone.snapshotAsync());
  dev.dispose();
  ds[1].dispose();                                // after the model: nothing to free, no error
  out.err.disposedModel = await acode(() => ds[2].snapshotAsync());
  cpu.dispose();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
`;

(have || required ? describe : describe.skip)('device-resident sequences (emulated CUDA backend)', () => {
  test('a cuda model matches the CPU model with its states kept on the device', () => {
    if (!have) throw new Error(`SIMBA_TEST_CUDA_EMU is set but ${EMU_LIB} does not exist`);
    const r = spawnSync(process.execPath, ['-e', CHILD, path.join(ROOT, 'dist', 'lib', 'index.js')], {
      env: { ...process.env, SIMBA_CUDA_LIB: EMU_LIB },
      encoding: 'utf8',
      timeout: 150000,
    });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect([out.device, out.seqDevice]).toEqual(['cuda', 'cuda']);
    // prefill, decode and step on slots: the CPU's logits and tokens, no state copied
    expect(out.prefill).toBeLessThan(1e-4);
    expect(out.prefillCopies).toEqual([0, 0]);
    expect(out.decode).toHaveLength(4);
    for (const e of out.decode) expect(e).toBeLessThan(1e-4);
    expect(out.decodeCopies).toEqual([0, 0]);
    expect(out.stepCopies).toEqual([0, 0]);
    expect(out.batch256Copies).toEqual([0, 0]);
    expect(out.stepTokens[1]).toEqual(out.stepTokens[0]);
    expect(out.stepTokens[0].map((x: number[]) => x.length)).toEqual([1, 1, 0, 1]);
    expect(out.stepLogprob).toBeLessThan(1e-4);
    expect(out.decodeSample[1]).toEqual(out.decodeSample[0]);
    // snapshot / restore: one state each, continuing identically (and across devices)
    expect(out.snapCopies).toEqual([0, out.SB]);
    expect(out.restoreCopies).toEqual([out.SB, 0]);
    expect(out.snapState).toBeLessThan(1e-4);
    expect(out.snapPosition[0]).toBe(out.snapPosition[1]);
    expect(out.copyPosition).toBe(out.snapPosition[0]);
    expect(out.asyncOnCpu).toBe(true);
    expect(out.replay).toBeLessThan(1e-6);
    expect(out.replaySelf).toBeLessThan(1e-6);
    expect(out.crossDevice).toBeLessThan(1e-4);
    expect(out.emptySnap).toBe(true);
    // aborts leave the slot as it was; a signal that does not fire changes nothing
    expect(out.abortDecode).toBe('E_ABORTED');
    expect(out.abortDecodeUntouched).toBe(true);
    expect(['E_ABORTED', 'resolved']).toContain(out.abortStep);
    expect(out.abortUntouched).toBe(out.abortStep === 'E_ABORTED');
    expect(out.signalDecode).toBeLessThan(1e-4);
    expect(out.reset).toBeLessThan(1e-4);
    expect(out.generate[0]).toHaveLength(12);
    expect(out.generate[1]).toEqual(out.generate[0]);
    expect(out.generateSignal).toEqual(out.generate[0]);
    expect(out.logits).toBeLessThan(1e-4);
    // the scheduler (prefix cache hit on the second request, n = 2 copies): the same tokens
    expect(out.serve[0][0][0]).toHaveLength(6);
    expect(out.serve[1]).toEqual(out.serve[0]);
    expect(out.serve[0][1]).toEqual(out.serve[0][0]);
    // errors
    expect(out.err.snapshot).toMatch(/^E_ARG snapshot: .*lives on the GPU.*snapshotAsync\(\)/);
    expect(out.err.restore).toMatch(/^E_ARG restore: .*restoreAsync\(buf\)/);
    expect(out.err.state).toMatch(/^E_ARG state: .*snapshotAsync\(\)/);
    expect(out.err.cpuSeqOnDevice).toMatch(/^E_ARG decode: sequences\[0\]: is a CPU sequence/);
    expect(out.err.devSeqOnCpu).toMatch(/^E_ARG decode: sequences\[0\]: belongs to a model on device 'cuda'/);
    expect(out.err.badSnapshot).toMatch(/^E_ARG restoreAsync: not a simba-ssm sequence snapshot/);
    expect(out.err.disposedSeq).toMatch(/^E_DISPOSED/);
    expect(out.err.disposedModel).toMatch(/^E_DISPOSED snapshotAsync: the model has been disposed/);
  }, 180000);
});
