// rmsnorm.cu — Mamba's RMSNorm fused with the residual add that precedes it:
//   h[r] += delta[r]                       (the previous layer's mixer output; skipped when null)
//   y[r]  = h[r] / sqrt(mean(h[r]^2) + eps) * w   (skipped when y is null: a plain residual add)
// One block per row; the row is read once for the sum of squares and once for the output (L1/L2).
// And Falcon-Mamba's weightless norms of the dt_low, B and C slices of x_proj's output, in place:
// one warp per (row, slice), the slices being a few dozen to a few hundred floats.
// And Mamba-2's gated norm: one block per (row, group), v = y silu(z) written in place while its sum
// of squares is taken, then scaled by the group's 1 / rms and the weight.
#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// The sum of v over the block's kThreads threads, returned to every thread.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float red[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float tot = 0.f;
#pragma unroll
  for (int i = 0; i < kThreads / 32; i++) tot += red[i];
  return tot;
}

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
  const float tot = block_sum(ss);
  const float inv = 1.0f / sqrtf(tot / d + eps);
  float* yr = y + r * d;
  for (int i = threadIdx.x; i < d; i += kThreads) yr[i] = hr[i] * inv * w[i];
}

__global__ __launch_bounds__(kThreads) void gated_norm_kernel(float* __restrict__ y, int ldy,
                                                              const float* __restrict__ z, int ldz,
                                                              const float* __restrict__ w, int gw, float eps) {
  const size_t r = blockIdx.x;
  const int g0 = blockIdx.y * gw;
  float* yr = y + r * ldy + g0;
  const float* zr = z + r * ldz + g0;
  float ss = 0.f;
  for (int i = threadIdx.x; i < gw; i += kThreads) {  // each thread rescales below what it writes here
    const float v = yr[i] * silu_f(zr[i]);
    yr[i] = v;
    ss += v * v;
  }
  const float tot = block_sum(ss);
  const float inv = 1.0f / sqrtf(tot / gw + eps);
  for (int i = threadIdx.x; i < gw; i += kThreads) yr[i] = yr[i] * inv * w[g0 + i];
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

void gated_norm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int E, int G, float eps,
                cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_ASSERT(y && z && w && E > 0 && G > 0 && E % G == 0 && ldy >= E && ldz >= E && G <= 65535);
  SIMBA_LAUNCH(dim3(rows, G), kThreads, 0, st, gated_norm_kernel)(y, ldy, z, ldz, w, E / G, eps);
  check_launch("gated_norm");
}

void add_rmsnorm(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps, cudaStream_t st) {
  if (rows <= 0 || (!delta && !y)) return;
  SIMBA_LAUNCH(rows, kThreads, 0, st, add_rmsnorm_kernel)(h, delta, w, y, d, eps);
  check_launch("add_rmsnorm");
}

}  // namespace cuda
}  // namespace simba
