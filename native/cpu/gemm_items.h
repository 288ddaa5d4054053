// gemm_items.h — the work-item loop shared by the GEMM kernels (gemm_int8.cc, gemm_ext.cc):
// item = (row block, panel), row-block-major; within an item K is cut into slices of KC and the
// rows into tiles of MR (then single rows). tile(m, rows_in_tile, p, k0, kc, ncols, first_slice)
// is called with rows_in_tile MR or 1; the kernel instantiates its microkernel for both.
#pragma once
#include "kernels.h"

namespace simba {
namespace cpu {

template <int MR, int KC, typename Tile>
inline void for_gemm_items(const GemmArgs& g, int begin, int end, Tile&& tile) {
  const PackedWeight& Wt = *g.W;
  const int np = Wt.npanels;
  for (int item = begin; item < end; item++) {
    const int mb = item / np, p = item % np;
    const int m0 = mb * g.mblock;
    const int rows = g.M - m0 < g.mblock ? g.M - m0 : g.mblock;
    const int ncols = Wt.N - p * kPanel < kPanel ? Wt.N - p * kPanel : kPanel;
    for (int k0 = 0; k0 < Wt.K; k0 += KC) {
      const int kc = Wt.K - k0 < KC ? Wt.K - k0 : KC;
      int m = m0;
      for (; m + MR <= m0 + rows; m += MR) tile(m, MR, p, k0, kc, ncols, k0 == 0);
      for (; m < m0 + rows; m++) tile(m, 1, p, k0, kc, ncols, k0 == 0);
    }
  }
}

}  // namespace cpu
}  // namespace simba
