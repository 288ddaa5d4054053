#!/usr/bin/env bash
# bench/gpu_check.sh — the CUDA proof in one call, with no Node: configures and builds only the CPU
# engine (static), libsimba_cuda.so and simba_gpu_check (cmake -DSIMBA_GPU_CHECK_ONLY=ON, -j over
# every core), runs the check, and prints its comparison table and timings last.
#
#   bash bench/gpu_check.sh                    on a GPU machine: build + full check + timings (< 8 min, 16 cores)
#   bash bench/gpu_check.sh --emulate --quick  anywhere (CI): the backend compiled as host code
#                                              (native/cuda/emu/), small inputs, no timings, no nvcc build
#   other arguments go to simba_gpu_check (--models, --no-timing, --model-dir; see its --help)
#   BUILD_DIR=... (default build/gpu-check: under the ignored build/, apart from the addon's build/Release)
# Exit status: simba_gpu_check's (0 all comparisons within limits, 1 some failed, 2 could not run);
# 0 with a message when there is no nvcc (the check is built only where a CUDA compiler exists).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/gpu-check}
emulate=0
for a in "$@"; do [ "$a" = "--emulate" ] && emulate=1; done

nvcc_bin=$(command -v nvcc || true)
for c in /usr/local/cuda/bin/nvcc /opt/cuda/bin/nvcc; do [ -z "$nvcc_bin" ] && [ -x "$c" ] && nvcc_bin=$c; done
if [ -z "$nvcc_bin" ]; then
  echo "gpu_check.sh: no nvcc found: simba_gpu_check is built only with a CUDA compiler; skipped"
  exit 0
fi
command -v cmake >/dev/null || { echo "gpu_check.sh: cmake is required" >&2; exit 2; }
jobs=$(nproc 2>/dev/null || echo 2)
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
[ "$emulate" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

t0=$(date +%s)
mkdir -p "$build"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" "${gen[@]}" -DSIMBA_GPU_CHECK_ONLY=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc_bin" >"$build/configure.log" 2>&1 \
    || { cat "$build/configure.log"; exit 2; }
fi
targets=(simba_gpu_check simba_cuda_emu)
[ "$emulate" = 1 ] || targets=(simba_gpu_check simba_cuda)
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$build/build.log" 2>&1 || { tail -50 "$build/build.log"; exit 2; }
t1=$(date +%s)
echo "gpu_check.sh: built ${targets[*]} in $((t1 - t0)) s ($jobs jobs)"

status=0
"$build/simba_gpu_check" "$@" >"$build/table.txt" || status=$?
echo "gpu_check.sh: check ran in $(( $(date +%s) - t1 )) s, exit status $status"
cat "$build/table.txt"
exit $status
