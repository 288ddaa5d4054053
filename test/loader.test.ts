/**
 * The addon loader (bindings.ts): search order SIMBA_ADDON_PATH -> build/Release -> the platform
 * package (version-checked), the sharp-style failure message, the CUDA library search path, and
 * probeAddon's child-process check, including binaries that crash on load. Each case runs the
 * compiled loader in a child process on a throw-away package layout (test/helpers/fake_package.ts).
 */
import * as fs from 'fs';
import * as path from 'path';

import { compareVersions, GLIBC_FLOOR, platformInfo, probeAddon } from '../bindings';
import { crashingLibrary, mainVersion, makeFakePackage, realAddon } from './helpers/fake_package';
import { tmpDir } from './helpers/util';

const plat = platformInfo();
const onPrebuiltPlatform = plat.id === 'linux-x64';
const itPrebuilt = onPrebuiltPlatform ? it : it.skip;
/** Prints JSON of the loaded addon's origin and kernels, or {error} when loading fails. */
const LOAD = `try { const a = bindings.loadAddon(); console.log(JSON.stringify({ origin: bindings.addonOrigin(), isa: a.activeIsa(), cuda: a.cudaAvailable() })); }
              catch (e) { console.log(JSON.stringify({ error: e.message, code: e.code })); }`;

function load(pkg: ReturnType<typeof makeFakePackage>, env: NodeJS.ProcessEnv = {}) {
  const r = pkg.runNode(LOAD, env);
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout) as {
    error?: string;
    code?: string;
    isa?: string;
    origin?: {
      path: string;
      from: string;
      package?: string;
      cudaDirs: string[];
      cudaPackage: { name: string; dir?: string; skip?: string };
    };
    cuda?: { available: boolean; reason: string };
  };
}

describe('loadAddon search order', () => {
  itPrebuilt('with nothing installed: every place tried and why, the platform, glibc and possible solutions', () => {
    const pkg = makeFakePackage();
    const { error, code } = load(pkg);
    expect(code).toBe('E_NATIVE');
    expect(error).toContain('could not load the native addon');
    expect(error).toContain(`local build (${path.join(pkg.root, 'build', 'Release', 'simba_ssm.node')}): not found`);
    expect(error).toContain('platform package @simba-ssm/linux-x64: not installed (an optional dependency');
    expect(error).toMatch(new RegExp(`Platform: linux-x64, libc glibc ${plat.glibc!.replace('.', '\\.')}, node v\\d+`));
    expect(error).toContain('Possible solutions:');
    expect(error).toContain('npm install --include=optional simba-ssm');
    expect(error).toContain('SIMBA_BUILD_FROM_SOURCE=1 npm install simba-ssm');
  });

  itPrebuilt('loads the platform package whose version equals ours, and says so', () => {
    const pkg = makeFakePackage();
    const dir = pkg.addPlatformPackage('linux-x64', { glibc: GLIBC_FLOOR, files: { 'simba_ssm.node': { copy: realAddon } } });
    const r = load(pkg);
    expect(r.error).toBeUndefined();
    expect(r.origin).toMatchObject({
      from: 'platform package',
      package: `@simba-ssm/linux-x64@${mainVersion}`,
      path: path.join(fs.realpathSync(dir), 'simba_ssm.node'),
    });
    // the CUDA library's absence never stops the CPU addon
    expect(r.origin!.cudaPackage).toEqual({ name: '@simba-ssm/linux-x64-cuda', skip: expect.stringMatching(/^not installed/) });
    expect(r.cuda!.available).toBe(false);
  });

  itPrebuilt('skips a platform package of another version, or one that needs a newer glibc', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', { version: '0.0.9', files: { 'simba_ssm.node': { copy: realAddon } } });
    expect(load(pkg).error).toContain(
      `@simba-ssm/linux-x64@0.0.9 (${path.join(pkg.root, 'node_modules', '@simba-ssm', 'linux-x64')}/simba_ssm.node): version 0.0.9 does not match simba-ssm ${mainVersion}`,
    );
    const newer = makeFakePackage();
    newer.addPlatformPackage('linux-x64', { glibc: '99.1', files: { 'simba_ssm.node': { copy: realAddon } } });
    expect(load(newer).error).toContain(`needs glibc >= 99.1, this system has ${plat.glibc}`);
  });

  itPrebuilt('prefers a local build to the platform package', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', { files: { 'simba_ssm.node': { copy: realAddon } } });
    fs.mkdirSync(path.join(pkg.root, 'build', 'Release'), { recursive: true });
    fs.copyFileSync(realAddon, path.join(pkg.root, 'build', 'Release', 'simba_ssm.node'));
    expect(load(pkg).origin).toMatchObject({
      from: 'local build',
      path: path.join(pkg.root, 'build', 'Release', 'simba_ssm.node'),
    });
  });

  itPrebuilt('SIMBA_ADDON_PATH is used alone: a broken one is an error, not a silent fallback', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', { files: { 'simba_ssm.node': { copy: realAddon } } });
    const bogus = path.join(pkg.root, 'bogus.node');
    fs.writeFileSync(bogus, 'not a shared library');
    const { error } = load(pkg, { SIMBA_ADDON_PATH: bogus });
    expect(error).toContain(`SIMBA_ADDON_PATH (${bogus}): `);
    expect(error).toMatch(/invalid ELF header|file too short/);
    expect(error).not.toContain('platform package');
    expect(load(pkg, { SIMBA_ADDON_PATH: realAddon }).origin).toMatchObject({ from: 'SIMBA_ADDON_PATH', path: realAddon });
  });

  itPrebuilt('passes the CUDA platform package folder to the native CUDA loader, which tries it', () => {
    const pkg = makeFakePackage();
    pkg.addPlatformPackage('linux-x64', { files: { 'simba_ssm.node': { copy: realAddon } } });
    const cudaDir = fs.realpathSync(
      pkg.addPlatformPackage('linux-x64-cuda', { files: { 'libsimba_cuda.so': 'not a shared library' } }),
    );
    const r = load(pkg);
    expect(r.origin!.cudaPackage).toEqual({ name: `@simba-ssm/linux-x64-cuda@${mainVersion}`, dir: cudaDir });
    expect(r.origin!.cudaDirs).toEqual([cudaDir]);
    expect(r.cuda!.available).toBe(false);
    expect(r.cuda!.reason).toContain(`${cudaDir}/libsimba_cuda.so: cannot be loaded`);
    expect(r.isa).toMatch(/^(avx512|avx2|sse2)$/); // the CPU addon works regardless
  });
});

describe('probeAddon (the install-time check in a child process)', () => {
  const dir = tmpDir('simba-crash-');

  itPrebuilt('accepts the real addon and reports its kernels', () => {
    const r = probeAddon(realAddon);
    expect(r).toEqual({ ok: true, isa: expect.stringMatching(/^(avx512|avx2|sse2)$/) });
  });

  itPrebuilt('reports an addon that aborts in its initializer, without crashing the caller', () => {
    const lib = crashingLibrary(dir, 'aborts', 'abort();');
    const r = probeAddon(lib);
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(/^crashed on load \(signal SIGABRT\)/) });
  });

  itPrebuilt('reports an addon that segfaults in its initializer', () => {
    const lib = crashingLibrary(dir, 'segv', 'volatile int* p = 0; *p = 1;');
    expect(probeAddon(lib)).toEqual({ ok: false, reason: expect.stringMatching(/^crashed on load \(signal SIGSEGV\)/) });
  });

  it('reports a file that is not a shared library', () => {
    const bogus = path.join(dir, 'text.node');
    fs.writeFileSync(bogus, 'hello');
    expect(probeAddon(bogus)).toEqual({
      ok: false,
      reason: expect.stringMatching(/^failed to load \(exit 1\): .*(invalid ELF header|file too short)/),
    });
  });

  it('reports a binary that hangs on load as timed out', () => {
    const lib = crashingLibrary(dir, 'hangs', 'for (;;) {}');
    const r = probeAddon(lib, 1500);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toBe('timed out after 1.5 s while loading');
  });
});

test('compareVersions orders dotted versions numerically', () => {
  expect(compareVersions('2.31', '2.36')).toBe(-1);
  expect(compareVersions('2.4', '2.31')).toBe(-1);
  expect(compareVersions('2.31', '2.31.0')).toBe(0);
  expect(compareVersions('3.0', '2.99')).toBe(1);
});
