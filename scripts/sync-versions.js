#!/usr/bin/env node
/**
 * Keeps the platform packages (npm/<platform>/package.json) and the main package's
 * optionalDependencies on the main package's version. Run by `npm version` (the "version" script);
 * `--check` only reports a mismatch (exit 1), for tests and CI.
 *
 *   node scripts/sync-versions.js [--check]
 */
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const read = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const write = (f, o) => fs.writeFileSync(f, JSON.stringify(o, null, 2) + '\n');

/** The platform package folders under npm/, e.g. ['npm/linux-x64', 'npm/linux-x64-cuda']. */
function platformDirs() {
  const npmDir = path.join(root, 'npm');
  return fs.readdirSync(npmDir).map((d) => path.join(npmDir, d)).filter((d) => fs.existsSync(path.join(d, 'package.json'))).sort();
}

function main() {
  const check = process.argv.includes('--check');
  const mainFile = path.join(root, 'package.json');
  const pkg = read(mainFile);
  const wrong = [];
  const optional = { ...(pkg.optionalDependencies || {}) };
  for (const dir of platformDirs()) {
    const file = path.join(dir, 'package.json');
    const p = read(file);
    if (p.version !== pkg.version) {
      wrong.push(`${path.relative(root, file)}: version ${p.version}, expected ${pkg.version}`);
      p.version = pkg.version;
      if (!check) write(file, p);
    }
    if (optional[p.name] !== pkg.version) {
      wrong.push(`package.json optionalDependencies["${p.name}"]: ${optional[p.name] ?? 'missing'}, expected ${pkg.version}`);
      optional[p.name] = pkg.version;
    }
  }
  if (!check && wrong.length) {
    pkg.optionalDependencies = optional;
    write(mainFile, pkg);
  }
  for (const w of wrong) process.stderr.write(`sync-versions: ${check ? '' : 'fixed '}${w}\n`);
  return check && wrong.length ? 1 : 0;
}

process.exitCode = main();
