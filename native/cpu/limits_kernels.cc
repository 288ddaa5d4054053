// limits_kernels.cc — the two loops that measure this machine's physical bounds (limits.cc times
// them): a chain-free FMA loop (the compute peak) and a streaming read (memory read bandwidth).
// Compiled once per instruction set, so the peak is the one of the kernels that actually run.
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

// iters x kFmaChains independent FMAs of W lanes: acc[i] = acc[i] * m + a. 16 chains cover the
// FMA latency (4 cycles) times the FMA ports (2) with room to spare. Returns a value depending on
// every accumulator so nothing is optimised away. Flops: 2 * W * kFmaChains * iters.
constexpr int kFmaChains = 16;
float fma_loop(long iters) {
  vf acc[kFmaChains];
  for (int i = 0; i < kFmaChains; i++) acc[i] = vset1(1.f + 1e-3f * i);
  const vf m = vset1(0.999999f), a = vset1(1e-7f);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < kFmaChains; i++) acc[i] = acc[i] * m + a;
  }
  vf s = acc[0];
  for (int i = 1; i < kFmaChains; i++) s += acc[i];
  return hsum(s);
}
int fma_flops_per_iter() { return 2 * W * kFmaChains; }

// Sum of x[0 .. n) (n a multiple of 8 W), read once front to back with 8 independent vector sums:
// the loads are all there is, so its time is the read bandwidth.
float read_sum(const float* x, size_t n) {
  vf s[8] = {};
  for (size_t i = 0; i + 8 * W <= n; i += 8 * W) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) s[j] += vload(x + i + (size_t)j * W);
  }
  for (int j = 1; j < 8; j++) s[0] += s[j];
  return hsum(s[0]);
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
