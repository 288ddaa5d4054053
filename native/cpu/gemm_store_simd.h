// gemm_store_simd.h — the portable GEMM epilogue shared by gemm_int8.cc and gemm_int4.cc (every ISA
// build; include after simd.h): one row of a 32-column panel tile written to C. The AVX-512
// kernels' counterpart is gemm_store_avx512.h.
#pragma once
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

// c[0 .. ncols) (+)= value(v) for the v-th vector of W columns (+ bias[0 .. ncols)); ncols <= 32.
// acc: add to C (bias already in it).
template <typename Value>
inline void store_row_panel(float* c, int ncols, const float* bias, bool acc, Value&& value) {
  for (int v = 0; v < kPanel / W; v++) {
    const int c0 = v * W;
    if (c0 >= ncols) break;
    const int n = ncols - c0 < W ? ncols - c0 : W;
    vf out = value(v);
    if (acc) out += n == W ? vload(c + c0) : vload_n(c + c0, n);
    else if (bias) out += n == W ? vload(bias + c0) : vload_n(bias + c0, n);
    if (n == W) vstore(c + c0, out);
    else vstore_n(c + c0, out, n);
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
