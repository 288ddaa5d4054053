#!/usr/bin/env node
/**
 * `npm run pack:all`: packs the main package and the platform packages into dist-packages/.
 *
 *   node scripts/pack.js [--stage-local-build] [--out DIR] [main] [linux-x64] [linux-x64-cuda]   (default: all)
 *
 * A platform package is packed only when its binary is in npm/<platform>/ (`npm run prebuild:release` puts
 * it there); --stage-local-build packs a copy of the folder holding build/Release/simba_ssm.node (and
 * libsimba_cuda.so, when built) instead: the host-toolchain build CI uses. Prints each tarball and its size.
 */
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
/** Each platform package and the binary it ships. */
const BINARIES = { 'linux-x64': 'simba_ssm.node', 'linux-x64-cuda': 'libsimba_cuda.so' };

function npmPack(dir, outDir) {
  const npm = process.env.npm_execpath;  // set when run by `npm run`
  const [cmd, pre] = npm && npm.endsWith('.js') ? [process.execPath, [npm]] : ['npm', []];
  const out = execFileSync(cmd, [...pre, 'pack', '--json', '--pack-destination', outDir], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const info = JSON.parse(out.slice(out.indexOf('[')))[0];
  return path.join(outDir, info.filename);
}

function main() {
  const args = process.argv.slice(2);
  const stage = args.includes('--stage-local-build');
  const at = args.indexOf('--out');
  const outDir = path.resolve(at >= 0 ? args.splice(at, 2)[1] : path.join(root, 'dist-packages'));
  let which = args.filter((a) => !a.startsWith('--'));
  if (which.length === 0) which = ['main', ...Object.keys(BINARIES)];
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of which) {
    let dir = root;
    if (name !== 'main') {
      if (!(name in BINARIES)) throw new Error(`pack: unknown package '${name}' (known: main, ${Object.keys(BINARIES).join(', ')})`);
      dir = path.join(root, 'npm', name);
      const local = path.join(root, 'build', 'Release', BINARIES[name]);
      if (stage && fs.existsSync(local)) {
        // a copy of the package folder with the local build in it (npm/ keeps the release binary)
        const staged = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'simba-pack-')), name);
        fs.cpSync(dir, staged, { recursive: true });
        fs.copyFileSync(local, path.join(staged, BINARIES[name]));
        dir = staged;
      }
      const bin = path.join(dir, BINARIES[name]);
      if (!fs.existsSync(bin)) {
        throw new Error(`pack: ${bin} is missing: run \`npm run prebuild:release\` (or pass --stage-local-build after a local build)`);
      }
    }
    const tgz = npmPack(dir, outDir);
    console.log(`${tgz}  ${(fs.statSync(tgz).size / 1024).toFixed(0)} KiB`);
  }
}

main();
