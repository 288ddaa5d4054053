// conv1d.cu — Mamba's causal depthwise conv1d (+bias, SiLU) per sequence, continuing from the conv
// state (the last K-1 inputs of the sequence, [E, K-1], oldest first):
//   out[t, e] = silu(bias[e] + w[e, K-1] in[t, e] + sum_{j<K-1} w[e, j] in[t-(K-1)+j, e])
// with in[-1], in[-2], ... taken from the state. Prefill and the one-token decode update are the
// same kernels (T = 1).
//   conv1d_kernel  one thread per (row, channel): fully parallel over time; reads its K inputs
//                  directly (coalesced across channels), the tap order as in native/cpu/conv1d.cc.
//   conv_state     one thread per (sequence, channel): the state becomes the last K-1 inputs,
//                  in place (launched after conv1d_kernel on the same stream, which reads the old one).
#include "../common/shape_limits.h"
#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kRowsPerBlock = 8;

__global__ __launch_bounds__(kThreads) void conv1d_kernel(const float* __restrict__ xin, int ldx,
                                                          float* __restrict__ out, int ldo,
                                                          const float* __restrict__ wT, const float* __restrict__ bias,
                                                          int E, int K, const SeqInfo* __restrict__ seqs,
                                                          StateRef conv) {
  const int e = blockIdx.x * kThreads + threadIdx.x;
  const SeqInfo sq = seqs[blockIdx.z];
  const int t0 = blockIdx.y * kRowsPerBlock;
  if (e >= E || t0 >= sq.T) return;
  const int H = K - 1;
  float w[kMaxConv];
#pragma unroll
  for (int j = 0; j < kMaxConv; j++) w[j] = j < K ? wT[(size_t)j * E + e] : 0.f;
  const float b = bias ? bias[e] : 0.f;
  const float* cs = conv.at(blockIdx.z) + (size_t)e * H;
  for (int r = 0; r < kRowsPerBlock; r++) {
    const int t = t0 + r;
    if (t >= sq.T) break;
    const size_t row = (size_t)sq.row0 + t;
    float wl = 0.f;  // w[H] without a run-time register index
#pragma unroll
    for (int j = 0; j < kMaxConv; j++)
      if (j == H) wl = w[j];
    float acc = b + wl * xin[row * ldx + e];
#pragma unroll
    for (int j = 0; j < kMaxConv - 1; j++) {
      if (j < H) {
        const int tt = t - H + j;  // input time of tap j
        const float v = tt >= 0 ? xin[((size_t)sq.row0 + tt) * ldx + e] : cs[H + tt];
        acc += w[j] * v;
      }
    }
    out[row * ldo + e] = silu_f(acc);
  }
}

__global__ __launch_bounds__(kThreads) void conv_state_kernel(const float* __restrict__ xin, int ldx, int E, int K,
                                                              const SeqInfo* __restrict__ seqs, StateRef conv) {
  const int e = blockIdx.x * kThreads + threadIdx.x;
  if (e >= E) return;
  const SeqInfo sq = seqs[blockIdx.y];
  const int H = K - 1;
  float* cs = conv.at(blockIdx.y) + (size_t)e * H;
  // new[j] = input at time T - H + j. From the old state (time T-H+j < 0) it is old[T + j], an index
  // above j: ascending j reads it before it is overwritten.
  for (int j = 0; j < H; j++) {
    const int tt = sq.T - H + j;
    cs[j] = tt >= 0 ? xin[((size_t)sq.row0 + tt) * ldx + e] : cs[sq.T + j];
  }
}

}  // namespace

void conv1d(const float* xin, int ldx, float* out, int ldo, const float* wT, const float* bias, int E, int K,
            const SeqInfo* seqs, int nseq, int maxT, StateRef conv, cudaStream_t st) {
  if (nseq <= 0 || maxT <= 0) return;
  SIMBA_ASSERT(xin && out && wT && seqs && E > 0 && K >= 1 && K <= kMaxConv && ldx >= E && ldo >= E &&
               (K == 1 || conv.base));
  const dim3 grid(ceil_div(E, kThreads), ceil_div(maxT, kRowsPerBlock), nseq);
  SIMBA_LAUNCH(grid, kThreads, 0, st, conv1d_kernel)(xin, ldx, out, ldo, wT, bias, E, K, seqs, conv);
  check_launch("conv1d");
  if (K > 1) {
    SIMBA_LAUNCH(dim3(ceil_div(E, kThreads), nseq), kThreads, 0, st, conv_state_kernel)(xin, ldx, E, K, seqs, conv);
    check_launch("conv_state");
  }
}

}  // namespace cuda
}  // namespace simba
