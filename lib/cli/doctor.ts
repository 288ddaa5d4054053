/**
 * `simba doctor`: which addon file loaded and from where, the kernels and threads, the platform and
 * glibc, and whether the CUDA library loaded (driver, device, compute capability) or why not.
 * Exit 1 when no addon loads (the loader's message, with possible solutions, goes to stderr).
 *
 *   simba doctor [--json]
 */
import type { Command } from 'commander';

import { addonReport, type AddonReport } from '../engine/addon_info';
import { CliError, out } from './args';

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** The report as aligned "key  value" lines. */
export function formatReport(r: AddonReport): string {
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

function cmdDoctor(f: { json?: boolean }): void {
  const r = addonReport();
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
    .action((o: { json?: boolean }) => cmdDoctor(o));
}
