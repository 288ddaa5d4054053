#!/usr/bin/env bash
# Mamba-2 next to Mamba-1 on this CPU, back to back on the same machine (needs an IDLE machine):
# the mamba2-130m and mamba-130m shapes (random weights), f32 and int8, prefill T = 512 / 2048 and
# decode B = 1 / 8 / 32 with this machine's bounds (--limits), and Simba prefill on mamba2-130m at
# flops 0.75 (theory: 1 / 0.75 = 1.33x dense). Writes one JSON per run to OUT_DIR, then the table.
#   bash bench/mamba2_vs_mamba1.sh OUT_DIR
set -euo pipefail
out=${1:?output dir}
root=$(cd "$(dirname "$0")/.." && pwd)
cli="node $root/dist/lib/cli/main.js"
mkdir -p "$out"
for shape in mamba-130m mamba2-130m; do
  for w in f32 int8; do
    $cli bench --shape $shape --weights $w --json --runs 5 --lengths 512,2048 --batches 1,8,32 --limits \
      > "$out/$shape-$w.json"
  done
done
$cli bench --shape mamba2-130m --json --runs 5 --lengths 2048 --batches 1 --decode-tokens 4 --flops 0.75 \
  > "$out/mamba2-130m-simba.json"
node "$root/bench/mamba2_vs_mamba1_summary.js" "$out"
