// rmsnorm.cu — Mamba's RMSNorm fused with the residual add that precedes it:
//   h[r] += delta[r]                       (the previous layer's mixer output; skipped when null)
//   y[r]  = h[r] / sqrt(mean(h[r]^2) + eps) * w   (skipped when y is null: a plain residual add)
// One block per row; the row is read once for the sum of squares and once for the output (L1/L2).
// And Falcon-Mamba's weightless norms of the dt_low, B and C slices of x_proj's output, in place:
// one warp per (row, slice), the slices being a few dozen to a few hundred floats.
#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__global__ __launch_bounds__(kThreads) void add_rmsnorm_kernel(float* __restrict__ h, const float* __restrict__ delta,
                                                               const float* __restrict__ w, float* __restrict__ y,
                                                               int d, float eps) {
  const size_t r = blockIdx.x;
  float* hr = h + r * d;
  float ss = 0.f;
  for (int i = threadIdx.x; i < d; i += kThreads) {
    float v = hr[i];
    if (delta) {
      v += delta[r * d + i];
      hr[i] = v;
    }
    ss += v * v;
  }
  if (!y) return;  // uniform across the block: no barrier is skipped by some threads only
  __shared__ float red[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  float tot = 0.f;
#pragma unroll
  for (int i = 0; i < kThreads / 32; i++) tot += red[i];
  const float inv = 1.0f / sqrtf(tot / d + eps);
  float* yr = y + r * d;
  for (int i = threadIdx.x; i < d; i += kThreads) yr[i] = hr[i] * inv * w[i];
}

// Block b = 3 r + p normalizes slice p of row r of dbc [rows, R+2N]: [0, R), [R, R+N) or [R+N, R+2N).
__global__ __launch_bounds__(32) void norm_dbc_kernel(float* __restrict__ dbc, int R, int N, float eps) {
  const int r = blockIdx.x / 3, p = blockIdx.x % 3;
  const int start = p == 0 ? 0 : p == 1 ? R : R + N, width = p == 0 ? R : N;
  float* v = dbc + (size_t)r * (R + 2 * N) + start;
  float ss = 0.f;
  for (int i = threadIdx.x; i < width; i += 32) ss += v[i] * v[i];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float inv = 1.0f / sqrtf(ss / width + eps);
  for (int i = threadIdx.x; i < width; i += 32) v[i] *= inv;
}

}  // namespace

void norm_dbc(float* dbc, int rows, int R, int N, float eps, cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_LAUNCH(rows * 3, 32, 0, st, norm_dbc_kernel)(dbc, R, N, eps);
  check_launch("norm_dbc");
}

void add_rmsnorm(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps, cudaStream_t st) {
  if (rows <= 0 || (!delta && !y)) return;
  SIMBA_LAUNCH(rows, kThreads, 0, st, add_rmsnorm_kernel)(h, delta, w, y, d, eps);
  check_launch("add_rmsnorm");
}

}  // namespace cuda
}  // namespace simba
