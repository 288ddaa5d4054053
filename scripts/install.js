#!/usr/bin/env node
/**
 * The package's `install` step. Uses a prebuilt addon when one loads, else builds from source.
 *
 *   1. npm_config_build_from_source=true or SIMBA_BUILD_FROM_SOURCE=1: build, whatever is installed.
 *   2. Otherwise each prebuilt place the run-time loader looks (dist/bindings.js addonCandidates():
 *      SIMBA_ADDON_PATH, @simba-ssm/<platform>; not build/Release) is loaded in a child process
 *      (probeAddon), so a binary that crashes on load cannot take the installer down. The first
 *      that loads is used and nothing is compiled.
 *   3. None loads (or no dist/: a git checkout): `cmake-js compile`, CPU only unless SIMBA_CUDA=1.
 *      If that fails too, the loader's message (every place tried and why, platform, glibc,
 *      possible solutions) is printed and the install fails.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const log = (msg) => process.stderr.write(`simba-ssm: ${msg}\n`);
const truthy = (v) => !!v && v !== '0' && v.toLowerCase() !== 'false';

/** The compiled loader (absent in a git checkout before `tsc`). */
function loader() {
  const file = path.join(root, 'dist', 'bindings.js');
  return fs.existsSync(file) ? require(file) : null;
}

/** Whether `name` is an executable on PATH. */
function onPath(name) {
  return (process.env.PATH || '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The build tools that are missing, in words (empty when cmake and a C++ compiler are there). */
function missingTools() {
  const missing = [];
  if (!onPath('cmake')) missing.push('cmake');
  if (!process.env.CXX && !['c++', 'g++', 'clang++'].some(onPath)) missing.push('a C++ compiler (c++, g++ or clang++)');
  return missing;
}

/** Runs cmake-js compile; returns null on success, else the reason in one line. */
function buildFromSource() {
  const missing = missingTools();
  if (missing.length) return `not possible: ${missing.join(' and ')} not found on PATH`;
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  } catch {
    return 'cmake-js is not installed';
  }
  const cuda = truthy(process.env.SIMBA_CUDA);
  log(`building the addon from source (${cuda ? 'CPU + CUDA backend' : 'CPU only; SIMBA_CUDA=1 adds the CUDA backend'})`);
  const env = { ...process.env };
  if (!cuda) env.SIMBA_NO_CUDA = '1';
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--log-level', 'error'], { cwd: root, env, stdio: 'inherit' });
  if (r.error) return `cmake-js could not start: ${r.error.message}`;
  if (r.status !== 0) return `\`cmake-js compile\` failed (exit ${r.status ?? r.signal}; the compiler output is above)`;
  return null;
}

function main() {
  const bindings = loader();
  const forced = truthy(process.env.npm_config_build_from_source) || truthy(process.env.SIMBA_BUILD_FROM_SOURCE);
  const tried = [];
  if (forced) {
    tried.push('prebuilt binaries: not used (build from source requested)');
  } else if (!bindings) {
    tried.push('prebuilt binaries: not checked (no dist/bindings.js: a source checkout)');
  } else {
    // A local build is not trusted as is: cmake-js rebuilds it incrementally (the sources may have changed).
    for (const c of bindings.addonCandidates(root).filter((c) => c.from !== 'local build')) {
      const label = bindings.describeCandidate(c);
      const problem = bindings.candidateProblem(c);
      if (problem) {
        tried.push(`${label}: ${problem}`);
        continue;
      }
      const probe = bindings.probeAddon(c.path);
      if (probe.ok) {
        log(`using the ${label}, kernels ${probe.isa}; nothing to compile`);
        return 0;
      }
      tried.push(`${label}: ${probe.reason}`);
      log(`${label}: ${probe.reason}`);
    }
  }
  const buildError = buildFromSource();
  if (!buildError) return 0;
  const msg = bindings
    ? bindings.loadFailureMessage(tried, bindings.platformInfo(), buildError)
    : `simba-ssm: could not build the native addon: ${buildError}\n  (needs cmake >= 3.18, make or ninja and a C++17 compiler)`;
  process.stderr.write(`${msg}\n`);
  return 1;
}

process.exitCode = main();
