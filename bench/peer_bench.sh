# Sourced by bench/compare_peer.sh and bench/compare_peer_mamba2.sh (needs $peer, the node-llama-cpp
# folder, and $peers, the folder of llamacpp_bench.mjs): peer_bench OUT_FILE LABEL ARGS... runs
# llamacpp_bench.mjs ARGS --label LABEL > OUT_FILE.
# llama.cpp loads the CPU build that scores best on this CPU; where that build crashes (on
# Sapphire Rapids its AMX build aborts in f16 prefill and segfaults in Q8_0 batched decode,
# node-llama-cpp 3.21.1), the run is repeated with that build hidden (PEER_FALLBACK_HIDE, default
# sapphirerapids: libggml-cpu-<name>.so renamed for the run and restored after), and the rows
# the first run did not print are taken from the second, tagged "fallback": "no-<name>" (the
# summary marks them). The crash is recorded as a line {"crashed": exit status}.
hide=${PEER_FALLBACK_HIDE:-sapphirerapids}
variant=$(ls "$peer"/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-cpu-"$hide".so 2>/dev/null || true)
restore() { [ -n "$variant" ] && [ -f "$variant.hidden" ] && mv "$variant.hidden" "$variant"; return 0; }
trap restore EXIT
peer_bench() {  # OUT_FILE LABEL ARGS...: llamacpp_bench.mjs, with the fallback above
  local file=$1 label=$2 rc=0
  shift 2
  node "$peers/llamacpp_bench.mjs" "$@" --label "$label" > "$file" || rc=$?
  [ $rc -eq 0 ] && return 0
  echo "{\"label\":\"$label\",\"crashed\":$rc}" >> "$file"
  if [ -z "$variant" ]; then echo "peer run $label crashed ($rc); no $hide build to hide" >&2; return 0; fi
  echo "peer run $label crashed ($rc); again without its $hide build" >&2
  mv "$variant" "$variant.hidden"
  node "$peers/llamacpp_bench.mjs" "$@" --label "$label-no-$hide" > "$file.fallback" || echo "the fallback crashed too" >&2
  restore
  node -e '
    const fs = require("fs"), [file, tag] = process.argv.slice(1);
    const parse = (f) => (fs.existsSync(f) ? fs.readFileSync(f, "utf8") : "").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
    const key = (l) => [l.measure, l.mode, l.sequences, l.n_tokens].join("/");
    const have = new Set(parse(file).filter((l) => l.measure && !l.error).map(key));
    const extra = parse(file + ".fallback").filter((l) => l.measure && !l.error && !have.has(key(l)));
    fs.appendFileSync(file, extra.map((l) => JSON.stringify({ ...l, fallback: tag }) + "\n").join(""));
    fs.unlinkSync(file + ".fallback");
  ' "$file" "no-$hide"
}
