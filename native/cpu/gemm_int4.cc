// gemm_int4.cc — C[M,N] = A[M,K] W^T (+bias) with Q4 weights (kernels.h: nibbles u, W ~= (u - 8) d
// per block of 32 k) and A quantized per row to signed bytes (quantize.cc quantize_q4_slice):
//   C[m, n] = sa[m] sum_b d[n, b] (bcorr[m, b] + sum_{k in b} qa[m, k] u[n, k]),
// bcorr = -8 sum_{k in b} qa. The portable build (every ISA): each block is unpacked once per tile
// into int32 vectors and multiplied in int32; on CPUs with AVX512-VNNI dispatch.cc runs
// gemm_int4_vnni.cc instead. Both compute the same integers per block; the float sums over blocks
// may round differently (the VNNI kernel fuses the multiply-add).
// Work items as gemm.cc: (row block, panel) pairs.
#include "gemm_items.h"
#include "gemm_store_simd.h"
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int NV = kPanel / W;  // vectors per 32 output features
constexpr int MR4 = 4;
constexpr int kKC4 = 1024;  // k-slice, a multiple of kQ4Block

template <int R>
static void tile_rows(const GemmArgs& g, int m, int p, int k0, int kc, int ncols, bool first) {
  const PackedWeight& Wt = *g.W;
  const int n0 = p * kPanel, Kb = Wt.Kp / kQ4Block, b0 = k0 / kQ4Block, nb = (kc + kQ4Block - 1) / kQ4Block;
  const uint8_t* panel = Wt.q4 + (size_t)p * Wt.Kp * (kPanel / 2) + (size_t)b0 * (kQ4Block * kPanel / 2);
  const uint16_t* ds = Wt.d16 + ((size_t)p * Kb + b0) * kPanel;
  const QuantRows& aq = *g.aq;
  vf acc[R][NV];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vf{};
  for (int b = 0; b < nb; b++) {
    const uint8_t* blk = panel + (size_t)b * (kQ4Block * kPanel / 2);
    vi wv[kQ4Block][NV];
    for (int k = 0; k < kQ4Block; k++)
      for (int c = 0; c < kPanel; c++) {
        const uint8_t byte = blk[(k / 4) * (2 * kPanel) + (c % 16) * 4 + k % 4];
        wv[k][c / W][c % W] = c < 16 ? byte & 15 : byte >> 4;
      }
    vf dv[NV];
    for (int c = 0; c < kPanel; c++) dv[c / W][c % W] = half_to_float(ds[(size_t)b * kPanel + c]);
    for (int r = 0; r < R; r++) {
      const int8_t* a = reinterpret_cast<const int8_t*>(aq.q + (size_t)(m + r) * aq.ldq + k0 + b * kQ4Block);
      vi s[NV];
      for (int v = 0; v < NV; v++) s[v] = vi{} + aq.bcorr[(size_t)(m + r) * aq.ldb + b0 + b];
      for (int k = 0; k < kQ4Block; k++) {
        const vi av = vi{} + (int32_t)a[k];
        for (int v = 0; v < NV; v++) s[v] += av * wv[k][v];
      }
      for (int v = 0; v < NV; v++) acc[r][v] += __builtin_convertvector(s[v], vf) * dv[v];
    }
  }
  const bool acc_c = g.accumulate || !first;
  const float* bias = first && g.bias && !g.accumulate ? g.bias + n0 : nullptr;
  for (int r = 0; r < R; r++) {
    const float sa = aq.scale[m + r];
    store_row_panel(g.C + (size_t)(m + r) * g.ldc + n0, ncols, bias, acc_c, [&](int v) { return acc[r][v] * sa; });
  }
}

void gemm_q4_slice(const GemmArgs& g, int begin, int end) {
  for_gemm_items<MR4, kKC4>(g, begin, end, [&](auto rows, int m, int p, int k0, int kc, int ncols, bool first) {
    tile_rows<decltype(rows)::value>(g, m, p, k0, kc, ncols, first);
  });
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
