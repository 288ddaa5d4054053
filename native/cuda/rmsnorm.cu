// rmsnorm.cu — Mamba's RMSNorm fused with the residual add that precedes it:
//   h[r] += delta[r]                       (the previous layer's mixer output; skipped when null)
//   y[r]  = h[r] / sqrt(mean(h[r]^2) + eps) * w   (skipped when y is null: a plain residual add)
// One block per row; the row is read once for the sum of squares and once for the output (L1/L2).
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

}  // namespace

void add_rmsnorm(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps, cudaStream_t st) {
  if (rows <= 0 || (!delta && !y)) return;
  SIMBA_LAUNCH(rows, kThreads, 0, st, add_rmsnorm_kernel)(h, delta, w, y, d, eps);
  check_launch("add_rmsnorm");
}

}  // namespace cuda
}  // namespace simba
