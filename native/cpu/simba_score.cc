// simba_score.cc — per-token Simba scores from what the selective scan leaves behind.
//
// Contribution of token t to the last output y_T of the layer, channel e (the Simba criterion):
//   c(t,e) = sum_n C(T,n) * exp(A(e,n) * sum_{k=t+1..T} dt(k,e)) * dt(t,e) * B(t,n) * x(t,e)
// One reverse pass per sequence computes it in O(T E N) time and O(E N) memory: carry
//   Q(e,n) = C(T,n) * prod_{k>t} exp(dt(k,e) A(e,n)),   Q = C(T,.) at t = T,
// then c(t,e) = dt(t,e) x(t,e) sum_n Q(e,n) B(t,n), and Q *= exp(dt(t,e) A(e,n)) before t-1.
// The 'local' criterion (a token's effect on its own output) needs no pass:
//   c(t,e) = dt(t,e) x(t,e) sum_n C(t,n) B(t,n).
// score(t) = max_e |c(t,e)| or sum_e |c(t,e)|; each thread reduces into its own per-row vectors,
// which the caller combines (no atomics, no horizontal reduction per token and group).
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

// Channel reduction without a horizontal step per token: each row keeps a vector of per-lane
// partial results (max or sum of |c| over the groups this slice handles); the caller reduces the
// lanes once per row. Lanes past E hold 0 (their x and dt load as 0), neutral for max and sum.
static inline void accumulate(float* slot, vf c, bool sum) {
  vf a = vabs(c), cur = vload(slot);
  vstore(slot, sum ? cur + a : vmax(cur, a));
}

template <int NF>
static void score_group(const ScoreArgs& a, int g, float* part) {
  const int E = a.E, N = NF > 0 ? NF : a.N;
  const int e0 = g * W;
  const int n = E - e0 < W ? E - e0 : W;
  const bool full = n == W;
  auto load = [&](const float* p) { return full ? vload(p) : vload_n(p, n); };  // no memcpy on full groups
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
        vf c = load(a.dt + row * a.lddt + e0) * load(a.x + row * a.ldx + e0) * cb;
        accumulate(part + row * W, c, a.reduce_sum);
      }
      continue;
    }
    for (int k = 0; k < N; k++) Q[k] = vset1(a.C[last * a.ldbc + k]);
    for (int t = sq.T - 1; t >= 0; t--) {
      const size_t row = (size_t)(sq.row0 + t);
      const float* Bp = a.B + row * a.ldbc;
      vf dt = load(a.dt + row * a.lddt + e0);
      // One pass over n, shaped like the scan's (so Q and A stay in registers): use Q at t, then
      // advance it to t-1.
      vf acc = {};
#pragma GCC unroll 16
      for (int k = 0; k < N; k++) {
        acc += Q[k] * Bp[k];
        Q[k] *= vexp(dt * A[k]);
      }
      vf c = dt * load(a.x + row * a.ldx + e0) * acc;
      accumulate(part + row * W, c, a.reduce_sum);
    }
  }
}

// Items are channel groups; every item of this slice accumulates into a.partial[row * W + lane],
// which the caller points at this thread's own zeroed buffer (see dispatch.cc).
void score_slice(const ScoreArgs& a, int begin, int end) {
  FlushDenormals ftz;
  for (int g = begin; g < end; g++) {
    if (a.N == 16) score_group<16>(a, g, a.partial);
    else score_group<0>(a, g, a.partial);
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
