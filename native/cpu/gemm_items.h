// gemm_items.h — the work-item loop shared by the GEMM kernels (gemm_int8.cc, gemm_ext.cc):
// item = (row block, panel), row-block-major; within an item K is cut into slices of KC and the
// rows into tiles of MR, then the rest into tiles of 4, 2 and 1 rows (those below MR).
// tile(rows, m, p, k0, kc, ncols, first_slice) is called with rows a std::integral_constant of the
// tile's row count (MR or tile_rows_of below), so a kernel's lambda instantiates its microkernel with
// decltype(rows)::value and never repeats the row-count dispatch. Each tile reads the
// panel once, so the rest went as single rows, M = 12 on MR = 8 read it five times: decode B=12
// int8 (vpdpbusd) ran slower than B=8 (895 against 1174 tok/s).
#pragma once
#include <type_traits>

#include "kernels.h"

namespace simba {
namespace cpu {

// The tile for the last `left` (< MR) rows of a row block: 4, 2 or 1 rows, each below MR.
template <int MR>
constexpr int tile_rows_of(int left) {
  return MR > 4 && left >= 4 ? 4 : MR > 2 && left >= 2 ? 2 : 1;
}

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
      for (; m + MR <= m0 + rows; m += MR) tile(std::integral_constant<int, MR>{}, m, p, k0, kc, ncols, k0 == 0);
      while (m < m0 + rows) {
        const int t = tile_rows_of<MR>(m0 + rows - m);
        if (t == 4) tile(std::integral_constant<int, tile_rows_of<MR>(4)>{}, m, p, k0, kc, ncols, k0 == 0);
        else if (t == 2) tile(std::integral_constant<int, tile_rows_of<MR>(2)>{}, m, p, k0, kc, ncols, k0 == 0);
        else tile(std::integral_constant<int, 1>{}, m, p, k0, kc, ncols, k0 == 0);
        m += t;
      }
    }
  }
}

}  // namespace cpu
}  // namespace simba
