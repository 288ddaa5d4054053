// simba_score.cc — per-token Simba scores from what the selective scan leaves behind.
//
// Contribution of token t to the last output y_T of the layer, channel e (DESIGN.md section 5):
//   c(t,e) = sum_n C(T,n) * exp(A(e,n) * sum_{k=t+1..T} dt(k,e)) * dt(t,e) * B(t,n) * x(t,e)
// One reverse pass per sequence computes it in O(T E N) time and O(E N) memory: carry
//   Q(e,n) = C(T,n) * prod_{k>t} exp(dt(k,e) A(e,n)),   Q = C(T,.) at t = T,
// then c(t,e) = dt(t,e) x(t,e) sum_n Q(e,n) B(t,n), and Q *= exp(dt(t,e) A(e,n)) before t-1.
// The 'local' criterion (a token's effect on its own output) needs no pass:
//   c(t,e) = dt(t,e) x(t,e) sum_n C(t,n) B(t,n).
// score(t) = max_e |c(t,e)| or sum_e |c(t,e)|; each channel group writes the reduction over its
// own lanes to a per-slot row that the caller combines (no atomics).
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int kMaxState = 256;

static inline float reduce_lanes(vf c, int n, bool sum) {
  c = vabs(c);
  if (n < W)
    for (int l = n; l < W; l++) c[l] = 0.f;  // |c| >= 0, so zeroed lanes are neutral for max too
  return sum ? hsum(c) : hmax(c);
}

static inline void accumulate(float* slot, float v, bool sum) {
  if (sum) *slot += v; else *slot = v > *slot ? v : *slot;
}

template <int NF>
static void score_group(const ScoreArgs& a, int g, float* part) {
  const int E = a.E, N = NF > 0 ? NF : a.N;
  const int e0 = g * W;
  const int n = E - e0 < W ? E - e0 : W;
  vf A[NF > 0 ? NF : kMaxState], Q[NF > 0 ? NF : kMaxState];
  for (int k = 0; k < N; k++) A[k] = vload_n(a.AT + (size_t)k * E + e0, n);
  for (int si = 0; si < a.nseq; si++) {
    const SeqSlice& sq = a.seqs[si];
    if (sq.T == 0) continue;
    const size_t last = (size_t)(sq.row0 + sq.T - 1);
    if (a.local) {
      for (int t = 0; t < sq.T; t++) {
        const size_t row = (size_t)(sq.row0 + t);
        float cb = 0.f;
        for (int k = 0; k < N; k++) cb += a.C[row * a.ldbc + k] * a.B[row * a.ldbc + k];
        vf c = vload_n(a.dt + row * a.lddt + e0, n) * vload_n(a.x + row * a.ldx + e0, n) * cb;
        accumulate(part + row, reduce_lanes(c, n, a.reduce_sum), a.reduce_sum);
      }
      continue;
    }
    for (int k = 0; k < N; k++) Q[k] = vset1(a.C[last * a.ldbc + k]);
    for (int t = sq.T - 1; t >= 0; t--) {
      const size_t row = (size_t)(sq.row0 + t);
      const float* Bp = a.B + row * a.ldbc;
      vf dt = vload_n(a.dt + row * a.lddt + e0, n);
      vf acc = {};
#pragma GCC unroll 16
      for (int k = 0; k < N; k++) acc += Q[k] * Bp[k];
      vf c = dt * vload_n(a.x + row * a.ldx + e0, n) * acc;
      accumulate(part + row, reduce_lanes(c, n, a.reduce_sum), a.reduce_sum);
#pragma GCC unroll 16
      for (int k = 0; k < N; k++) Q[k] *= vexp(dt * A[k]);
    }
  }
}

// Items are channel groups; every item of this slice accumulates into a.partial[row], which the
// caller points at this thread's own zeroed row (see parallel.cc).
void score_slice(const ScoreArgs& a, int begin, int end) {
  for (int g = begin; g < end; g++) {
    if (a.N == 16) score_group<16>(a, g, a.partial); else score_group<0>(a, g, a.partial);
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
