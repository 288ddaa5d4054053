// rmsnorm.cc — y = x / sqrt(mean(x^2) + eps) * w, one row per work item (Mamba's RMSNorm), and
// Mamba-2's gated variant: v = y * silu(z), normed per group of E / G channels.
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

void gated_norm_slice(const GatedNormArgs& a, int begin, int end) {
  const int gw = a.E / a.G;
  for (int t = begin; t < end; t++) {
    float* y = a.y + (size_t)t * a.ldy;
    const float* z = a.z + (size_t)t * a.ldz;
    for (int g0 = 0; g0 < a.E; g0 += gw) {
      // v = y silu(z) in place, its sum of squares in double (a group reaches 8192 channels)
      double ss = 0;
      int i = g0;
      for (; i + W <= g0 + gw; i += W) {
        const vf v = vload(y + i) * vsilu(vload(z + i));
        vstore(y + i, v);
        ss += hsum(v * v);
      }
      if (i < g0 + gw) {
        const int n = g0 + gw - i;
        const vf v = vload_n(y + i, n) * vsilu(vload_n(z + i, n));
        vstore_n(y + i, v, n);
        ss += hsum(v * v);
      }
      const float inv = (float)(1.0 / std::sqrt(ss / gw + a.eps));
      for (i = g0; i + W <= g0 + gw; i += W) vstore(y + i, vload(y + i) * inv * vload(a.w + i));
      if (i < g0 + gw) {
        const int n = g0 + gw - i;
        vstore_n(y + i, vload_n(y + i, n) * inv * vload_n(a.w + i, n), n);
      }
    }
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
