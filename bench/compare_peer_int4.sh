#!/usr/bin/env bash
# int4 against llama.cpp's Q4_0 (and int8 against Q8_0), side by side on the same random weights:
# prefill 512 and decode B=1 / B=8 on the mamba-130m and mamba-1.4b shapes, ours with the fraction of
# this machine's bounds (simba bench --limits). Needs a peer folder PEER_DIR as bench/compare_peer.sh
# (node-llama-cpp in NODE_LLAMA_CPP_DIR, its gguf-py; PEERS_TOOLS: the folder of llamacpp_bench.mjs,
# hf_to_gguf_mamba.py and make_random_mamba.py, default PEER_DIR/..) and a WORK folder for the random
# HF folders and GGUF files (the 1.4b ones take ~12 GB), made when missing: f32 by
# hf_to_gguf_mamba.py, q8_0 and q4_0 from it by bench/gguf_requant.py (Debian's /usr/bin/python3 with numpy).
# Q4_K_M (gguf-py has no K-quant writer; llama-quantize is not in node-llama-cpp's package): with
# LLAMA_QUANTIZE, the path of a llama-quantize built from the llama.cpp source node-llama-cpp bundles
# (bench/README.md), the f32 file is quantized by it and the peer runs Q4_K_M too.
# Ends with the table of bench/compare_int4_summary.js. Wants an idle machine. RUNS (default 5): timed
# runs per row; WAIT_IDLE (default 120): seconds the peer waits for a quiet machine before each run.
# LOCK: a file to flock around each file conversion and each shape's benchmark rows (on a shared
# machine, e.g. /tmp/simba-heavy.lock: others can build between shapes).
#   bash bench/compare_peer_int4.sh PEER_DIR WORK OUT_DIR [SHAPES (default "130m 1.4b")]
set -euo pipefail
peer=${1:?peer dir}; work=${2:?work dir}; out=${3:?output dir}; shapes=${4:-130m 1.4b}
runs=${RUNS:-5}; wait_idle=${WAIT_IDLE:-120}
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_TOOLS:-$peer/..}
py=/usr/bin/python3
mkdir -p "$work" "$out"
export NODE_LLAMA_CPP_DIR=$peer PYTHONPATH=$peer/gguf-py
peer_types="q4_0 q8_0"
[ -n "${LLAMA_QUANTIZE:-}" ] && peer_types="q4_0 q4_k_m q8_0"
locked() {  # CMD...: run under $LOCK when set
  if [ -n "${LOCK:-}" ]; then flock "$LOCK" "$@"; else "$@"; fi
}
cli="node $root/dist/lib/cli/main.js"
. "$root/bench/peer_bench.sh"
for s in $shapes; do
  dir=$work/rand-$s
  case $s in
    130m) shape=(--d-model 768 --n-layer 24) ;;
    1.4b) shape=(--d-model 2048 --n-layer 48) ;;
    *) echo "unknown shape $s (130m, 1.4b)" >&2; exit 2 ;;
  esac
  [ -d "$dir" ] || locked $py "$peers/make_random_mamba.py" --out "$dir" "${shape[@]}"
  [ -f "$dir-f32.gguf" ] || locked $py "$peers/hf_to_gguf_mamba.py" "$dir" "$dir-f32.gguf" --outtype f32
  for t in q8_0 q4_0; do
    [ -f "$dir-$t.gguf" ] || locked $py "$root/bench/gguf_requant.py" "$dir-f32.gguf" "$dir-$t.gguf" $t
  done
  if [ -n "${LLAMA_QUANTIZE:-}" ] && [ ! -f "$dir-q4_k_m.gguf" ]; then
    locked "$LLAMA_QUANTIZE" "$dir-f32.gguf" "$dir-q4_k_m.gguf.part" Q4_K_M 2 > "$out/llama-quantize-$s.log" 2>&1
    mv "$dir-q4_k_m.gguf.part" "$dir-q4_k_m.gguf"
  fi
  bench_shape() {
    # ours at 2 threads (the peer's best for prefill; ours is best at 2 for both)
    for w in int4 int8; do
      $cli bench --model "$dir" --weights $w --json --runs $runs --lengths 512 --batches 1,8 --limits > "$out/ours-$s-$w.json"
    done
    # the peer: prefill at 2 threads, decode at 1 (its best)
    for t in $peer_types; do
      peer_bench "$out/peer-$s-$t-prefill-2t.jsonl" $s-$t-2t --model "$dir-$t.gguf" --threads 2 --runs $runs --wait-idle $wait_idle --prefill 512 --skip-decode
      peer_bench "$out/peer-$s-$t-decode-1t.jsonl" $s-$t-1t --model "$dir-$t.gguf" --threads 1 --runs $runs --wait-idle $wait_idle --skip-prefill --decode 32 --batch-seqs 8
    done
  }
  if [ -n "${LOCK:-}" ]; then
    exec 9>>"$LOCK"
    flock 9
    bench_shape
    flock -u 9
    exec 9>&-
  else
    bench_shape
  fi
done
node "$root/bench/compare_int4_summary.js" "$out" $shapes | tee "$out/summary.md"
echo "results in $out"
