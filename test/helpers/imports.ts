/**
 * The import graph of lib/ and bindings.ts, and the layering rules it must obey (test/architecture.test.ts):
 *
 *   cli -> serve   -> generate -> constrain -> engine -> checkpoint -> leaves (errors, types, validate, limits)
 *   cli -> measure -> generate, engine, platform
 *   engine, constrain, platform -> bindings.ts -> native
 *
 * Each part may import itself and the parts listed for it in MAY_IMPORT (serve and measure are
 * siblings: neither imports the other). bindings.ts imports nothing from lib/; only engine/,
 * constrain/ (the native grammars) and platform/ import it; generate/ sees the engine only through engine/lm.ts (the LanguageModel
 * interface); index.ts (public exports) may import anything and nothing imports it. No cycles
 * between files.
 */
import * as fs from 'fs';
import * as path from 'path';

export type Graph = Map<string, string[]>;

/** The parts each part may import besides itself (bindings.ts is ruled separately). */
export const MAY_IMPORT: Record<string, readonly string[]> = {
  leaf: [],
  checkpoint: ['leaf'],
  platform: ['leaf'],
  engine: ['checkpoint', 'leaf'],
  constrain: ['engine', 'checkpoint', 'leaf'],
  generate: ['constrain', 'engine', 'checkpoint', 'leaf'],
  measure: ['generate', 'constrain', 'engine', 'platform', 'checkpoint', 'leaf'],
  serve: ['generate', 'constrain', 'engine', 'checkpoint', 'leaf'],
  cli: ['serve', 'measure', 'generate', 'constrain', 'engine', 'platform', 'checkpoint', 'leaf'],
  index: ['serve', 'measure', 'generate', 'constrain', 'engine', 'platform', 'checkpoint', 'leaf'],
};
/** The parts that load the addon. */
const BINDING_USERS = new Set(['engine', 'constrain', 'platform']);
const LEAVES = new Set(['lib/errors.ts', 'lib/types.ts', 'lib/validate.ts', 'lib/limits.ts']);

/** The part a repository-relative file belongs to ('bindings' for bindings.ts). */
export function partOf(file: string): string {
  if (file === 'bindings.ts') return 'bindings';
  if (file === 'lib/index.ts') return 'index';
  if (LEAVES.has(file)) return 'leaf';
  const m = /^lib\/([^/]+)\//.exec(file);
  if (m && m[1] in MAY_IMPORT) return m[1];
  return `unknown(${file})`;
}

const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|(?:^|\n)\s*import\s+['"]([^'"]+)['"]|\brequire\(\s*['"]([^'"]+)['"]\s*\)|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Relative imports of a TypeScript source (package imports are not part of the graph). */
export function importsOf(src: string): string[] {
  const out: string[] = [];
  const code = src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');
  for (const m of code.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? m[4];
    if (spec.startsWith('.')) out.push(spec);
  }
  return out;
}

function resolve(root: string, fromFile: string, spec: string): string | null {
  const base = path.resolve(root, path.dirname(fromFile), spec);
  for (const cand of [`${base}.ts`, path.join(base, 'index.ts'), base])
    if (fs.existsSync(cand) && fs.statSync(cand).isFile()) return path.relative(root, cand).split(path.sep).join('/');
  return null;
}

/** Walks lib/ and bindings.ts under root; throws on an import that does not resolve. */
export function buildGraph(root: string): Graph {
  const files: string[] = ['bindings.ts'];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts')) files.push(rel);
    }
  };
  walk('lib');
  const g: Graph = new Map();
  for (const f of files) {
    const deps: string[] = [];
    for (const spec of importsOf(fs.readFileSync(path.join(root, f), 'utf8'))) {
      const r = resolve(root, f, spec);
      if (!r) throw new Error(`${f}: import '${spec}' does not resolve`);
      deps.push(r);
    }
    g.set(f, deps);
  }
  return g;
}

/** Every violation of the layering rules, one line each (empty when the graph is clean). */
export function layeringViolations(g: Graph): string[] {
  const bad: string[] = [];
  for (const [from, deps] of g) {
    const pf = partOf(from);
    for (const to of deps) {
      const pt = partOf(to);
      if (pf.startsWith('unknown') || pt.startsWith('unknown')) {
        bad.push(`${from} -> ${to}: file outside the known parts`);
        continue;
      }
      if (pf === 'bindings') {
        bad.push(`${from} -> ${to}: bindings.ts imports nothing from lib/`);
        continue;
      }
      if (pt === 'bindings') {
        if (!BINDING_USERS.has(pf))
          bad.push(`${from} -> ${to}: only lib/engine/, lib/constrain/ and lib/platform/ may import bindings.ts`);
        continue;
      }
      if (pt === 'index') {
        bad.push(`${from} -> ${to}: nothing imports lib/index.ts (public exports only)`);
        continue;
      }
      if (pt !== pf && !MAY_IMPORT[pf].includes(pt)) bad.push(`${from} -> ${to}: ${pf} must not depend on ${pt}`);
      else if (pf === 'generate' && pt === 'engine' && to !== 'lib/engine/lm.ts')
        bad.push(`${from} -> ${to}: generate/ may see the engine only through lib/engine/lm.ts`);
    }
  }
  return bad;
}

/** The cycles of the file graph, each as a path a -> b -> ... -> a. */
export function cycles(g: Graph): string[] {
  const state = new Map<string, 0 | 1 | 2>();
  const stack: string[] = [];
  const found: string[] = [];
  const visit = (f: string) => {
    state.set(f, 1);
    stack.push(f);
    for (const d of g.get(f) ?? []) {
      const s = state.get(d) ?? 0;
      if (s === 1) found.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (s === 0) visit(d);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of g.keys()) if (!state.get(f)) visit(f);
  return found;
}
