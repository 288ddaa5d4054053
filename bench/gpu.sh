#!/usr/bin/env bash
# One script for a GPU machine: build (with CUDA), run the CUDA tests, then time the scan kernel,
# prefill and decode (bench/gpu_bench.ts) and print a table last. About 5 minutes on an H200.
#
#   bash bench/gpu.sh            [--quick] [--weights f32] [--shapes mamba-130m]  (passed to gpu_bench)
#   SKIP_BUILD=1 / SKIP_TESTS=1  skip those steps
# Needs node >= 18 and node_modules (npm install, or carried: the GPU machines have no registry).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "gpu.sh: node (>= 18) is required" >&2; exit 2; }
[ -d node_modules ] || npm install --no-audit --no-fund --ignore-scripts
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader 2>/dev/null || true
t0=$(date +%s)
if [ -z "${SKIP_BUILD:-}" ]; then
  unset SIMBA_NO_CUDA; export SIMBA_CUDA=1  # the CUDA backend is opt-in (cmake/cuda.cmake)
  b0=$(date +%s)
  npx cmake-js compile --log-level error
  echo "gpu.sh: native build (CPU addon + libsimba_cuda.so) took $(( $(date +%s) - b0 )) s"
  npx tsc -p tsconfig.json
fi
[ -f build/Release/libsimba_cuda.so ] || { echo "gpu.sh: build/Release/libsimba_cuda.so is missing (no nvcc at build time?)" >&2; exit 2; }
node -e "const s=require('./dist/bindings').loadAddon().cudaAvailable(); console.log('cudaAvailable:', JSON.stringify(s)); if(!s.available) process.exit(3)"
status=0
if [ -z "${SKIP_TESTS:-}" ]; then
  npm run test:cuda -- --verbose 2>&1 | tee /tmp/simba-cuda-tests.txt || status=$?
fi
node dist/bench/gpu_bench.js "$@"
echo "gpu.sh: total $(( $(date +%s) - t0 )) s; CUDA tests exit status ${status}"
exit $status
