#!/usr/bin/env bash
# Builds the CUDA kernels and DeviceModel as host code under emu.h and compares them with the CPU
# engine (emu_test.cc). `run.sh kernels` skips the (slow, ~7 min) whole-model checks. Needs g++ >= 11 and a prior `npm run build:native` (links its CPU objects).
set -euo pipefail
cd "$(dirname "$0")/../../.."
obj=build/CMakeFiles
out=${TMPDIR:-/tmp}/simba-emu-$(pwd | cksum | cut -d" " -f1)  # per checkout: several may build at once
mkdir -p "$out"
cpu_objs=("$obj"/simba_ssm.dir/native/engine/{model,mixer,mixer_mamba1,mixer_mamba2,prune}.cc.o "$obj"/simba_ssm.dir/native/cpu/dispatch.cc.o "$obj"/simba_ssm.dir/native/cpu/threadpool.cc.o
          "$obj"/simba_cpu_*.dir/native/cpu/*.o)
flags=(-std=c++20 -O2 -g -DSIMBA_EMU -Inative -Wall -Wno-unused-function -pthread)
srcs=(gemm rmsnorm conv1d selective_scan simba_score ssd_scan simba_score_ssd gather)
pids=()
for s in "${srcs[@]}"; do g++ "${flags[@]}" -x c++ -c native/cuda/$s.cu -o "$out/$s.o" & pids+=($!); done
for s in model_cuda mixer_mamba1 mixer_mamba2; do g++ "${flags[@]}" -c native/cuda/$s.cc -o "$out/$s.o" & pids+=($!); done
g++ "${flags[@]}" -c native/cuda/emu/emu.cc -o "$out/emu.o" & pids+=($!)
g++ "${flags[@]}" -c native/cuda/emu/emu_test.cc -o "$out/emu_test.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
g++ -pthread -o "$out/emu_test" "$out"/*.o "${cpu_objs[@]}"
"$out/emu_test" "$@"
