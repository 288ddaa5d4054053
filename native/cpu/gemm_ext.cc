// gemm_ext.cc — GEMMs on AVX-512 extensions, compiled only with -mavx512vnni -mavx512bf16
// (CMakeLists: simba_cpu_avx512_ext) and called by dispatch.cc only when the CPU has them.
//   gemm_q8_vnni   Q8 weights, A quantized per row (unsigned, +128): vpdpbusd, int32 accumulators;
//                  C = sa sw (acc - 128 colsum) (the +128 offset of A removed by the column sums).
//   gemm_bf16_dp   BF16 weights, A rounded to bf16 pairs (round_bf16_pairs): vdpbf16ps, f32
//                  accumulators (each lane: acc += a[k] w[k] + a[k+1] w[k+1]).
// Both tile C in MR x 32 blocks (two zmm of accumulators per row) and cut K into slices whose
// panel part (32 KB) stays in L1. Work items as gemm.cc: (row block, panel) pairs.
#include <immintrin.h>

#include <cstring>

#include "gemm_items.h"
#include "gemm_store_avx512.h"
#include "kernels.h"

namespace simba {
namespace cpu {
namespace avx512_ext {

namespace {

constexpr int MR = 8;  // 16 accumulators of 32 zmm registers

// ---- Q8 x u8 -> int32 (vpdpbusd)

constexpr int kKC8 = 1024;

template <int R>
inline void q8_rows(const GemmArgs& g, int m, int p, int k0, int kc, int ncols, bool first) {
  const PackedWeight& Wt = *g.W;
  const int n0 = p * kPanel;
  const int8_t* panel = Wt.q8 + (size_t)p * Wt.Kp * kPanel + (size_t)k0 * kPanel;
  const uint8_t* qa = g.aq->q + (size_t)m * g.aq->ldq + k0;
  const int ldq = g.aq->ldq;
  __m512i acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  const int ng = (kc + 3) / 4;
  // Decode batches up to 2 tiles stream the panel a few KB ahead (kStreamPrefetchBytes). Larger M:
  // the next k-slice (or the next panel, which follows the last slice in memory) is fetched into L2
  // while this one runs, by every tile of the row block, so the block's first tile of a slice reads
  // it from L2, not memory (the other tiles find the slice in L1): M = 32, 1.4b shapes, 2 threads:
  // 1037 -> 1151 and 1262 -> 1385 GFLOP/s over the layer GEMMs (two alternated rounds).
  const bool stream = g.M <= 2 * MR;
  const int8_t* next = panel + (size_t)ng * 4 * kPanel;
  // Unrolled: rolled, GCC copies all 16 accumulators through other registers (and two through the
  // stack) every group, 34 moves per 16 vpdpbusd (prefill at 29-33% of the dot peak).
#pragma GCC unroll 4
  for (int gi = 0; gi < ng; gi++) {
    const int8_t* w = panel + (size_t)gi * 4 * kPanel;
    if (stream) {
      prefetch_stream_row(w);
    } else {
      __builtin_prefetch(next + (size_t)gi * 4 * kPanel, 0, 2);
      __builtin_prefetch(next + (size_t)gi * 4 * kPanel + 64, 0, 2);
    }
    const __m512i w0 = _mm512_load_si512(w), w1 = _mm512_load_si512(w + 64);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      int32_t a4;
      std::memcpy(&a4, qa + (size_t)r * ldq + 4 * gi, 4);
      const __m512i a = _mm512_set1_epi32(a4);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], a, w0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], a, w1);
    }
  }
  const __m512 sw0 = _mm512_loadu_ps(Wt.scale + n0), sw1 = _mm512_loadu_ps(Wt.scale + n0 + 16);
  __m512i off0 = _mm512_setzero_si512(), off1 = off0;
  if (first) {  // remove the +128 of A once: 128 * sum_k qw
    off0 = _mm512_slli_epi32(_mm512_loadu_si512(Wt.colsum + n0), 7);
    off1 = _mm512_slli_epi32(_mm512_loadu_si512(Wt.colsum + n0 + 16), 7);
  }
  const float* bias = first && g.bias && !g.accumulate ? g.bias + n0 : nullptr;
  for (int r = 0; r < R; r++) {
    const __m512 sa = _mm512_set1_ps(g.aq->scale[m + r]);
    __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][0], off0)), _mm512_mul_ps(sw0, sa));
    __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][1], off1)), _mm512_mul_ps(sw1, sa));
    store_row32(g.C + (size_t)(m + r) * g.ldc + n0, v0, v1, ncols, bias, g.accumulate || !first);
  }
}

// ---- bf16 x bf16 -> f32 (vdpbf16ps)

constexpr int kKCbf = 512;  // 512 k x 32 x 2 bytes = 32 KB of panel

template <int R>
inline void bf16_rows(const GemmArgs& g, int m, int p, int k0, int kc, int ncols, bool first) {
  const PackedWeight& Wt = *g.W;
  const int n0 = p * kPanel;
  const uint16_t* panel = Wt.h16 + (size_t)p * Wt.Kp * kPanel + (size_t)k0 * kPanel;
  const uint32_t* a2 = g.abf + (size_t)m * g.lda2 + k0 / 2;
  __m512 acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const int npairs = (kc + 1) / 2;
  for (int kp = 0; kp < npairs; kp++) {
    const uint16_t* w = panel + (size_t)kp * 2 * kPanel;
    const __m512bh w0 = (__m512bh)_mm512_load_si512(w), w1 = (__m512bh)_mm512_load_si512(w + 32);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32((int)a2[(size_t)r * g.lda2 + kp]);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, w0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, w1);
    }
  }
  const float* bias = first && g.bias && !g.accumulate ? g.bias + n0 : nullptr;
  for (int r = 0; r < R; r++)
    store_row32(g.C + (size_t)(m + r) * g.ldc + n0, acc[r][0], acc[r][1], ncols, bias, g.accumulate || !first);
}

inline uint32_t bf16_bits(float f) {  // round to nearest even (finite inputs; NaN stays NaN)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

}  // namespace

void gemm_q8_vnni(const GemmArgs& g, int begin, int end) {
  for_gemm_items<MR, kKC8>(g, begin, end, [&](auto rows, int m, int p, int k0, int kc, int nc, bool f) {
    q8_rows<decltype(rows)::value>(g, m, p, k0, kc, nc, f);
  });
}

void gemm_bf16_dp(const GemmArgs& g, int begin, int end) {
  for_gemm_items<MR, kKCbf>(g, begin, end, [&](auto rows, int m, int p, int k0, int kc, int nc, bool f) {
    bf16_rows<decltype(rows)::value>(g, m, p, k0, kc, nc, f);
  });
}

// out[r][j] = bf16(A[r][2j]) | bf16(A[r][2j+1]) << 16 for j < ceil(K/2) (an odd K's last high half 0).
void round_bf16_pairs(const float* A, int lda, int K, uint32_t* out, int ld2, int begin, int end) {
  for (int r = begin; r < end; r++) {
    const float* x = A + (size_t)r * lda;
    uint32_t* o = out + (size_t)r * ld2;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
      const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
      _mm512_storeu_si512(o + k / 2, (__m512i)h);
    }
    for (; k < K; k += 2) o[k / 2] = bf16_bits(x[k]) | (k + 1 < K ? bf16_bits(x[k + 1]) << 16 : 0u);
  }
}

}  // namespace avx512_ext
}  // namespace cpu
}  // namespace simba
