/**
 * Jest globalSetup: compiles the TypeScript (tsc -p tsconfig.json -> dist/) once when any source
 * is newer than its output, so the CLI tests can spawn `node dist/lib/cli/main.js`.
 */
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');

function sources() {
  const out = [path.join(root, 'bindings.ts'), path.join(root, 'tsconfig.json')];
  const walk = (abs) => {
    if (!fs.existsSync(abs)) return;
    for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(abs, e.name));
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(path.join(abs, e.name));
    }
  };
  for (const dir of ['lib', 'bench']) walk(path.join(root, dir));
  return out;
}

/** The compiled file of a source (tsconfig.json counts as a source of every output). */
function outputOf(src) {
  const rel = path.relative(root, src);
  if (rel === 'tsconfig.json') return path.join(root, 'dist', 'lib', 'cli', 'main.js');
  return path.join(root, 'dist', rel.replace(/\.ts$/, '.js'));
}

function stale() {
  for (const src of sources()) {
    const out = outputOf(src);
    if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) return path.relative(root, src);
  }
  return null;
}

module.exports = async function globalSetup() {
  const why = stale();
  if (!why) return;
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { cwd: root, stdio: 'pipe' });
  } catch (e) {
    const output = `${e.stdout || ''}${e.stderr || ''}`.trim();
    throw new Error(`global-setup: tsc failed (dist/ was stale because of ${why}):\n${output}`, { cause: e });
  }
};
