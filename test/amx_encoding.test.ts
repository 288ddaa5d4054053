/**
 * The AMX instructions in native/cpu/amx_insn.h are written as machine-code bytes (the release
 * build root's assembler, binutils 2.35, has no AMX mnemonics). This checks every form the macros
 * can emit, for every tile number (products: every triple of distinct tiles), two ways with the host's binutils (>= 2.36 knows AMX):
 *   - objdump reads each macro's bytes back as the intended instruction and operands;
 *   - the host assembler, given those mnemonics, produces the same bytes.
 * Nothing here executes an AMX instruction (this CPU may have none): the object is never linked.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const tiles = [0, 1, 2, 3, 4, 5, 6, 7];

/** Each macro call and the AT&T instruction it must encode, in emission order. */
function forms(): { call: string; insn: string }[] {
  const out = [
    { call: 'AMX_LOADCONFIG(p)', insn: 'ldtilecfg (%rax)' },
    { call: 'AMX_RELEASE()', insn: 'tilerelease' },
  ];
  for (const t of tiles) out.push({ call: `AMX_ZERO(${t})`, insn: `tilezero %tmm${t}` });
  for (const t of tiles) out.push({ call: `AMX_LOAD(${t}, p, 64)`, insn: `tileloadd (%rax,%rdx,1),%tmm${t}` });
  for (const t of tiles) out.push({ call: `AMX_STORE(${t}, p, 64)`, insn: `tilestored %tmm${t},(%rax,%rdx,1)` });
  for (const [macro, op] of [
    ['AMX_DPBF16PS', 'tdpbf16ps'],
    ['AMX_DPBUSD', 'tdpbusd'],
  ])
    for (const c of tiles)
      for (const a of tiles)
        for (const b of tiles)
          if (c !== a && a !== b && b !== c)
            // the three tiles must differ (else #UD)
            out.push({ call: `${macro}(${c}, ${a}, ${b})`, insn: `${op} %tmm${b},%tmm${a},%tmm${c}` });
  return out;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}\n(g++ and binutils >= 2.36 are needed)`);
  return r.stdout;
}

/** [bytes as hex, instruction text] of each AMX instruction in an object file, in order. */
function amxInstructions(obj: string): { hex: string; insn: string }[] {
  // --insn-width keeps each instruction's bytes on its own line
  const dis = run('objdump', ['-d', '-w', '--insn-width=16', obj]);
  expect(dis).not.toMatch(/\(bad\)/);
  const out: { hex: string; insn: string }[] = [];
  for (const line of dis.split('\n')) {
    const m = /^\s*[0-9a-f]+:\s+((?:[0-9a-f]{2} )+)\s*(.*)$/.exec(line);
    if (!m || !/^(ldtilecfg|tilerelease|tilezero|tileloadd|tilestored|tdp)/.test(m[2])) continue;
    out.push({
      hex: m[1].trim(),
      insn: m[2]
        .replace(/\s+#.*$/, '')
        .replace(/\s+/, ' ')
        .trim(),
    });
  }
  return out;
}

test('every AMX macro encodes the instruction it names, as the host assembler would', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simba-amx-'));
  try {
    const all = forms();
    const cc = path.join(dir, 'forms.cc');
    fs.writeFileSync(
      cc,
      `#include "amx_insn.h"\nextern "C" void forms(char* p) {\n${all.map((f) => `  ${f.call};`).join('\n')}\n}\n`,
    );
    run('g++', ['-O1', '-c', '-I', path.join(root, 'native', 'cpu'), cc, '-o', path.join(dir, 'forms.o')]);
    const fromMacros = amxInstructions(path.join(dir, 'forms.o'));
    expect(fromMacros.map((i) => i.insn)).toEqual(all.map((f) => f.insn));

    const s = path.join(dir, 'mnemonics.s');
    fs.writeFileSync(s, `.text\n${all.map((f) => f.insn).join('\n')}\n`);
    run('as', [s, '-o', path.join(dir, 'mnemonics.o')]);
    const fromAssembler = amxInstructions(path.join(dir, 'mnemonics.o'));
    expect(fromMacros.map((i) => i.hex)).toEqual(fromAssembler.map((i) => i.hex));
    // 2 + 3 x 8 single-tile forms, 2 x 8 x 7 x 6 products
    expect(fromMacros).toHaveLength(698);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the GEMM kernels use only the byte-encoded macros (no AMX mnemonic reaches the assembler)', () => {
  const src = fs.readFileSync(path.join(root, 'native', 'cpu', 'gemm_amx.cc'), 'utf8');
  const code = src.replace(/\/\/.*$/gm, '');
  expect(code).toMatch(/AMX_DPBUSD\(/);
  expect(code).not.toMatch(/\b(ldtilecfg|tilerelease|tilezero|tileloadd|tilestored|tdpbf16ps|tdpbusd)\b/);
  expect(code).not.toMatch(/__asm__/);
});
