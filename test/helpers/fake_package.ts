/**
 * Throw-away simba-ssm package layouts for the loader and install tests: a package root with the
 * compiled loader (dist/bindings.js alone: it needs nothing from lib/) and scripts/install.js,
 * optional platform packages under node_modules/@simba-ssm/, and tiny native libraries that crash
 * when loaded.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { tmpDir } from './util';

export const repoRoot = path.resolve(__dirname, '..', '..');
/** The addon the suite runs on (a local CPU build). */
export const realAddon = path.join(repoRoot, 'build', 'Release', 'simba_ssm.node');
export const mainVersion: string = (
  JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }
).version;

export interface FakePackage {
  root: string;
  /** Adds node_modules/@simba-ssm/<name> with a package.json and the given files (name -> source path or contents). */
  addPlatformPackage(
    name: string,
    opts: { version?: string; glibc?: string; files?: Record<string, { copy: string } | string> },
  ): string;
  /** Runs `node -e code` in the package root; `bindings` is the package's dist/bindings.js. */
  runNode(code: string, env?: NodeJS.ProcessEnv): RunResult;
  /** Runs `node scripts/install.js` in the package root, as npm would. */
  runInstall(env?: NodeJS.ProcessEnv): RunResult;
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** This process's environment without the loader's and installer's knobs, plus `env`. */
function cleanEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const clean = { ...process.env };
  for (const k of [
    'SIMBA_ADDON_PATH',
    'SIMBA_CUDA_LIB',
    'SIMBA_CUDA_LIB_DIRS',
    'SIMBA_BUILD_FROM_SOURCE',
    'npm_config_build_from_source',
    'SIMBA_CUDA',
    'SIMBA_NO_CUDA',
  ])
    delete clean[k];
  return { ...clean, ...env };
}

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv): RunResult {
  const r = spawnSync(process.execPath, args, { cwd, env: cleanEnv(env), encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh package root named simba-ssm at `version` holding dist/bindings.js and scripts/install.js. */
export function makeFakePackage(version = mainVersion): FakePackage {
  const root = path.join(tmpDir('simba-pkg-'), 'simba-ssm');
  fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
  fs.mkdirSync(path.join(root, 'scripts'));
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'simba-ssm', version }));
  fs.copyFileSync(path.join(repoRoot, 'dist', 'bindings.js'), path.join(root, 'dist', 'bindings.js'));
  fs.copyFileSync(path.join(repoRoot, 'scripts', 'install.js'), path.join(root, 'scripts', 'install.js'));
  return {
    root,
    addPlatformPackage(name, opts) {
      const dir = path.join(root, 'node_modules', '@simba-ssm', name);
      fs.mkdirSync(dir, { recursive: true });
      const config = opts.glibc ? { glibc: opts.glibc } : {};
      fs.writeFileSync(
        path.join(dir, 'package.json'),
        JSON.stringify({ name: `@simba-ssm/${name}`, version: opts.version ?? version, config }),
      );
      for (const [file, src] of Object.entries(opts.files ?? {})) {
        if (typeof src === 'string') fs.writeFileSync(path.join(dir, file), src);
        else fs.copyFileSync(src.copy, path.join(dir, file));
      }
      return dir;
    },
    runNode(code, env = {}) {
      const prelude = `const bindings = require(${JSON.stringify(path.join(root, 'dist', 'bindings.js'))});`;
      return run(['-e', prelude + code], root, env);
    },
    runInstall(env = {}) {
      return run([path.join(root, 'scripts', 'install.js')], root, env);
    },
  };
}

/** A shared library whose load-time constructor runs `body` (C): e.g. 'abort();'. Built with cc. */
export function crashingLibrary(dir: string, name: string, body: string): string {
  const src = path.join(dir, `${name}.c`),
    out = path.join(dir, `${name}.node`);
  fs.writeFileSync(src, `#include <stdlib.h>\n__attribute__((constructor)) static void on_load(void) { ${body} }\n`);
  const r = spawnSync('cc', ['-shared', '-fPIC', '-o', out, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed: ${r.error?.message ?? r.stderr}`);
  return out;
}
