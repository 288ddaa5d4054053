// simba_score_ssd.cc — Simba's token scores for Mamba-2 (kernels.h SsdScoreArgs): the Mamba-1 score
// with the scalar decay of a head in place of the per-channel one. For row t of a sequence ending at T:
//   c[t,h,p] = exp(A_h sum_{k>t} dt[k,h]) dt[t,h] x[t,h,p] (C[T,g(h)] . B[t,g(h)])     (simba)
//   c[t,h,p] = dt[t,h] x[t,h,p] (C[t,g(h)] . B[t,g(h)])                                 (local)
// Within a head every factor but x is the same for all p, so max_p |c| = |coef| max_p |x| and
// sum_p |c| = |coef| sum_p |x|: O(T (G N + H P)) per layer, never O(T^2). One row per work item.
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

void ssd_score_slice(const SsdScoreArgs& a, int begin, int end) {
  const int P = a.P, N = a.N, per_group = a.H / a.G;
  for (int r = begin; r < end; r++) {
    const float* x = a.x + (size_t)r * a.ldx;
    const float* Bt = a.B + (size_t)r * a.ldbc;
    const float* Cr = a.C + (size_t)(a.local ? r : a.last[r]) * a.ldbc;
    float score = 0.f, cb = 0.f;
    for (int h = 0; h < a.H; h++) {
      const int g = h / per_group;
      if (h % per_group == 0) {  // C . B of this head's group
        vf acc = {};
        for (int k = 0; k < N; k += W) {
          const int n = N - k < W ? N - k : W;
          acc += vload_n(Cr + (size_t)g * N + k, n) * vload_n(Bt + (size_t)g * N + k, n);
        }
        cb = hsum(acc);
      }
      float coef = a.dt[(size_t)r * a.lddt + h] * cb;
      if (!a.local) coef *= std::exp(a.decay[(size_t)r * a.H + h]);
      vf red = {};
      for (int p = 0; p < P; p += W) {
        const int n = P - p < W ? P - p : W;
        const vf v = vabs(vload_n(x + (size_t)h * P + p, n));
        red = a.reduce_sum ? red + v : vmax(red, v);
      }
      const float c = std::fabs(coef) * (a.reduce_sum ? hsum(red) : hmax(red));
      score = a.reduce_sum ? score + c : (c > score ? c : score);
    }
    a.score[r] = score;
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
