// quantize.cc — activations to unsigned bytes for the Q8 GEMM (kernels.h QuantRows), per row:
//   scale[m] = max_k |A[m, k]| / 127,  q[m, k] = round(A[m, k] / scale[m]) + 128  in [1, 255],
// padding k in [K, Kp) = 128 (zero). A zero row gets scale 1 (all 128).
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

void quantize_slice(const QuantizeArgs& a, int begin, int end) {
  for (int m = begin; m < end; m++) {
    const float* x = a.A + (size_t)m * a.lda;
    uint8_t* q = a.q + (size_t)m * a.Kp;
    vf mx = vf{};
    int k = 0;
    for (; k + W <= a.K; k += W) mx = vmax(mx, vabs(vload(x + k)));
    float amax = hmax(mx);
    for (; k < a.K; k++) amax = std::fabs(x[k]) > amax ? std::fabs(x[k]) : amax;
    const float scale = amax > 0.f ? amax / 127.f : 1.f;
    const float inv = 1.f / scale;
    a.scale[m] = scale;
    k = 0;
    for (; k + W <= a.K; k += W) {
      // round to nearest: |x| inv <= 127, so + 128.5 then truncate is in [1, 255.5)
      vf v = vload(x + k) * inv + 128.5f;
      vi iv = __builtin_convertvector(v, vi);
      for (int j = 0; j < W; j++) q[k + j] = (uint8_t)iv[j];
    }
    for (; k < a.K; k++) q[k] = (uint8_t)(int)(x[k] * inv + 128.5f);
    for (; k < a.Kp; k++) q[k] = 128;
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
