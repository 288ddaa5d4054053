// shape_limits.h — the largest conv width and state size the kernels take: the CPU kernels hold a
// sequence's taps and state rows in registers and stack arrays of these sizes (cpu/conv1d.cc,
// cpu/selective_scan.cc, cpu/simba_score.cc), the CUDA kernels in per-thread arrays (cuda/conv1d.cu).
// The engines reject larger configs before any kernel runs (check_config, common/tensor_table.h).
// Its own header so that the kernels need nothing else from the tensor table.
#pragma once

namespace simba {

constexpr int kMaxConv = 8, kMaxState = 256;

}  // namespace simba
