// limits_ext.cc — the compute-peak loops of the AVX-512 extension kernels (gemm_ext.cc), timed by
// limits.cc like fma_loop: chain-free vpdpbusd (AVX512-VNNI) and vdpbf16ps (AVX512-BF16) in
// registers. Their throughput is not a fixed multiple of the FMA's: a CPU may run the 512-bit dot
// products on one port where it has two for FMAs (Ice Lake: vpdpbusd 1 per cycle, 64 multiply-adds,
// against 2 FMAs of 16), so each is measured. Compiled with the extension flags (simba_cpu_avx512_ext)
// and called only when the CPU has them.
#include <immintrin.h>

#include "kernels.h"

namespace simba {
namespace cpu {
namespace avx512_ext {

constexpr int kChains = 16;  // independent accumulators: latency 4-5 cycles x up to 2 ports

float vnni_loop(long iters) {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = _mm512_set1_epi32(i);
  __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01fe02fd);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    __asm__ volatile("" : "+v"(a));  // keeps the operands live in registers, the loop un-hoisted
  }
  __m512i s = acc[0];
  for (int i = 1; i < kChains; i++) s = _mm512_add_epi32(s, acc[i]);
  return (float)_mm512_reduce_add_epi32(s);
}
// 16 lanes x 4 byte products per instruction, a multiply-add = 2 operations
int vnni_flops_per_iter() { return kChains * 16 * 4 * 2; }

float bf16dp_loop(long iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = _mm512_set1_ps(1e-3f * i);
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}
// 16 lanes x 2 bf16 products per instruction
int bf16dp_flops_per_iter() { return kChains * 16 * 2 * 2; }

}  // namespace avx512_ext
}  // namespace cpu
}  // namespace simba
