#!/usr/bin/env node
// CPU time per GEMM call (not wall time), for comparing kernels on a shared machine: other
// processes stretch wall time, but the CPU seconds this process spends per call stay close to what
// an idle machine shows (cache and memory contention still add some). Run with SIMBA_THREADS=1.
// Each figure: the best of 3 of (CPU of 9 timed calls - CPU of 1) / 8, so packing and setup cancel.
// Too coarse (process.cpuUsage) for calls under ~5 ms.
//   SIMBA_THREADS=1 node bench/gemm_cpu_time.js M N K f32|bf16|int8
'use strict';
const path = require('path');
const addon = require(path.join(__dirname, '..', 'build', 'Release', 'simba_ssm.node'));

const [M, N, K] = process.argv.slice(2, 5).map(Number);
const format = process.argv[5] || 'f32';
if (![M, N, K].every((x) => Number.isInteger(x) && x > 0)) {
  console.error('usage: SIMBA_THREADS=1 node bench/gemm_cpu_time.js M N K f32|bf16|int8');
  process.exit(2);
}
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
(async () => {
  const per = [];
  let kernel = '';
  for (let t = 0; t < 3; t++) {
    let c0 = cpu();
    await addon.kernels.gemmTime({ M, N, K, format, reps: 1, minSeconds: 0 });
    const one = cpu() - c0;
    c0 = cpu();
    kernel = (await addon.kernels.gemmTime({ M, N, K, format, reps: 9, minSeconds: 0 })).path;
    per.push((cpu() - c0 - one) / 8);
  }
  const s = Math.min(...per);
  console.log(`M=${M} N=${N} K=${K} ${format} (${kernel}): ${(s * 1e3).toFixed(2)} ms CPU per call, ${((2 * M * N * K) / s / 1e9).toFixed(1)} GFLOP per CPU-second`);
})();
