// conv1d.cc — Mamba's causal depthwise conv1d (+bias, SiLU) over a sequence, continuing from the
// per-sequence conv state (the last K-1 inputs). Prefill and the one-token decode update are the
// same code: a decode step is a sequence of length 1.
//   out[t, e] = silu(bias[e] + sum_{j<K} w[e, j] * in[t - (K-1) + j, e])
// where in[-1], in[-2], ... come from the state. Channels are split into groups of W lanes; a
// group keeps its K-1 previous inputs in registers while it walks the sequence. Consecutive rows
// are on different pages (no hardware prefetch across them), so the walk prefetches kAhead rows
// ahead.
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int kAhead = 8;

void conv1d_slice(const Conv1dArgs& a, int begin, int end) {
  const int E = a.E, K = a.K, H = K - 1;
  for (int g = begin; g < end; g++) {
    const int e0 = g * W;
    const int n = E - e0 < W ? E - e0 : W;  // lanes in this group
    vf w[kMaxConv], bias;
    for (int j = 0; j < K; j++) w[j] = vload_n(a.wT + (size_t)j * E + e0, n);
    bias = a.bias ? vload_n(a.bias + e0, n) : vf{};
    for (int s = 0; s < a.nseq; s++) {
      const SeqSlice& sq = a.seqs[s];
      // hist[j] = input at time t-H+j, j < H (oldest first), gathered from the [E, H] state.
      // The group's window is a contiguous [n][H] block of the [E, H] state: transpose it through a
      // plain float buffer (per-lane access to vector registers goes through the stack).
      vf hist[kMaxConv];
      float tile[kMaxConv * W];
      if (n < W) std::memset(tile, 0, sizeof(tile));  // lanes past E stay zero
      for (int l = 0; l < n; l++)
        for (int j = 0; j < H; j++) tile[j * W + l] = sq.conv[(size_t)(e0 + l) * H + j];
      for (int j = 0; j < H; j++) hist[j] = vload(tile + j * W);
      for (int t = 0; t < sq.T; t++) {
        const size_t row = (size_t)(sq.row0 + t);
        if (t + kAhead < sq.T) {
          __builtin_prefetch(a.xin + (row + kAhead) * a.ldx + e0);
          __builtin_prefetch(a.out + (row + kAhead) * a.ldo + e0, 1);
        }
        vf cur = n == W ? vload(a.xin + row * a.ldx + e0) : vload_n(a.xin + row * a.ldx + e0, n);
        vf acc = bias + w[H] * cur;
        for (int j = 0; j < H; j++) acc += w[j] * hist[j];
        for (int j = 0; j + 1 < H; j++) hist[j] = hist[j + 1];
        if (H > 0) hist[H - 1] = cur;
        vf o = vsilu(acc);
        if (n == W) vstore(a.out + row * a.ldo + e0, o);
        else vstore_n(a.out + row * a.ldo + e0, o, n);
      }
      for (int j = 0; j < H; j++) vstore(tile + j * W, hist[j]);
      for (int l = 0; l < n; l++)
        for (int j = 0; j < H; j++) sq.conv[(size_t)(e0 + l) * H + j] = tile[j * W + l];
    }
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
