/**
 * bench/compare_logits.js, which reports the llama.cpp comparison's logit differences: rows are
 * compared as log-softmax (raw logits shifted by a constant are equal), the peer's log-probability
 * dumps (with nulls for underflowed entries) are read beside simba's raw logits, the largest
 * difference is found where it is, and without --pairs every pair is listed.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const script = path.join(__dirname, '..', '..', 'bench', 'compare_logits.js');
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-cmplogits-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const write = (name: string, value: unknown) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(value));
  return f;
};
const logSoftmax = (row: number[]) => {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
};
interface Pair {
  a: string;
  b: string;
  positions: number;
  maxAbsDiff: number;
  at: { pos: number; token: number } | null;
  compared: number;
  skipped: number;
  argmaxSame: number;
}
const run = (...args: string[]): Pair[] => JSON.parse(execFileSync('node', [script, ...args, '--json'], { encoding: 'utf8' }));

const rows = [
  [1, 2, 3, 0.5],
  [0, -1, 4, 2],
];

test('log-softmax: a constant shift per row is no difference; a changed entry is found where it is', () => {
  const a = write('a.json', { positions: [0, 1], logits: rows });
  const shifted = write('shifted.json', { positions: [0, 1], logits: [rows[0].map((x) => x + 7), rows[1].map((x) => x - 3)] });
  const changed = rows.map((r) => r.slice());
  changed[1][3] += 0.25;
  const b = write('b.json', { positions: [0, 1], logits: changed });
  const [same] = run(`a=${a}`, `s=${shifted}`);
  expect(same.maxAbsDiff).toBeLessThan(1e-12);
  expect(same.argmaxSame).toBe(2);
  const [diff] = run(`a=${a}`, `b=${b}`);
  const want = Math.max(...logSoftmax(rows[1]).map((x, i) => Math.abs(x - logSoftmax(changed[1])[i])));
  expect(diff.maxAbsDiff).toBeCloseTo(want, 12);
  expect(diff.at).toEqual({ pos: 1, token: 3 });
  expect(diff.positions).toBe(2);
});

test("the peer's log-probabilities (nulls skipped) against raw logits; every pair without --pairs; --pairs picks", () => {
  const ours = write('ours.json', { positions: [0, 1], logits: rows });
  const lp = rows.map(logSoftmax);
  const peer = write('peer.json', {
    tool: 'llamacpp_logits.mjs',
    positions: [
      { pos: 0, logprobs: [lp[0][0], lp[0][1], lp[0][2], null] },
      { pos: 1, logprobs: lp[1].map((x) => x + 1e-3) },
    ],
  });
  const third = write('third.json', { positions: [1], logits: [rows[1]] });
  const all = run(`ours=${ours}`, `peer=${peer}`, `third=${third}`);
  expect(all.map((p) => `${p.a}:${p.b}`)).toEqual(['ours:peer', 'ours:third', 'peer:third']);
  expect(all[0].skipped).toBe(1);
  expect(all[0].compared).toBe(7);
  expect(all[0].maxAbsDiff).toBeCloseTo(1e-3, 9);
  expect(all[1].positions).toBe(1); // only the positions both have
  const picked = run(`ours=${ours}`, `peer=${peer}`, `third=${third}`, '--pairs', 'third:peer');
  expect(picked.map((p) => `${p.a}:${p.b}`)).toEqual(['third:peer']);
});
