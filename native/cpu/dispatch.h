// dispatch.h — picks the widest kernel build the CPU supports, and wraps each kernel slice in a
// parallel_for over the thread pool. This is the CPU kernels' public face for model.cc.
#pragma once
#include <string>
#include <vector>

#include "kernels.h"
#include "threadpool.h"

namespace simba {
namespace cpu {

// Builds this CPU can run, widest first ("avx512", "avx2", "sse2").
std::vector<std::string> available_isas();
// The active build: SIMBA_ISA env var if set and supported, else the widest.
const KernelTable& active();
// Switch builds (tests run every kernel on every build). Throws on an unknown/unsupported name.
void set_isa(const std::string& name);

// Which GEMM kernel runs for a weight format and row count on this CPU and active build:
// BF16 weights with M >= kBf16DpMinRows use vdpbf16ps when the CPU has AVX512-BF16 (below that, a
// decode GEMM streams the weights and gains nothing from rounding A); Q8 uses vpdpbusd with
// AVX512-VNNI. SIMBA_NO_EXT=1 turns both extensions off (the portable kernels of each build run).
enum class GemmPath { F32, Bf16, Bf16Dp, Q8, Q8Vnni };
constexpr int kBf16DpMinRows = 16;
GemmPath gemm_path(const PackedWeight& W, int M);
// Whether the vpdpbusd / vdpbf16ps kernels can run now (the condition gemm_path uses): the avx512
// build active, extensions allowed, and the CPU has them.
bool vnni_usable();
bool bf16dp_usable();
const char* gemm_path_name(GemmPath p);

// Parallel wrappers. Shapes as in kernels.h.
void gemm(const float* A, int lda, const PackedWeight& W, const float* bias, float* C, int ldc, int M,
          bool accumulate = false);
void rmsnorm(const float* x, int ldx, const float* w, float* y, int ldy, int rows, int d, float eps);
void conv1d(const Conv1dArgs& a);
void scan(const ScanArgs& a);
// Fills score[total_rows] (the rows covered by a.seqs) with the reduced scores.
void score(ScoreArgs a, float* score, int total_rows);

}  // namespace cpu
}  // namespace simba
