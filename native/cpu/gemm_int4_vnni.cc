// gemm_int4_vnni.cc — C[M,N] = A[M,K] W^T (+bias) with Q4 weights on AVX512-VNNI (compiled with
// -mavx512vnni in simba_cpu_avx512_ext, called by dispatch.cc only when the CPU has it). The same
// integers as gemm_int4.cc: per block of 32 k and row, an int32 accumulator starts at bcorr (-8 times
// the block's activation sum) and takes 8 vpdpbusd per 16 features, the unsigned nibbles as the
// unsigned operand and 4 signed activation bytes broadcast from memory as the signed one; then one
// conversion and one FMA with the block's scales (half floats, vcvtph2ps) into f32 accumulators.
// One 64-byte load of nibbles is both 16-feature operands of a group (low nibbles: features 0-15,
// high: 16-31), an and and a shift apart. Work items as gemm.cc: (row block, panel) pairs.
#include <immintrin.h>

#include <cstring>

#include "gemm_items.h"
#include "gemm_store_avx512.h"
#include "kernels.h"

namespace simba {
namespace cpu {
namespace avx512_ext {

namespace {

constexpr int MR = 6;       // 12 f32 + 12 int32 accumulators, 2 weight operands, the mask, a broadcast
constexpr int kKC4 = 1024;  // k-slice: 32 blocks x 576 bytes = 18 KB of panel and scales
constexpr int kBlockBytes = kQ4Block * kPanel / 2;

template <int R>
inline void q4_rows(const GemmArgs& g, int m, int p, int k0, int kc, int ncols, bool first) {
  const PackedWeight& Wt = *g.W;
  const int n0 = p * kPanel, Kb = Wt.Kp / kQ4Block, b0 = k0 / kQ4Block, nb = (kc + kQ4Block - 1) / kQ4Block;
  const uint8_t* panel = Wt.q4 + (size_t)p * Wt.Kp * (kPanel / 2) + (size_t)b0 * kBlockBytes;
  const uint16_t* ds = Wt.d16 + ((size_t)p * Kb + b0) * kPanel;
  const QuantRows& aq = *g.aq;
  const uint8_t* qa = aq.q + (size_t)m * aq.ldq + k0;
  const int32_t* corr = aq.bcorr + (size_t)m * aq.ldb + b0;
  // Decode batches up to 16 rows stream the panel a few KB ahead. Larger M: the next k-slice's blocks
  // and scales (or the next panel's, which follow the last slice in memory) are fetched into L2 while
  // this slice runs, by every tile of the row block, so the block's first tile of a slice reads them
  // from L2, not memory (the other tiles find the slice in L1), as gemm_ext.cc.
  const bool stream = g.M <= 16;
  const uint8_t* next = panel + (size_t)nb * kBlockBytes;
  const char* next_ds = reinterpret_cast<const char*>(ds + (size_t)nb * kPanel);
  const __m512i nib = _mm512_set1_epi8(0x0f);
  __m512 acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int b = 0; b < nb; b++) {
    const uint8_t* w = panel + (size_t)b * kBlockBytes;
    if (stream) {
      for (int l = 0; l < kBlockBytes; l += 128) prefetch_stream_row(w + l);
      __builtin_prefetch(reinterpret_cast<const char*>(ds + (size_t)b * kPanel) + kStreamPrefetchBytes / 8, 0, 1);
    } else {
#pragma GCC unroll 8
      for (int l = 0; l < kBlockBytes; l += 64) __builtin_prefetch(next + (size_t)b * kBlockBytes + l, 0, 2);
      __builtin_prefetch(next_ds + (size_t)b * kPanel * 2, 0, 2);
    }
    __m512i s[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) s[r][0] = s[r][1] = _mm512_set1_epi32(corr[(size_t)r * aq.ldb + b]);
    // Decode at batch 1 (R = 1): the odd groups' dot products go to a second pair of accumulators
    // (t), added before the scale, so a block's 8 vpdpbusd run in two chains per half and its latency
    // does not pace the stream; the same integers. (The loop is unrolled: the choice is made at
    // compile time.)
    __m512i t[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 8
    for (int gi = 0; gi < kQ4Block / 4; gi++) {
      const __m512i x = _mm512_loadu_si512(w + gi * 64);
      const __m512i w0 = _mm512_and_si512(x, nib), w1 = _mm512_and_si512(_mm512_srli_epi16(x, 4), nib);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        int32_t a4;
        std::memcpy(&a4, qa + (size_t)r * aq.ldq + b * kQ4Block + gi * 4, 4);
        const __m512i a = _mm512_set1_epi32(a4);
        __m512i* d = R == 1 && (gi & 1) ? t : s[r];
        d[0] = _mm512_dpbusd_epi32(d[0], w0, a);
        d[1] = _mm512_dpbusd_epi32(d[1], w1, a);
      }
    }
    if constexpr (R == 1) {
      s[0][0] = _mm512_add_epi32(s[0][0], t[0]);
      s[0][1] = _mm512_add_epi32(s[0][1], t[1]);
    }
    const __m512 d0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ds + (size_t)b * kPanel)));
    const __m512 d1 =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ds + (size_t)b * kPanel + 16)));
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][0]), d0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][1]), d1, acc[r][1]);
    }
  }
  const float* bias = first && g.bias && !g.accumulate ? g.bias + n0 : nullptr;
  for (int r = 0; r < R; r++) {
    const __m512 sa = _mm512_set1_ps(aq.scale[m + r]);
    store_row32(g.C + (size_t)(m + r) * g.ldc + n0, _mm512_mul_ps(acc[r][0], sa), _mm512_mul_ps(acc[r][1], sa), ncols,
                bias, g.accumulate || !first);
  }
}

}  // namespace

void gemm_q4_vnni(const GemmArgs& g, int begin, int end) {
  for_gemm_items<MR, kKC4>(g, begin, end, [&](auto rows, int m, int p, int k0, int kc, int nc, bool f) {
    q4_rows<decltype(rows)::value>(g, m, p, k0, kc, nc, f);
  });
}

}  // namespace avx512_ext
}  // namespace cpu
}  // namespace simba
