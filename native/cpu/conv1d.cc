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
constexpr int kSeqAhead = 1;

// The window of W channels of an [E][3] conv state (d_conv = 4, every Mamba checkpoint) is 3W
// contiguous floats, channel-major; the kernel wants one vector per tap. Both directions are two
// two-vector shuffles per vector (vpermt2ps on AVX-512) instead of 6W scalar moves through the
// stack, which were most of a decode step's conv time.
//   h[j][l] = st[3 l + j]
static inline void load_taps3(const float* st, vf (&h)[kMaxConv]) {
  const vf v0 = vload(st), v1 = vload(st + W), v2 = vload(st + 2 * W);
#pragma GCC unroll 3
  for (int j = 0; j < 3; j++) {
    vi ma, mb;
    for (int l = 0; l < W; l++) {
      const int i = 3 * l + j;
      ma[l] = i < 2 * W ? i : 0;      // from v0 | v1
      mb[l] = i < 2 * W ? l : i - W;  // keep, or take v2[i - 2W] (index W + i - 2W)
    }
    h[j] = __builtin_shuffle(__builtin_shuffle(v0, v1, ma), v2, mb);
  }
}
//   st[q W + l] = h[(q W + l) % 3][(q W + l) / 3]
static inline void store_taps3(float* st, const vf (&h)[kMaxConv]) {
#pragma GCC unroll 3
  for (int q = 0; q < 3; q++) {
    vi ma, mb;
    for (int l = 0; l < W; l++) {
      const int i = q * W + l, j = i % 3, c = i / 3;
      ma[l] = j < 2 ? j * W + c : 0;  // from h0 | h1
      mb[l] = j < 2 ? l : W + c;      // keep, or take h2[c]
    }
    vstore(st + q * W, __builtin_shuffle(__builtin_shuffle(h[0], h[1], ma), h[2], mb));
  }
}

// A group's K-1 previous inputs, one vector per tap (oldest first), from / to its [n][H] block of
// the [E, H] state. Full groups of the usual H = 3 use the shuffles above; others go through a
// plain float buffer (per-lane access to vector registers goes through the stack), and lanes
// past E stay zero.
static inline void load_hist(const float* st, int n, int H, vf (&hist)[kMaxConv]) {
  if (H == 3 && n == W) return load_taps3(st, hist);
  float tile[kMaxConv * W];
  if (n < W) std::memset(tile, 0, sizeof(tile));
  for (int l = 0; l < n; l++)
    for (int j = 0; j < H; j++) tile[j * W + l] = st[(size_t)l * H + j];
  for (int j = 0; j < H; j++) hist[j] = vload(tile + j * W);
}
static inline void store_hist(float* st, int n, int H, const vf (&hist)[kMaxConv]) {
  if (H == 3 && n == W) return store_taps3(st, hist);
  float tile[kMaxConv * W];
  for (int j = 0; j < H; j++) vstore(tile + j * W, hist[j]);
  for (int l = 0; l < n; l++)
    for (int j = 0; j < H; j++) st[(size_t)l * H + j] = tile[j * W + l];
}

// Groups walked together along time: a prompt's rows are 2E floats apart (a page or more), so
// walking one group down all T rows used one line per page visited (a TLB miss and a cold line
// per row and group); kBlock groups per row use kBlock adjacent lines (T=2048, E=1536, one layer,
// two threads: 6.8-7.5 -> 2.6-3.1 ms; same bits). Their taps, bias and history stay in L1.
constexpr int kBlock = 8;

void conv1d_slice(const Conv1dArgs& a, int begin, int end) {
  const int E = a.E, K = a.K, H = K - 1;
  for (int s = 0; s < a.nseq; s++) {
    const SeqSlice& sq = a.seqs[s];
    // Sequence-major: this slice's window of the state, [begin W, end W) x H floats, is one
    // contiguous run per sequence. Each sequence's state is a separate allocation that the rest
    // of the step has pushed out of cache, so each group prefetches its window kSeqAhead
    // sequences ahead (decode B=32: the state loads were most of the conv's time).
    const SeqSlice* ahead = s + kSeqAhead < a.nseq ? &a.seqs[s + kSeqAhead] : nullptr;
    for (int g0 = begin; g0 < end; g0 += kBlock) {
      const int nb = end - g0 < kBlock ? end - g0 : kBlock;
      vf w[kBlock][kMaxConv], bias[kBlock], hist[kBlock][kMaxConv];
      int lanes[kBlock];
      for (int b = 0; b < nb; b++) {
        const int e0 = (g0 + b) * W;
        const int n = E - e0 < W ? E - e0 : W;  // lanes in this group
        lanes[b] = n;
        for (int j = 0; j < K; j++) w[b][j] = vload_n(a.wT + (size_t)j * E + e0, n);
        bias[b] = a.bias ? vload_n(a.bias + e0, n) : vf{};
        if (ahead) {
          for (int o = 0; o < n * H; o += 64 / (int)sizeof(float))
            __builtin_prefetch(ahead->conv + (size_t)e0 * H + o, 1);
          __builtin_prefetch(a.xin + (size_t)ahead->row0 * a.ldx + e0);
          __builtin_prefetch(a.out + (size_t)ahead->row0 * a.ldo + e0, 1);
        }
        // hist[b][j] = input at time t-H+j, j < H (oldest first)
        load_hist(sq.conv + (size_t)e0 * H, n, H, hist[b]);
      }
      for (int t = 0; t < sq.T; t++) {
        const size_t row = (size_t)(sq.row0 + t);
        const float* xr = a.xin + row * a.ldx;
        float* orow = a.out + row * a.ldo;
        if (t + kAhead < sq.T)
          for (int b = 0; b < nb; b++) {
            __builtin_prefetch(xr + (size_t)kAhead * a.ldx + (g0 + b) * W);
            __builtin_prefetch(orow + (size_t)kAhead * a.ldo + (g0 + b) * W, 1);
          }
        for (int b = 0; b < nb; b++) {
          const int e0 = (g0 + b) * W, n = lanes[b];
          vf cur = n == W ? vload(xr + e0) : vload_n(xr + e0, n);
          vf acc = bias[b] + w[b][H] * cur;
          for (int j = 0; j < H; j++) acc += w[b][j] * hist[b][j];
          for (int j = 0; j + 1 < H; j++) hist[b][j] = hist[b][j + 1];
          if (H > 0) hist[b][H - 1] = cur;
          vf o = vsilu(acc);
          if (n == W) vstore(orow + e0, o);
          else vstore_n(orow + e0, o, n);
        }
      }
      for (int b = 0; b < nb; b++) store_hist(sq.conv + (size_t)(g0 + b) * W * H, lanes[b], H, hist[b]);
    }
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
