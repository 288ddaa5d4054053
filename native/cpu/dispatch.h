// dispatch.h — picks the widest kernel build the CPU supports, and wraps each kernel slice in a
// parallel_for over the thread pool. This is the CPU kernels' public face for the engine (engine/).
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
// BF16 weights with M >= kAmxMinRowsBf16 use AMX tiles (tdpbf16ps) where the CPU has AMX and the
// OS grants it, else from kBf16DpMinRows vdpbf16ps with AVX512-BF16 (below that row count, a
// decode GEMM streams the weights and gains nothing from rounding A); Q8 uses AMX (tdpbusd) for
// M >= kAmxMinRowsQ8, else vpdpbusd with AVX512-VNNI. SIMBA_NO_EXT=1 turns every extension off
// (the portable kernels of each build run); SIMBA_NO_AMX=1 only AMX.
// Q4 uses vpdpbusd with AVX512-VNNI at every row count (no AMX kernel for it yet), else the portable kernel.
enum class GemmPath { F32, Bf16, Bf16Dp, Bf16Amx, Q8, Q8Vnni, Q8Amx, Q4, Q4Vnni };
constexpr int kBf16DpMinRows = 16;
// AMX rows: bf16 from 4 rows (tdpbf16ps on 16-row tiles, padded, still beats the widening FMA
// kernel at decode batch 8: 1.22x), int8 from 16 (at batch 8 vpdpbusd keeps up with the stream).
constexpr int kAmxMinRowsBf16 = 4;
constexpr int kAmxMinRowsQ8 = 16;
GemmPath gemm_path(const PackedWeight& W, int M);
// Whether the vpdpbusd / vdpbf16ps / AMX kernels can run now (the condition gemm_path uses): the
// avx512 build active, extensions allowed, and the CPU has them.
bool vnni_usable();
bool bf16dp_usable();
bool amx_usable();
// AMX on this CPU and OS (AMX-TILE, -BF16, -INT8; on Linux the tile data permission granted by
// arch_prctl), whatever the switches below.
bool amx_available();
// Turns the AMX kernels on or off for this process (tests run both paths); on by default unless
// SIMBA_NO_AMX is set. Throws std::invalid_argument when turning on where AMX is not available.
void set_amx(bool on);
const char* gemm_path_name(GemmPath p);

// Parallel wrappers. Shapes as in kernels.h.
void gemm(const float* A, int lda, const PackedWeight& W, const float* bias, float* C, int ldc, int M,
          bool accumulate = false);
void rmsnorm(const float* x, int ldx, const float* w, float* y, int ldy, int rows, int d, float eps);
void conv1d(const Conv1dArgs& a);
void scan(const ScanArgs& a);
// Fills score[total_rows] (the rows covered by a.seqs) with the reduced scores.
void score(ScoreArgs a, float* score, int total_rows);
// Mamba-2: the SSD scan, the gated norm of `rows` rows, and the Simba scores of the rows of seqs
// (decay, last and score are filled in here); other rows' scores are 0.
void ssd_scan(const SsdArgs& a);
void gated_norm(const GatedNormArgs& a, int rows);
void ssd_score(const SsdScoreArgs& a, const SeqSlice* seqs, int nseq, float* score, int total_rows);

}  // namespace cpu
}  // namespace simba
