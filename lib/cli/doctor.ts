/**
 * `simba doctor`: which addon file loaded and from where, the kernels and threads, the GEMM kernel
 * each weight format runs for decode (1 row) and prefill (512 rows), the platform and glibc, and
 * whether the CUDA library loaded (driver, device, compute capability) or why not.
 * Exit 1 when no addon loads (the loader's message, with possible solutions, goes to stderr).
 *
 *   simba doctor [--json]
 */
import type { Command } from 'commander';

import { addonReport, type AddonReport } from '../platform/addon_info';
import { gemmKernel } from '../platform/machine';
import { WEIGHT_FORMATS, type WeightFormat } from '../types';
import { CliError, out } from './args';

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** The GEMM kernel of each weight format, for a decode step (1 row) and a prefill (512 rows). */
export type GemmReport = Record<WeightFormat, { decode: string; prefill: string }>;

export const DECODE_ROWS = 1;
export const PREFILL_ROWS = 512;

async function gemmReport(): Promise<GemmReport> {
  const out = {} as GemmReport;
  for (const f of WEIGHT_FORMATS)
    out[f] = { decode: await gemmKernel(f, DECODE_ROWS), prefill: await gemmKernel(f, PREFILL_ROWS) };
  return out;
}

/** The report as aligned "key  value" lines. */
export function formatReport(r: AddonReport & { gemm?: GemmReport }): string {
  const p = r.platform;
  const lines: [string, string][] = [
    ['simba-ssm', `${r.version}, node ${p.node} (N-API ${p.napi})`],
    ['platform', `${p.id}, libc ${p.libc}${p.glibc ? ` ${p.glibc}` : ''} (prebuilt binaries need glibc >= ${r.glibcFloor})`],
  ];
  if (r.addon) {
    const a = r.addon;
    lines.push(
      ['addon', `${a.path} (${mb(a.bytes)})`],
      ['from', `${a.from}${a.package ? ` ${a.package}` : ''}`],
      ['kernels', `${r.isa} (this CPU supports: ${(r.isas ?? []).join(', ')})`],
      ['amx', !r.amx?.available ? 'not available' : r.amx.on ? 'on (bf16 and int8 prefill GEMMs)' : 'available, off'],
      ['threads', r.threads === undefined ? 'unknown' : String(r.threads)],
    );
    for (const f of WEIGHT_FORMATS)
      if (r.gemm) lines.push([`gemm ${f}`, `decode: ${r.gemm[f].decode}; prefill: ${r.gemm[f].prefill}`]);
  } else {
    lines.push(['addon', 'not loaded (see below)']);
  }
  const c = r.cuda;
  lines.push(
    ['cuda', c.available ? `available: ${c.device}` : 'not available'],
    ['cuda library', c.library ?? (r.addon ? 'none loaded' : '-')],
  );
  if (r.addon) {
    const pkg = r.addon.cudaPackage;
    lines.push(['cuda package', `${pkg.name}${pkg.dir ? ` (${pkg.dir})` : `: ${pkg.skip}`}`]);
  }
  lines.push(['nvidia driver', c.driver ?? 'not loaded (/proc/driver/nvidia/version not found)']);
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  let text = lines.map(([k, v]) => k.padEnd(width) + v).join('\n') + '\n';
  if (r.addon && !c.available) text += `\nwhy no CUDA: ${c.reason.replace(/\n/g, '\n  ')}\n`;
  return text;
}

async function cmdDoctor(f: { json?: boolean }): Promise<void> {
  const base = addonReport();
  const r = base.addon ? { ...base, gemm: await gemmReport() } : base;
  out(f.json ? JSON.stringify(r, null, 2) + '\n' : formatReport(r));
  if (!r.addon) {
    if (!f.json) process.stderr.write(`${r.error}\n`);
    throw new CliError('no native addon could be loaded (details above)', 1);
  }
}

export function addDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('which native addon loaded and from where, kernels, threads, glibc, CUDA')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => cmdDoctor(o));
}
