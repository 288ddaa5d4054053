#!/usr/bin/env bash
# Side-by-side speed: simba-ssm and node-llama-cpp (llama.cpp) on the same f32 weights, back to back.
# Needs an IDLE machine and a peer folder PEER_DIR holding node-llama-cpp (NODE_LLAMA_CPP_DIR), its
# gguf-py, random weights of the mamba-130m shape as an HF folder (PEER_DIR/rand-130m) and the same
# weights converted to GGUF f32 (PEER_DIR/rand-130m-f32.gguf); PEERS_TOOLS is the folder of the peer's
# benchmark driver llamacpp_bench.mjs (default: PEER_DIR/..).
#   bash bench/compare_peer.sh PEER_DIR OUT_DIR
set -euo pipefail
peer=${1:?peer dir}; out=${2:?output dir}
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_TOOLS:-$peer/..}
mkdir -p "$out"
export NODE_LLAMA_CPP_DIR=$peer PYTHONPATH=$peer/gguf-py
cli="node $root/dist/lib/cli/main.js"
# ours: prefill (2 threads) with Simba rows, decode at 2 threads and at 1 thread
$cli bench --model "$peer/rand-130m" --json --runs 5 --flops 0.5,0.75 > "$out/ours-2t.json"
SIMBA_THREADS=1 $cli bench --model "$peer/rand-130m" --json --runs 5 --lengths 128 > "$out/ours-1t.json"
# the peer: its best settings (prefill at 2 threads, decode at 1), and decode at 2 threads too
node "$peers/llamacpp_bench.mjs" --model "$peer/rand-130m-f32.gguf" --threads 2 --runs 5 --wait-idle 120 --skip-decode --label f32-2t > "$out/peer-prefill-2t.jsonl"
node "$peers/llamacpp_bench.mjs" --model "$peer/rand-130m-f32.gguf" --threads 1 --runs 5 --wait-idle 120 --skip-prefill --decode 32 --batch-seqs 8 --label f32-1t > "$out/peer-decode-1t.jsonl"
node "$peers/llamacpp_bench.mjs" --model "$peer/rand-130m-f32.gguf" --threads 2 --runs 5 --wait-idle 120 --skip-prefill --decode 32 --batch-seqs 8 --label f32-2t > "$out/peer-decode-2t.jsonl"
echo "results in $out"
