// rmsnorm.cc — y = x / sqrt(mean(x^2) + eps) * w, one row per work item (Mamba's RMSNorm).
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

void rmsnorm_slice(const RmsNormArgs& a, int begin, int end) {
  const int d = a.d;
  for (int t = begin; t < end; t++) {
    const float* x = a.x + (size_t)t * a.ldx;
    float* y = a.y + (size_t)t * a.ldy;
    vf ss = {};
    int i = 0;
    for (; i + W <= d; i += W) {
      vf v = vload(x + i);
      ss += v * v;
    }
    float s = hsum(ss);
    for (; i < d; i++) s += x[i] * x[i];
    const float inv = 1.0f / std::sqrt(s / d + a.eps);
    i = 0;
    for (; i + W <= d; i += W) vstore(y + i, vload(x + i) * inv * vload(a.w + i));
    for (; i < d; i++) y[i] = x[i] * inv * a.w[i];
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
