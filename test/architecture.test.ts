/**
 * The layering of lib/ (see test/helpers/imports.ts MAY_IMPORT): cli over serve and measure
 * (siblings), both over generate -> constrain -> engine -> checkpoint -> leaves; platform/ beside the engine.
 * bindings.ts imports nothing from lib/ and only engine/, constrain/ and platform/ import it; generate/ sees
 * the engine only through engine/lm.ts; no file cycle exists. Also: lib/engine/forward.ts is the one
 * caller of the native forward, and every repository path a TypeScript comment names exists.
 */
import * as fs from 'fs';
import * as path from 'path';

import { buildGraph, cycles, importsOf, layeringViolations, partOf, type Graph } from './helpers/imports';

const root = path.resolve(__dirname, '..');

test('lib/ has no back edge, no cycle, and only the engine, constrain/ (the native grammars) and the platform import bindings.ts', () => {
  const g = buildGraph(root);
  expect(g.size).toBeGreaterThan(20);
  expect(layeringViolations(g)).toEqual([]);
  expect(cycles(g)).toEqual([]);
  // every file belongs to a known part
  for (const f of g.keys()) expect(partOf(f)).not.toMatch(/^unknown/);
});

test('the checker reads every import form', () => {
  const src = [
    "import * as fs from 'fs';",
    "import type { A } from '../engine/lm';",
    "import {\n  b,\n  c,\n} from './b';",
    "export { d } from './d';",
    "export * from './e';",
    "import './side-effect';",
    "const f = require('./f');",
    "const g = await import('./g');",
    "// import { no } from './commented';",
    "/* import { no2 } from './block'; */",
  ].join('\n');
  expect(importsOf(src)).toEqual(['../engine/lm', './b', './d', './e', './side-effect', './f', './g']);
});

test('the checker fails on a back edge, a sibling edge, a bindings edge either way, a generate -> model edge and a cycle', () => {
  const clean = buildGraph(root);
  const with_ = (from: string, to: string): Graph => {
    const g = new Map(clean);
    g.set(from, [...(g.get(from) ?? []), to]);
    return g;
  };
  expect(layeringViolations(with_('lib/engine/model.ts', 'lib/cli/main.ts'))).toEqual([
    'lib/engine/model.ts -> lib/cli/main.ts: engine must not depend on cli',
  ]);
  expect(layeringViolations(with_('lib/checkpoint/config.ts', 'lib/engine/simba.ts'))).toEqual([
    'lib/checkpoint/config.ts -> lib/engine/simba.ts: checkpoint must not depend on engine',
  ]);
  // serve and measure are siblings: neither may import the other
  expect(layeringViolations(with_('lib/serve/server.ts', 'lib/measure/bench.ts'))).toEqual([
    'lib/serve/server.ts -> lib/measure/bench.ts: serve must not depend on measure',
  ]);
  expect(layeringViolations(with_('lib/measure/bench.ts', 'lib/serve/metrics.ts'))).toEqual([
    'lib/measure/bench.ts -> lib/serve/metrics.ts: measure must not depend on serve',
  ]);
  // the platform sits beside the engine, below what measures and serves
  expect(layeringViolations(with_('lib/platform/machine.ts', 'lib/engine/load.ts'))).toEqual([
    'lib/platform/machine.ts -> lib/engine/load.ts: platform must not depend on engine',
  ]);
  expect(layeringViolations(with_('lib/serve/server.ts', 'lib/platform/machine.ts'))).toEqual([
    'lib/serve/server.ts -> lib/platform/machine.ts: serve must not depend on platform',
  ]);
  expect(layeringViolations(with_('lib/cli/main.ts', 'bindings.ts'))).toEqual([
    'lib/cli/main.ts -> bindings.ts: only lib/engine/, lib/constrain/ and lib/platform/ may import bindings.ts',
  ]);
  // the bridge stands alone: not even the leaf modules
  expect(clean.get('bindings.ts')).toEqual([]);
  expect(layeringViolations(with_('bindings.ts', 'lib/errors.ts'))).toEqual([
    'bindings.ts -> lib/errors.ts: bindings.ts imports nothing from lib/',
  ]);
  expect(layeringViolations(with_('lib/generate/generate.ts', 'lib/engine/model.ts'))).toEqual([
    'lib/generate/generate.ts -> lib/engine/model.ts: generate/ may see the engine only through lib/engine/lm.ts',
  ]);
  expect(layeringViolations(with_('lib/engine/model.ts', 'lib/index.ts'))[0]).toMatch(/nothing imports lib\/index.ts/);
  // a cycle inside one part is not a layering violation, but is reported as a cycle
  const cyc = with_('lib/engine/sequence.ts', 'lib/engine/model.ts');
  expect(layeringViolations(cyc)).toEqual([]);
  expect(cycles(cyc)).toContain('lib/engine/sequence.ts -> lib/engine/model.ts -> lib/engine/sequence.ts');
});

/** The TypeScript files of the repository (lib/, test/, bench/, bindings.ts), repository-relative. */
function tsFiles(): string[] {
  const out = ['bindings.ts'];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts')) out.push(rel);
    }
  };
  for (const d of ['lib', 'test', 'bench']) walk(d);
  return out;
}

/** The comments of a TypeScript source. */
function commentsOf(src: string): string[] {
  return src.match(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g) ?? [];
}

/** Repository paths named in a text: a top-level folder, then a file with a source or data extension. */
function pathsIn(text: string): string[] {
  const re = /\b(?:lib|native|test|bench|scripts|models|npm|cmake)\/[\w./-]*[\w-]\.(?:ts|cc|h|cu|cuh|sh|md|txt|json|py|cmake)\b/g;
  return text.match(re) ?? [];
}

test('only lib/engine/forward.ts calls the native forward', () => {
  const callers: string[] = [];
  for (const f of tsFiles().filter((x) => x.startsWith('lib/'))) {
    const code = fs
      .readFileSync(path.join(root, f), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/[^\n]*/g, '');
    callers.push(...Array.from(code.matchAll(/\.forward\(/g), () => f));
  }
  expect(callers).toEqual(['lib/engine/forward.ts']);
});

test('every repository path a TypeScript comment names exists', () => {
  expect(pathsIn('see native/common/backend_api.h and lib/engine/forward.ts, not dist/x.js')).toEqual([
    'native/common/backend_api.h',
    'lib/engine/forward.ts',
  ]);
  const files = tsFiles();
  expect(files.length).toBeGreaterThan(100);
  const stale: string[] = [];
  for (const f of files)
    for (const c of commentsOf(fs.readFileSync(path.join(root, f), 'utf8')))
      for (const p of pathsIn(c)) if (!fs.existsSync(path.join(root, p))) stale.push(`${f}: ${p}`);
  expect(stale).toEqual([]);
});
