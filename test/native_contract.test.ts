/**
 * The native folders' layering and their shared contract (native/common/): what the CPU kernels,
 * the engine, the CUDA library and the N-API layer share lives in native/common/, and each folder
 * includes only what is below it:
 *   common/  nothing of ours but common/
 *   cpu/     cpu/ and common/ (kernels never reach up into the engine)
 *   cuda/    cuda/ and common/ (a library built on its own; emu/emu_test.cc, a test program that
 *            compares it with the CPU engine, is the exception)
 *   engine/  engine/, cpu/, common/
 * The shape limits are defined once, the Simba criterion is one enum (backend_api.h) that the
 * binding mirrors once, and the engines check it once (common/request_check.h): the addon passes
 * the Simba options on as given.
 */
import * as fs from 'fs';
import * as path from 'path';

import { loadAddon, NATIVE_CRITERION, type NativeConfig, type NativeCriterion } from '../bindings';

const nativeDir = path.join(__dirname, '..', 'native');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(h|cc|cu|cuh)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Our own includes of a file (quoted), as folders under native/: "cpu", "common", ... */
function includedFolders(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const dir = path.dirname(file);
  return [...text.matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)].map((m) => {
    const inc = m[1];
    // "x.h" and "../common/x.h" resolve from the file's folder, "common/x.h" from native/
    const local = path.resolve(dir, inc);
    const target = fs.existsSync(local) ? local : path.resolve(nativeDir, inc);
    return path.relative(nativeDir, target).split(path.sep)[0];
  });
}

const rel = (f: string) => path.relative(nativeDir, f);

describe('native layering', () => {
  const allowed: Record<string, string[]> = {
    common: ['common'],
    cpu: ['cpu', 'common'],
    cuda: ['cuda', 'common'],
    engine: ['engine', 'cpu', 'common'],
    constrain: ['constrain', 'common'],
  };
  test.each(Object.keys(allowed))('native/%s includes only what is below it', (folder) => {
    const bad: string[] = [];
    for (const f of sources(path.join(nativeDir, folder))) {
      if (rel(f) === path.join('cuda', 'emu', 'emu_test.cc')) continue;
      for (const to of includedFolders(f)) if (!allowed[folder].includes(to)) bad.push(`${rel(f)} includes ${to}/`);
    }
    expect(bad).toEqual([]);
  });

  test('includes resolve to their folders, relative ones and those from native/ alike', () => {
    expect(includedFolders(path.join(nativeDir, 'cpu', 'dispatch.cc')).sort()).toEqual(['common', 'cpu']);
    expect(includedFolders(path.join(nativeDir, 'napi', 'addon.cc'))).toEqual(expect.arrayContaining(['engine', 'cpu']));
  });

  test('kMaxConv and kMaxState are defined once, in native/common/', () => {
    const defs = sources(nativeDir).flatMap((f) =>
      [...fs.readFileSync(f, 'utf8').matchAll(/\b(kMaxConv|kMaxState)\s*=\s*\d+/g)].map((m) => `${rel(f)}: ${m[1]}`),
    );
    expect(defs).toEqual([
      `${path.join('common', 'shape_limits.h')}: kMaxConv`,
      `${path.join('common', 'shape_limits.h')}: kMaxState`,
    ]);
  });

  // (a lower bound of 0 is a range check, not a criterion)
  test('no criterion is compared with a number: the code names the enum', () => {
    const bad = sources(nativeDir).flatMap((f) =>
      fs
        .readFileSync(f, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, i }))
        .filter(({ line }) => /\bcrit\w*\s*((==|!=)\s*-?\d|(<=|>=|<|>)\s*-?[1-9])/.test(line))
        .map(({ line, i }) => `${rel(f)}:${i + 1}: ${line.trim()}`),
    );
    expect(bad).toEqual([]);
  });
});

describe('the Simba criterion', () => {
  test("backend_api.h's simba_criterion_t and the binding's NATIVE_CRITERION agree", () => {
    const header = fs.readFileSync(path.join(nativeDir, 'common', 'backend_api.h'), 'utf8');
    const values = Object.fromEntries(
      [...header.matchAll(/^\s*SIMBA_CRITERION_([A-Z]+) = (\d+)/gm)]
        .filter((m) => m[1] !== 'COUNT')
        .map((m) => [m[1].toLowerCase(), Number(m[2])]),
    );
    expect(values).toEqual({ ...NATIVE_CRITERION });
    const count = /SIMBA_CRITERION_COUNT = (\d+)/.exec(header);
    expect(Number(count?.[1])).toBe(Object.keys(NATIVE_CRITERION).length);
  });

  test('the engine checks it: out of range rejects E_ARG naming the value, every criterion runs', async () => {
    const addon = loadAddon();
    const cfg: NativeConfig = {
      vocabSize: 20,
      dModel: 8,
      nLayer: 2,
      dInner: 16,
      dState: 4,
      dtRank: 2,
      dConv: 4,
      convBias: true,
      projBias: false,
      tieEmbeddings: true,
      eps: 1e-5,
    };
    const engine = new addon.Engine(cfg, { bf16: false });
    try {
      await engine.randomize(1);
      const run = (criterion: number) =>
        engine.forward(
          Int32Array.of(1, 2, 3, 4),
          Int32Array.of(4),
          [new Float32Array(engine.info().stateFloats)],
          Int32Array.of(3),
          {
            keep: Int32Array.of(2, 1),
            criterion: criterion as NativeCriterion,
            reduceSum: false,
            protectFirst: 0,
            protectLast: 0,
            seed: 0,
          },
        );
      for (const bad of [-1, 5, 1000]) {
        // a rejected promise (the worker's check), not a synchronous throw of the addon
        const p = run(bad);
        await expect(p).rejects.toMatchObject({ code: 'E_ARG' });
        await expect(p).rejects.toThrow(
          `simba.criterion ${bad} is not a criterion (0 to 4: simba, local, norm, uniform, random)`,
        );
      }
      for (const good of Object.values(NATIVE_CRITERION)) {
        const r = await run(good);
        expect(Array.from(r.processed)).toEqual([4, 2]);
        expect(Array.from(r.exitLayer).filter((l) => l === 1)).toHaveLength(2); // dropped after layer 0
      }
    } finally {
      engine.dispose();
    }
  });
});
