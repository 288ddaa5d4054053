// quantize.cc — activations to bytes for the integer GEMMs (kernels.h QuantRows), per row:
//   scale[m] = max_k |A[m, k]| / 127 (a zero row gets scale 1).
//   Q8 weights (quantize_slice): q[m, k] = round(A[m, k] / scale[m]) + 128 (half up) in [1, 255], unsigned;
//     padding k in [K, Kp) = 128 (zero).
//   Q4 weights (quantize_q4_slice): q[m, k] = round(A[m, k] / scale[m]) in [-127, 127], signed;
//     padding 0; and per block of kQ4Block k, bcorr = -8 times the block's sum of q.
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

namespace {

// max_k |x[k]| / 127, or 1 for a zero row.
float row_scale(const float* x, int K) {
  vf mx = vf{};
  int k = 0;
  for (; k + W <= K; k += W) mx = vmax(mx, vabs(vload(x + k)));
  float amax = hmax(mx);
  for (; k < K; k++) amax = std::fabs(x[k]) > amax ? std::fabs(x[k]) : amax;
  return amax > 0.f ? amax / 127.f : 1.f;
}

// q[k] = round(x[k] inv) + off for k < K, |x inv| <= 127: x inv + 128.5 truncated (in [1, 255.5):
// round half up), then the offset.
template <int OFF, typename Byte>
void round_row(const float* x, int K, float inv, Byte* q) {
  int k = 0;
  for (; k + W <= K; k += W) {
    const vi iv = __builtin_convertvector(vload(x + k) * inv + 128.5f, vi);
    for (int j = 0; j < W; j++) q[k + j] = (Byte)(iv[j] - 128 + OFF);
  }
  for (; k < K; k++) q[k] = (Byte)((int)(x[k] * inv + 128.5f) - 128 + OFF);
}

}  // namespace

void quantize_slice(const QuantizeArgs& a, int begin, int end) {
  for (int m = begin; m < end; m++) {
    const float* x = a.A + (size_t)m * a.lda;
    uint8_t* q = a.q + (size_t)m * a.Kp;
    const float scale = row_scale(x, a.K);
    a.scale[m] = scale;
    round_row<128>(x, a.K, 1.f / scale, q);
    for (int k = a.K; k < a.Kp; k++) q[k] = 128;
  }
}

void quantize_q4_slice(const QuantizeArgs& a, int begin, int end) {
  const int nb = a.Kp / kQ4Block;
  for (int m = begin; m < end; m++) {
    const float* x = a.A + (size_t)m * a.lda;
    int8_t* q = reinterpret_cast<int8_t*>(a.q + (size_t)m * a.Kp);
    const float scale = row_scale(x, a.K);
    a.scale[m] = scale;
    round_row<0>(x, a.K, 1.f / scale, q);
    for (int k = a.K; k < a.Kp; k++) q[k] = 0;
    int32_t* corr = a.bcorr + (size_t)m * nb;
    for (int b = 0; b < nb; b++) {
      int32_t s = 0;
      for (int k = 0; k < kQ4Block; k++) s += q[b * kQ4Block + k];
      corr[b] = -8 * s;
    }
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
