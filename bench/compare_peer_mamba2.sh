#!/usr/bin/env bash
# simba-ssm against node-llama-cpp (llama.cpp's "mamba2" graph) on the same random Mamba-2 weights:
# the logits of both engines and of the float64 reference (test/reference/mamba2_ref.ts) on a fixed
# token list, for a tiny shape (2 groups, head_dim 16 != state 32) and the mamba2-130m shape; then
# prefill T=512/2048 and decode B=1/8/32 side by side, f32 and int8 (the peer: Q8_0), as
# bench/compare_peer.sh does for Mamba-1 (the same output files, so bench/compare_summary.js
# makes the table).
#
#   bash bench/compare_peer_mamba2.sh PEER_DIR OUT_DIR [all|logits|speed]
#
# PEER_DIR: node-llama-cpp and its gguf-py, as ../shared/peers/setup.sh PEER_DIR installs them; the
# random HF folders (PEER_DIR/rand2-tiny, PEER_DIR/rand2-130m: dist/bench/random_mamba2_folder.js,
# seed 1) and their GGUF files (f32 by hf_to_gguf_mamba2.py, q8_0 by bench/gguf_requant.py) are made
# there when missing. PEERS_TOOLS: the folder of llamacpp_*.mjs and hf_to_gguf_mamba2.py (default
# ../shared/peers beside the repository). Python is Debian's /usr/bin/python3 with python3-numpy.
# The speed part needs an IDLE machine: every peer line records foreign_cores_max, and the summary
# marks lines measured under load with '*'. LOGIT_IDS overrides the token list, LONG_TOKENS the length
# of the long prompt (default 300: past one 256-token chunk, ending inside the next); RUNS the timed runs;
# WAIT_IDLE the seconds the peer waits for a quiet machine before each timed run (default 120);
# SPEED_MODEL=tiny times the tiny folder instead (a quick check of the script, not a result).
set -euo pipefail
peer=$(cd "${1:?peer dir}" && pwd); out=${2:?output dir}; what=${3:-all}
case $what in all | logits | speed) ;; *) echo "third argument: all, logits or speed (got '$what')" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_TOOLS:-$root/../shared/peers}
py=/usr/bin/python3
runs=${RUNS:-5}
wait=${WAIT_IDLE:-120}
ids=${LOGIT_IDS:-1000,200,30,4000,17,256,99,50000,12,7,31337,2,444,10000,5,600}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export NODE_LLAMA_CPP_DIR=$peer PYTHONPATH=$peer/gguf-py
cli="node $root/dist/lib/cli/main.js"
[ -f "$root/dist/bench/random_mamba2_folder.js" ] || (cd "$root" && npm run build:ts >/dev/null)

for m in tiny 130m; do
  dir=$peer/rand2-$m
  shape=$([ $m = tiny ] && echo tiny || echo mamba2-130m)
  [ -f "$dir/model.safetensors" ] || node "$root/dist/bench/random_mamba2_folder.js" --out "$dir" --shape $shape --seed 1
  [ -f "$dir-f32.gguf" ] || $py "$peers/hf_to_gguf_mamba2.py" "$dir" "$dir-f32.gguf" --outtype f32
  [ -f "$dir-q8_0.gguf" ] || $py "$root/bench/gguf_requant.py" "$dir-f32.gguf" "$dir-q8_0.gguf" q8_0
done

# logits_case OUT_SUBDIR MODEL_DIR IDS all|last: every engine's dump of IDS into OUT_SUBDIR, and the table
logits_case() {
  local o=$1 dir=$2 ids=$3 scope=$4 t w f
  local peerpos=() ourpos=last
  [ "$scope" = all ] && peerpos=(--all) && ourpos=all
  mkdir -p "$o"
  node "$ref/test/reference/mamba2_ref_logits.js" --model "$dir" --ids "$ids" --positions "$scope" --out "$o/ref.json"
  for t in f32 q8_0; do
    node "$peers/llamacpp_logits.mjs" --model "$dir-$t.gguf" --tokens "$ids" "${peerpos[@]}" --out "$o/llama.cpp-$t.json" > /dev/null
  done
  for w in f32 int8; do
    $cli logits --model "$dir" --weights $w --ids "$ids" --positions $ourpos --json > "$o/ours-$w.json" 2> "$o/ours-$w.err" ||
      { echo "simba-ssm $w logits failed on $dir: $(head -1 "$o/ours-$w.err")" >&2; rm -f "$o/ours-$w.json"; }
  done
  # every dump against the reference, then the two engines against each other per format
  local pairs=ref:llama.cpp-f32,ref:llama.cpp-q8_0
  if [ "$scope" = all ]; then  # the decode paths too: one token per call
    node "$peers/llamacpp_logits.mjs" --model "$dir-f32.gguf" --tokens "$ids" --all --mode stepwise \
      --out "$o/llama.cpp-f32-stepwise.json" > /dev/null
    pairs=$pairs,ref:llama.cpp-f32-stepwise
    node "$root/bench/stepwise_logits.js" --model "$dir" --ids "$ids" > "$o/ours-f32-stepwise.json" 2> "$o/ours-f32-stepwise.err" ||
      { echo "simba-ssm stepwise logits failed on $dir: $(head -1 "$o/ours-f32-stepwise.err")" >&2; rm -f "$o/ours-f32-stepwise.json"; }
    [ -f "$o/ours-f32-stepwise.json" ] && pairs=$pairs,ref:ours-f32-stepwise,ours-f32-stepwise:llama.cpp-f32-stepwise
    # what rounding the weights alone costs (activations exact): ours stores a scale per row, Q8_0 per 32
    for r in rows blocks32; do
      node "$ref/test/reference/mamba2_ref_logits.js" --model "$dir" --ids "$ids" --round-weights $r --out "$o/ref-int8-$r.json"
    done
    pairs=$pairs,ref:ref-int8-rows,ref:ref-int8-blocks32
  fi
  [ -f "$o/ours-f32.json" ] && pairs=ref:ours-f32,$pairs,ours-f32:llama.cpp-f32
  [ -f "$o/ours-int8.json" ] && pairs=$pairs,ref:ours-int8,ours-int8:llama.cpp-q8_0
  local args=()
  for f in "$o"/*.json; do args+=("$(basename "$f" .json)=$f"); done
  node "$root/bench/compare_logits.js" "${args[@]}" --pairs "$pairs"
}

if [ "$what" != speed ]; then
  # the reference is not part of dist/: compiled alone into a scratch folder
  ref=$(mktemp -d)
  npx --prefix "$root" tsc --outDir "$ref" --rootDir "$root" --module commonjs --target ES2022 --types node \
    --skipLibCheck --esModuleInterop --strict "$root/test/reference/mamba2_ref_logits.ts"
  # a prompt past the 256-token SSD chunk (state passed between chunks), compared at its last position
  long=$(node -e 'console.log(Array.from({ length: +process.argv[1] }, (_, i) => (i * 7919 + 13) % 50277).join(","))' "${LONG_TOKENS:-300}")
  for m in tiny 130m; do
    dir=$peer/rand2-$m
    {
      echo "Logits on $m, $(tr ',' '\n' <<< "$ids" | wc -l) tokens, every position (log-softmax over the whole vocabulary):"
      logits_case "$out/logits-$m" "$dir" "$ids" all
      echo
      echo "Logits on $m, $(tr ',' '\n' <<< "$long" | wc -l) tokens, the last position:"
      logits_case "$out/logits-$m-long" "$dir" "$long" last
      echo
    } | tee "$out/logits-$m.md"
  done
  rm -rf "$ref"
fi

if [ "$what" != logits ]; then
  sm=${SPEED_MODEL:-130m}
  case $sm in 130m | tiny) ;; *) echo "SPEED_MODEL is 130m or tiny (got '$sm')" >&2; exit 2 ;; esac
  model=$peer/rand2-$sm
  # ours: f32 and int8 at 2 threads with the bounds, decode at 1 thread too
  for w in f32 int8; do
    name=$([ $w = f32 ] && echo ours-2t.json || echo ours-$w-2t.json)
    $cli bench --model "$model" --weights $w --json --runs "$runs" --lengths 512,2048 --batches 1,8,32 --limits > "$out/$name"
    SIMBA_THREADS=1 $cli bench --model "$model" --weights $w --json --runs "$runs" --lengths 128 --batches 1,8,32 > "$out/ours-$w-1t.json"
  done
  # the peer: its best settings (prefill at 2 threads, decode at 1), and decode at 2 threads too
  . "$root/bench/peer_bench.sh"
  for t in f32 q8_0; do
    g=$model-$t.gguf
    peer_bench "$out/peer-$t-prefill-2t.jsonl" $t-2t --model "$g" --threads 2 --runs "$runs" --wait-idle "$wait" --skip-decode --prefill 512,2048
    peer_bench "$out/peer-$t-decode-1t.jsonl" $t-1t --model "$g" --threads 1 --runs "$runs" --wait-idle "$wait" --skip-prefill --decode 32 --batch-seqs 8,32
    peer_bench "$out/peer-$t-decode-2t.jsonl" $t-2t --model "$g" --threads 2 --runs "$runs" --wait-idle "$wait" --skip-prefill --decode 32 --batch-seqs 8,32
  done
  {
    node -e '
      const { parsePythonJson } = require(process.argv[3] + "/dist/lib/checkpoint/config.js");
      const file = process.argv[1] + "/config.json";
      const c = parsePythonJson(require("fs").readFileSync(file, "utf8"), file);
      console.log(`Random Mamba-2 weights (${process.argv[2]}: ${c.hidden_size} x ${c.num_hidden_layers} layers, ${c.num_heads} heads of ${c.head_dim}, ` +
        `${c.n_groups} group(s), state ${c.state_size}, vocab ${c.vocab_size}${c.tie_word_embeddings ? ", tied" : ""}), simba-ssm against node-llama-cpp 3.21.1.`);
    ' "$model" "$sm" "$root"
    echo
    node "$root/bench/compare_summary.js" "$out"
    node -e '
      const fs = require("fs"), dir = process.argv[1];
      const lines = fs.readdirSync(dir).filter((f) => /^peer-.*\.jsonl$/.test(f))
        .flatMap((f) => fs.readFileSync(`${dir}/${f}`, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l)))
        .filter((l) => l.measure);
      const m = Math.max(...lines.map((l) => l.foreign_cores_max ?? 0));
      console.log(`\nPeer lines: ${lines.length}; largest foreign_cores_max (cores other processes used during a timed run): ${m.toFixed(2)}.`);
    ' "$out"
  } | tee "$out/summary.md"
fi
echo "results in $out"
