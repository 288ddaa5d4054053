// gemm_store_avx512.h — the AVX-512 GEMM epilogue shared by gemm_ext.cc and gemm_amx.cc (both
// compiled with AVX-512): one row of a 32-column panel tile written to C.
#pragma once
#include <immintrin.h>

namespace simba {
namespace cpu {

// c[0 .. ncols) (+)= (v0, v1) (+ bias[0 .. ncols)); ncols <= 32. acc: add to C (bias already in it).
inline void store_row32(float* c, __m512 v0, __m512 v1, int ncols, const float* bias, bool acc) {
  const __mmask16 m0 = ncols >= 16 ? 0xffff : (__mmask16)((1u << ncols) - 1);
  const __mmask16 m1 = ncols >= 32 ? 0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
  if (acc) {
    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
  } else if (bias) {
    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias));
    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias + 16));
  }
  _mm512_mask_storeu_ps(c, m0, v0);
  _mm512_mask_storeu_ps(c + 16, m1, v1);
}

}  // namespace cpu
}  // namespace simba
