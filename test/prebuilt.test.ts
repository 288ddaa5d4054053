/**
 * The install step (scripts/install.js) and the platform packages: a prebuilt addon that loads in
 * the child-process check means nothing is compiled; a crashing or missing one falls back to
 * `cmake-js compile` (CPU only unless SIMBA_CUDA=1), forced by SIMBA_BUILD_FROM_SOURCE=1 or
 * npm_config_build_from_source=true; a failed build prints the loader's full message. cmake-js is
 * replaced by a stand-in that records how it was called. Also: npm/ package metadata and versions,
 * and the CUDA build being opt-in (cmake/cuda.cmake).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { GLIBC_FLOOR, loadAddon, platformInfo } from '../bindings';
import { crashingLibrary, makeFakePackage, mainVersion, realAddon, repoRoot, type FakePackage } from './helpers/fake_package';
import { tmpDir } from './helpers/util';
import { DECODE_ROWS, PREFILL_ROWS } from '../lib/cli/doctor';
import { gemmKernel } from '../lib/platform/machine';

const itPrebuilt = platformInfo().id === 'linux-x64' ? it : it.skip;

/** A stand-in node_modules/cmake-js that records its argv and CUDA env in cmake-js.json and exits with `code`. */
function fakeCmakeJs(pkg: FakePackage, code: number): string {
  const bin = path.join(pkg.root, 'node_modules', 'cmake-js', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, '..', 'package.json'), JSON.stringify({ name: 'cmake-js', version: '0.0.0' }));
  const record = path.join(pkg.root, 'cmake-js.json');
  fs.writeFileSync(
    path.join(bin, 'cmake-js'),
    `require('fs').writeFileSync(${JSON.stringify(record)}, JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd(),
    SIMBA_NO_CUDA: process.env.SIMBA_NO_CUDA ?? null, SIMBA_CUDA: process.env.SIMBA_CUDA ?? null }));\nprocess.exit(${code});\n`,
  );
  return record;
}
const recorded = (file: string) =>
  JSON.parse(fs.readFileSync(file, 'utf8')) as {
    argv: string[];
    cwd: string;
    SIMBA_NO_CUDA: string | null;
    SIMBA_CUDA: string | null;
  };

describe('scripts/install.js', () => {
  itPrebuilt('uses a platform package that loads and compiles nothing', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', { files: { 'simba_ssm.node': { copy: realAddon } } });
    const record = fakeCmakeJs(pkg, 0);
    const r = pkg.runInstall();
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(
        `using the platform package @simba-ssm/linux-x64@${mainVersion.replace(/\./g, '\\.')} \\(.*\\), kernels (avx512|avx2|sse2); nothing to compile`,
      ),
    );
    expect(fs.existsSync(record)).toBe(false);
    expect(fs.existsSync(path.join(pkg.root, 'build'))).toBe(false);
  });

  itPrebuilt('a platform package that crashes on load: reported, then a CPU-only source build', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', {
      files: { 'simba_ssm.node': { copy: crashingLibrary(tmpDir('simba-crash-'), 'aborts', 'abort();') } },
    });
    const record = fakeCmakeJs(pkg, 0);
    const r = pkg.runInstall();
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/platform package @simba-ssm\/linux-x64@[\d.]+ \(.*\): crashed on load \(signal SIGABRT\)/);
    expect(r.stderr).toContain('building the addon from source (CPU only; SIMBA_CUDA=1 adds the CUDA backend)');
    expect(recorded(record)).toEqual({
      argv: ['compile', '--log-level', 'error'],
      cwd: fs.realpathSync(pkg.root),
      SIMBA_NO_CUDA: '1',
      SIMBA_CUDA: null,
    });
  });

  itPrebuilt('crashing prebuilt and a failing build: the install fails cleanly with the full message', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', {
      files: { 'simba_ssm.node': { copy: crashingLibrary(tmpDir('simba-crash-'), 'segv', 'volatile int* p = 0; *p = 1;') } },
    });
    fakeCmakeJs(pkg, 3);
    const r = pkg.runInstall();
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('could not load the native addon');
    expect(r.stderr).toMatch(/- platform package @simba-ssm\/linux-x64@[\d.]+ \(.*\): crashed on load \(signal SIGSEGV\)/);
    expect(r.stderr).toContain('- source build: `cmake-js compile` failed (exit 3');
    expect(r.stderr).toContain('Possible solutions:');
  });

  it('no platform package and no compiler on PATH: fails naming what is missing, without running cmake-js', () => {
    const pkg = makeFakePackage();
    const record = fakeCmakeJs(pkg, 0);
    const bin = tmpDir('simba-bin-');
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const r = pkg.runInstall({ PATH: bin, CXX: '' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('- source build: not possible: cmake and a C++ compiler (c++, g++ or clang++) not found on PATH');
    expect(r.stderr).toContain('Possible solutions:');
    expect(fs.existsSync(record)).toBe(false);
  });

  it('no platform package and no cmake-js: fails naming both', () => {
    const pkg = makeFakePackage();
    const r = pkg.runInstall();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('not installed');
    expect(r.stderr).toContain('- source build: cmake-js is not installed');
  });

  for (const [name, env] of [
    ['SIMBA_BUILD_FROM_SOURCE=1', { SIMBA_BUILD_FROM_SOURCE: '1' }],
    ['npm_config_build_from_source=true', { npm_config_build_from_source: 'true' }],
  ] as const) {
    itPrebuilt(`${name} builds even when a prebuilt loads; SIMBA_CUDA=1 keeps the CUDA backend`, () => {
      const pkg = makeFakePackage();
      pkg.addPlatformPackage('linux-x64', { files: { 'simba_ssm.node': { copy: realAddon } } });
      const record = fakeCmakeJs(pkg, 0);
      const r = pkg.runInstall({ ...env, SIMBA_CUDA: '1' });
      expect(r.status).toBe(0);
      expect(r.stderr).toContain('building the addon from source (CPU + CUDA backend)');
      expect(recorded(record)).toMatchObject({ argv: ['compile', '--log-level', 'error'], SIMBA_NO_CUDA: null, SIMBA_CUDA: '1' });
    });
  }

  itPrebuilt('an existing local build is rebuilt (incrementally), not trusted as is', () => {
    const pkg = makeFakePackage();
    fs.mkdirSync(path.join(pkg.root, 'build', 'Release'), { recursive: true });
    fs.copyFileSync(realAddon, path.join(pkg.root, 'build', 'Release', 'simba_ssm.node'));
    const record = fakeCmakeJs(pkg, 0);
    expect(pkg.runInstall().status).toBe(0);
    expect(recorded(record).argv).toEqual(['compile', '--log-level', 'error']);
  });

  it('a source checkout (no dist/bindings.js) builds from source', () => {
    const pkg = makeFakePackage();
    fs.rmSync(path.join(pkg.root, 'dist'), { recursive: true });
    const record = fakeCmakeJs(pkg, 0);
    expect(pkg.runInstall().status).toBe(0);
    expect(recorded(record).argv).toEqual(['compile', '--log-level', 'error']);
  });
});

describe('platform packages (npm/)', () => {
  interface PackageJson {
    name: string;
    version: string;
    os?: string[];
    cpu?: string[];
    libc?: string[];
    files: string[];
    config?: Record<string, string>;
    scripts: Record<string, string>;
    optionalDependencies: Record<string, string>;
  }
  const read = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as PackageJson;
  const main = read(path.join(repoRoot, 'package.json'));

  it("declare os, cpu, libc and the glibc floor, and are the main package's optional dependencies at its version", () => {
    const dirs = fs.readdirSync(path.join(repoRoot, 'npm')).sort();
    expect(dirs).toEqual(['linux-x64', 'linux-x64-cuda']);
    for (const d of dirs) {
      const p = read(path.join(repoRoot, 'npm', d, 'package.json'));
      expect(p).toMatchObject({
        name: `@simba-ssm/${d}`,
        version: main.version,
        os: ['linux'],
        cpu: ['x64'],
        libc: ['glibc'],
        config: { glibc: GLIBC_FLOOR },
      });
      expect(p.files).toContain(d.endsWith('-cuda') ? 'libsimba_cuda.so' : 'simba_ssm.node');
      expect(fs.existsSync(path.join(repoRoot, 'npm', d, 'README.md'))).toBe(true);
      expect(main.optionalDependencies[p.name]).toBe(main.version);
    }
    expect(main.scripts.install).toBe('node scripts/install.js');
    expect(main.files).toContain('scripts/install.js');
  });

  it('sync-versions moves every platform package and optional dependency to the main version', () => {
    const copy = tmpDir('simba-sync-');
    fs.cpSync(path.join(repoRoot, 'npm'), path.join(copy, 'npm'), { recursive: true, filter: (s) => !/\.(node|so)$/.test(s) });
    fs.cpSync(path.join(repoRoot, 'scripts'), path.join(copy, 'scripts'), { recursive: true });
    fs.writeFileSync(path.join(copy, 'package.json'), JSON.stringify({ ...main, version: '9.8.7' }));
    const sync = (...a: string[]) =>
      spawnSync(process.execPath, [path.join(copy, 'scripts', 'sync-versions.js'), ...a], { encoding: 'utf8' });
    const check = sync('--check');
    expect(check.status).toBe(1);
    expect(check.stderr).toContain('npm/linux-x64/package.json: version');
    expect(sync().status).toBe(0);
    expect(sync('--check').status).toBe(0);
    expect(read(path.join(copy, 'npm', 'linux-x64-cuda', 'package.json')).version).toBe('9.8.7');
    expect(read(path.join(copy, 'package.json')).optionalDependencies).toEqual({
      '@simba-ssm/linux-x64': '9.8.7',
      '@simba-ssm/linux-x64-cuda': '9.8.7',
    });
    // the repository itself is in sync
    expect(
      spawnSync(process.execPath, [path.join(repoRoot, 'scripts', 'sync-versions.js'), '--check'], { encoding: 'utf8' }).status,
    ).toBe(0);
  });
});

test('cmake: the CUDA backend is opt-in (SIMBA_CUDA=1), even where nvcc exists', () => {
  const build = tmpDir('simba-cmake-');
  const env = { ...process.env };
  delete env.SIMBA_CUDA;
  delete env.SIMBA_NO_CUDA;
  const r = spawnSync(
    'cmake',
    ['-S', repoRoot, '-B', build, '-DCMAKE_JS_INC=' + path.join(repoRoot, 'node_modules', 'node-api-headers', 'include')],
    { env, encoding: 'utf8' },
  );
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('simba-ssm: building the CPU engine only (set SIMBA_CUDA=1 to also build the CUDA backend)');
  expect(r.stdout).not.toContain('building the CUDA backend (libsimba_cuda.so)');
});

describe('simba doctor', () => {
  const cli = path.join(repoRoot, 'dist', 'lib', 'cli', 'main.js');
  const doctor = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const e = { ...process.env, ...env };
    if (!env.SIMBA_ADDON_PATH) delete e.SIMBA_ADDON_PATH;
    return spawnSync(process.execPath, [cli, 'doctor', ...args], { encoding: 'utf8', env: e });
  };

  itPrebuilt('reports the loaded addon, where it came from, kernels, threads, GEMM kernels, glibc and CUDA', async () => {
    const r = doctor(['--json'], { SIMBA_THREADS: '3' });
    expect(r.status).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.addon).toMatchObject({
      from: 'local build',
      path: path.join(repoRoot, 'build', 'Release', 'simba_ssm.node'),
      bytes: fs.statSync(realAddon).size,
    });
    expect(rep.isas).toContain(rep.isa);
    expect(rep.threads).toBe(3);
    expect(rep.platform).toMatchObject({ id: 'linux-x64', libc: 'glibc', glibc: platformInfo().glibc });
    expect(rep.glibcFloor).toBe(GLIBC_FLOOR);
    expect(rep.version).toBe(mainVersion);
    if (rep.cuda.available) expect(rep.cuda.device).toMatch(/sm_\d+/);
    else expect(rep.cuda.reason).toContain('libsimba_cuda.so');
    const text = doctor([], { SIMBA_THREADS: '3' });
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^from +local build$/m);
    expect(text.stdout).toMatch(new RegExp(`^kernels +${rep.isa} \\(this CPU supports: `, 'm'));
    expect(text.stdout).toMatch(/^threads +3$/m);
    // AMX: what the CPU has, on unless SIMBA_NO_AMX=1
    const addon = loadAddon();
    const amx = addon.amxAvailable() && rep.isa === 'avx512';
    expect(rep.amx).toEqual({ available: addon.amxAvailable(), on: amx });
    expect(text.stdout).toMatch(amx ? /^amx +on \(/m : /^amx +(not available|available, off)$/m);
    // the GEMM kernel of each format for decode and prefill, as the engine reports it
    for (const f of ['f32', 'bf16', 'int8'] as const) {
      const want = { decode: await gemmKernel(f, DECODE_ROWS), prefill: await gemmKernel(f, PREFILL_ROWS) };
      expect(rep.gemm[f]).toEqual(want);
      expect(text.stdout.split('\n')).toContainEqual(
        expect.stringMatching(new RegExp(`^gemm ${f} +decode: ${want.decode}; prefill: ${want.prefill}$`)),
      );
    }
    expect(rep.gemm.f32).toEqual({ decode: 'f32 fma', prefill: 'f32 fma' });
    const off = JSON.parse(doctor(['--json'], { SIMBA_NO_AMX: '1' }).stdout);
    expect(off.amx).toEqual({ available: addon.amxAvailable(), on: false });
  });

  it("without a loadable addon: exit 1 and the loader's message with possible solutions", () => {
    const r = doctor([], { SIMBA_ADDON_PATH: path.join(tmpDir('simba-none-'), 'missing.node') });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^addon +not loaded/m);
    expect(r.stderr).toContain('SIMBA_ADDON_PATH (');
    expect(r.stderr).toContain(': not found');
    expect(r.stderr).toContain('Possible solutions:');
    expect(r.stderr).toContain('simba: no native addon could be loaded (details above)');
  });
});

describe('scripts/check-glibc.sh', () => {
  const dir = tmpDir('simba-glibc-');
  const check = (files: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync('bash', [path.join(repoRoot, 'scripts', 'check-glibc.sh'), ...files], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
  /** A C++ shared library that uses std::string (GLIBCXX symbols unless libstdc++ is static). */
  const cxxLib = (name: string, flags: string[]) => {
    const src = path.join(dir, 'lib.cc'),
      out = path.join(dir, name);
    fs.writeFileSync(src, '#include <string>\nextern "C" int length_of(const char* s) { return (int)std::string(s).size(); }\n');
    const r = spawnSync('c++', ['-shared', '-fPIC', '-O1', ...flags, '-o', out, src], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return out;
  };

  it('prints the highest GLIBC / GLIBCXX a binary needs and fails above the floors', () => {
    const aborts = crashingLibrary(dir, 'aborts', 'abort();'); // needs abort@GLIBC_2.2.5 only
    const ok = check([aborts]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/aborts\.node +GLIBC 2\.2\.5 +GLIBCXX none .* ok$/m);
    const low = check([aborts], { GLIBC_FLOOR: '2.2' });
    expect(low.status).toBe(1);
    expect(low.stdout).toContain('FAIL: GLIBC_2.2.5 > 2.2');
  });

  it('counts GLIBCXX from a dynamic libstdc++, and none when it is linked statically', () => {
    const dynamic = check([cxxLib('dynamic.so', [])], { GLIBCXX_FLOOR: '3.4' });
    expect(dynamic.status).toBe(1);
    expect(dynamic.stdout).toMatch(
      /dynamic\.so +GLIBC [\d.]+ +GLIBCXX 3\.4\.\d+ .*libstdc\+\+\.so\.6.*FAIL: GLIBCXX_3\.4\.\d+ > 3\.4$/m,
    );
    const fixed = check([cxxLib('static.so', ['-static-libstdc++', '-static-libgcc'])], { GLIBCXX_FLOOR: '3.4' });
    expect(fixed.stdout).toMatch(/static\.so +GLIBC [\d.]+ +GLIBCXX none /);
    expect(fixed.stdout).not.toContain('libstdc++');
  });
});
