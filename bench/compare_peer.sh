#!/usr/bin/env bash
# Side-by-side speed: simba-ssm and node-llama-cpp (llama.cpp) on the same weights, back to back:
# f32, bf16 (the peer: f16) and int8 (the peer: Q8_0), with ours as fractions of this machine's
# physical bounds (simba bench --limits). Needs an IDLE machine and a peer folder PEER_DIR holding
# node-llama-cpp (NODE_LLAMA_CPP_DIR), its gguf-py and random weights of the mamba-130m shape as an HF
# folder (PEER_DIR/rand-130m); PEERS_TOOLS is the folder of the peer's tools llamacpp_bench.mjs and
# hf_to_gguf_mamba.py (default: PEER_DIR/..). The GGUF files (f32, f16, q8_0) are converted here
# when missing (Debian's /usr/bin/python3 with numpy). Ends with the table of bench/compare_summary.js.
#   bash bench/compare_peer.sh PEER_DIR OUT_DIR
set -euo pipefail
peer=${1:?peer dir}; out=${2:?output dir}
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_TOOLS:-$peer/..}
py=/usr/bin/python3
mkdir -p "$out"
export NODE_LLAMA_CPP_DIR=$peer PYTHONPATH=$peer/gguf-py
cli="node $root/dist/lib/cli/main.js"
for t in f32 f16 q8_0; do
  [ -f "$peer/rand-130m-$t.gguf" ] || $py "$peers/hf_to_gguf_mamba.py" "$peer/rand-130m" "$peer/rand-130m-$t.gguf" --outtype $t
done
# ours: every format at 2 threads with the bounds (f32 also with Simba rows), decode at 1 thread
$cli bench --model "$peer/rand-130m" --json --runs 5 --flops 0.5,0.75 --limits > "$out/ours-2t.json"
for w in bf16 int8; do
  $cli bench --model "$peer/rand-130m" --weights $w --json --runs 5 --lengths 512,2048 --limits > "$out/ours-$w-2t.json"
done
for w in f32 bf16 int8; do
  SIMBA_THREADS=1 $cli bench --model "$peer/rand-130m" --weights $w --json --runs 5 --lengths 128 > "$out/ours-$w-1t.json"
done
cp "$out/ours-f32-1t.json" "$out/ours-1t.json"
# the GEMM table (GFLOP/s per shape vs the FMA peak)
$cli bench --gemm --shape mamba-130m --json > "$out/gemm-130m.json"
# the peer: its best settings (prefill at 2 threads, decode at 1), and decode at 2 threads too;
# peer_bench (bench/peer_bench.sh) reruns a crashing row without the CPU build that crashed
. "$root/bench/peer_bench.sh"
for t in f32 f16 q8_0; do
  m="$peer/rand-130m-$t.gguf"
  peer_bench "$out/peer-$t-prefill-2t.jsonl" $t-2t --model "$m" --threads 2 --runs 5 --wait-idle 120 --skip-decode
  peer_bench "$out/peer-$t-decode-1t.jsonl" $t-1t --model "$m" --threads 1 --runs 5 --wait-idle 120 --skip-prefill --decode 32 --batch-seqs 8,32
  peer_bench "$out/peer-$t-decode-2t.jsonl" $t-2t --model "$m" --threads 2 --runs 5 --wait-idle 120 --skip-prefill --decode 32 --batch-seqs 8,32
done
# the earlier file names (f32) stay, for older notes
cp "$out/peer-f32-prefill-2t.jsonl" "$out/peer-prefill-2t.jsonl"
cp "$out/peer-f32-decode-1t.jsonl" "$out/peer-decode-1t.jsonl"
cp "$out/peer-f32-decode-2t.jsonl" "$out/peer-decode-2t.jsonl"
node "$root/bench/compare_summary.js" "$out" | tee "$out/summary.md"
echo "results in $out"
