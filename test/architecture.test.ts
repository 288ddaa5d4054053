/**
 * The layering of lib/ (see test/helpers/imports.ts): imports point down the stack
 * cli -> serve -> measure -> generate -> engine -> checkpoint -> leaves, only engine/ touches
 * bindings.ts, generate/ sees the engine only through engine/lm.ts, and no file cycle exists.
 */
import * as path from 'path';

import { buildGraph, cycles, importsOf, layeringViolations, partOf, type Graph } from './helpers/imports';

const root = path.resolve(__dirname, '..');

test('lib/ has no back edge, no cycle, and only the engine imports bindings.ts', () => {
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

test('the checker fails on a back edge, a bindings import, a generate -> model edge and a cycle', () => {
  const clean = buildGraph(root);
  const with_ = (from: string, to: string): Graph => {
    const g = new Map(clean);
    g.set(from, [...(g.get(from) ?? []), to]);
    return g;
  };
  expect(layeringViolations(with_('lib/engine/model.ts', 'lib/cli/main.ts'))).toEqual([
    'lib/engine/model.ts -> lib/cli/main.ts: back edge (engine must not depend on cli)',
  ]);
  expect(layeringViolations(with_('lib/checkpoint/config.ts', 'lib/engine/simba.ts'))).toEqual([
    'lib/checkpoint/config.ts -> lib/engine/simba.ts: back edge (checkpoint must not depend on engine)',
  ]);
  expect(layeringViolations(with_('lib/cli/main.ts', 'bindings.ts'))).toEqual([
    'lib/cli/main.ts -> bindings.ts: only lib/engine/ may import bindings.ts',
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
