// gemm_int8.cc — C[M,N] = A[M,K] W^T (+bias) with Q8 weights (kernels.h) and A quantized per row
// (quantize.cc), int32 accumulation: C[m, n] = sa[m] sw[n] sum_k (qa[m, k] - 128) qw[n, k].
// The portable build (every ISA, pmaddwd on 16-bit pairs); on CPUs with AVX512-VNNI dispatch.cc
// runs gemm_ext.cc instead. Both compute the same integers, so their results are identical.
// Work items as gemm.cc: (row block, panel) pairs.
#include <immintrin.h>

#include "gemm_items.h"
#include "gemm_store_simd.h"
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int NV = kPanel / W;  // int32 vectors per 32 output features
constexpr int MR8 = W == 16 ? 6 : W == 8 ? 3 : 1;
constexpr int kKC8 = 1024;  // k-slice: 1024 x 32 bytes = 32 KB of panel

// Per 32-bit lane: a.lo16 * b.lo16 + a.hi16 * b.hi16 (signed 16-bit products summed in int32):
// pmaddwd, in every build (SSE2, AVX2, AVX-512 BW).
static inline vi vmadd16(vi a, vi b) {
#if SIMBA_W == 16
  __m512i r = _mm512_madd_epi16(reinterpret_cast<__m512i&>(a), reinterpret_cast<__m512i&>(b));
#elif SIMBA_W == 8
  __m256i r = _mm256_madd_epi16(reinterpret_cast<__m256i&>(a), reinterpret_cast<__m256i&>(b));
#else
  __m128i r = _mm_madd_epi16(reinterpret_cast<__m128i&>(a), reinterpret_cast<__m128i&>(b));
#endif
  return reinterpret_cast<vi&>(r);
}

// acc[R][32] (int32) += (qa[R, 4*ng] - 128) . panel groups [ng][32][4]. Each group's 4 bytes per
// output feature are widened to two lanes of 16-bit pairs (k0, k1) and (k2, k3), and A's 4 values
// to the matching pairs, so two pmaddwd do the 4 multiply-adds.
template <int R>
static inline void micro_q8(int ng, const uint8_t* qa, int ldq, const int8_t* panel, vi (&acc)[R][NV]) {
  for (int g = 0; g < ng; g++) {
    const vi_u* words = reinterpret_cast<const vi_u*>(panel + (size_t)g * 4 * kPanel);  // 32 words: 4 k per feature
    vi w01[NV], w23[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
      const vi u = words[v];
      w01[v] = (((u << 24) >> 24) & 0xffff) | (((u << 16) >> 24) << 16);  // sign-extended bytes 0, 1
      w23[v] = (((u << 8) >> 24) & 0xffff) | ((u >> 24) << 16);           // bytes 2, 3
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const uint8_t* a = qa + (size_t)r * ldq + 4 * g;
      const int32_t a01 = (((int32_t)a[0] - 128) & 0xffff) | (((int32_t)a[1] - 128) * 65536);
      const int32_t a23 = (((int32_t)a[2] - 128) & 0xffff) | (((int32_t)a[3] - 128) * 65536);
      const vi b01 = vi{} + a01, b23 = vi{} + a23;
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] += vmadd16(b01, w01[v]) + vmadd16(b23, w23[v]);
    }
  }
}

template <int R>
static void tile_rows(const GemmArgs& g, int m, int p, int k0, int kc, int ncols, bool first) {
  const PackedWeight& Wt = *g.W;
  const int n0 = p * kPanel;
  const int8_t* panel = Wt.q8 + (size_t)p * Wt.Kp * kPanel + (size_t)k0 * kPanel;
  vi acc[R][NV];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vi{};
  micro_q8<R>((kc + 3) / 4, g.aq->q + (size_t)m * g.aq->ldq + k0, g.aq->ldq, panel, acc);
  const bool acc_c = g.accumulate || !first;
  const float* bias = first && g.bias && !g.accumulate ? g.bias + n0 : nullptr;
  for (int r = 0; r < R; r++) {
    const float sa = g.aq->scale[m + r];
    store_row_panel(g.C + (size_t)(m + r) * g.ldc + n0, ncols, bias, acc_c, [&](int v) {
      return __builtin_convertvector(acc[r][v], vf) * (vload(Wt.scale + n0 + v * W) * sa);
    });
  }
}

void gemm_q8_slice(const GemmArgs& g, int begin, int end) {
  // kKC8 a multiple of 4: slices start on a group boundary
  for_gemm_items<MR8, kKC8>(g, begin, end, [&](auto rows, int m, int p, int k0, int kc, int ncols, bool first) {
    tile_rows<decltype(rows)::value>(g, m, p, k0, kc, ncols, first);
  });
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
