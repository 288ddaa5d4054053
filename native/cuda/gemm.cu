// gemm.cu — C[M, N] = A[M, K] W^T (+ bias) for the linear layers, W [N, K] row-major on the device.
//
// Three kernels, chosen by shape and weight type:
//   gemv_kernel   M <= 8 (decode, head on a few positions): one warp per output feature n streams
//                 W's row n once (16-byte loads when the row is aligned) and keeps the M dot products
//                 in registers; memory-bound on W, as it should be.
//   wmma_bf16     bf16 weights, M > 8: 128x128x32 block tiles, 8 warps each 64x32 (4x2 fragments
//                 of 16x16x16 bf16 tensor-core MMAs, f32 accumulators). A is rounded to bf16 on its
//                 way into shared memory. The next k-tile is prefetched into registers while the
//                 current one is multiplied.
//   sgemm_f32     f32 weights, M > 8: exact f32 FMAs (no TF32: the f32 path must stay within 1e-4
//                 of the CPU), 128x128x8 tiles, 8x8 outputs per thread, register prefetch.
// cuBLAS is deliberately not used: it is not installed on the build machines (nvcc only), and the
// library then needs nothing but the driver at run time.
#ifndef SIMBA_EMU
#include <mma.h>
#endif

#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// ---------------------------------------------------------------- skinny GEMV (M <= 8)

constexpr int kGemvWarps = 8;
constexpr int kGemvMaxM = 8;

// VEC: rows of W start 16-byte aligned and K is a multiple of the vector (8 bf16 or 4 f32).
template <bool BF16, bool VEC>
__global__ __launch_bounds__(kGemvWarps * 32) void gemv_kernel(const float* __restrict__ A, int lda,
                                                               const void* __restrict__ Wv, int K,
                                                               const float* __restrict__ bias, float* __restrict__ C,
                                                               int ldc, int M, int N) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  if (n >= N) return;  // whole warp leaves together; no block-level sync in this kernel
  float acc[kGemvMaxM];
#pragma unroll
  for (int m = 0; m < kGemvMaxM; m++) acc[m] = 0.f;
  if (VEC) {
    constexpr int V = BF16 ? 8 : 4;  // elements per 16-byte load
    const uint4* wr = reinterpret_cast<const uint4*>(static_cast<const char*>(Wv) + (size_t)n * K * (BF16 ? 2 : 4));
    for (int c = lane; c < K / V; c += 32) {
      const uint4 q = __ldg(wr + c);
      float w[V];
      if (BF16) {
        const uint32_t u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
          w[2 * i] = __uint_as_float(u[i] << 16);
          w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
        }
      } else {
        w[0] = __uint_as_float(q.x);
        w[1] = __uint_as_float(q.y);
        w[2] = __uint_as_float(q.z);
        w[3] = __uint_as_float(q.w);
      }
      const int k0 = c * V;
#pragma unroll
      for (int m = 0; m < kGemvMaxM; m++) {
        if (m < M) {
          const float* a = A + (size_t)m * lda + k0;
#pragma unroll
          for (int i = 0; i < V; i++) acc[m] += a[i] * w[i];
        }
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      const float w = BF16 ? bf16_bits_to_f32(static_cast<const uint16_t*>(Wv)[(size_t)n * K + k])
                           : static_cast<const float*>(Wv)[(size_t)n * K + k];
#pragma unroll
      for (int m = 0; m < kGemvMaxM; m++)
        if (m < M) acc[m] += A[(size_t)m * lda + k] * w;
    }
  }
#pragma unroll
  for (int m = 0; m < kGemvMaxM; m++) {
    float v = acc[m];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    acc[m] = v;
  }
  if (lane == 0) {
    const float b = bias ? bias[n] : 0.f;
#pragma unroll
    for (int m = 0; m < kGemvMaxM; m++)
      if (m < M) C[(size_t)m * ldc + n] = acc[m] + b;
  }
}

// ---------------------------------------------------------------- f32 tiles

constexpr int kSB = 128;  // block tile (M and N)
constexpr int kSK = 8;    // k per tile

__global__ __launch_bounds__(256) void sgemm_f32(const float* __restrict__ A, int lda, const float* __restrict__ W,
                                                 int K, const float* __restrict__ bias, float* __restrict__ C, int ldc,
                                                 int M, int N) {
  __shared__ __align__(16) float As[kSK][kSB];
  __shared__ __align__(16) float Ws[kSK][kSB];
  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * kSB, n0 = blockIdx.x * kSB;
  // Loader: 128 rows x 8 k per tile for A and W; thread loads 4 consecutive k of one row.
  const int lrow = tid >> 1, lk = (tid & 1) * 4;
  const bool arow = m0 + lrow < M, wrow = n0 + lrow < N;
  const float* Ap = A + (size_t)(m0 + lrow) * lda;
  const float* Wp = W + (size_t)(n0 + lrow) * K;
  float ra[4], rw[4];
  auto load = [&](int k0) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int k = k0 + lk + q;
      ra[q] = arow && k < K ? Ap[k] : 0.f;
      rw[q] = wrow && k < K ? Wp[k] : 0.f;
    }
  };
  // Compute: thread (ty, tx) owns rows {ty*4 + i, 64 + ty*4 + i} and cols {tx*4 + j, 64 + tx*4 + j}.
  const int ty = tid >> 4, tx = tid & 15;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.f;
  load(0);
  for (int k0 = 0; k0 < K; k0 += kSK) {
    __syncthreads();  // everyone is done reading the previous tile
#pragma unroll
    for (int q = 0; q < 4; q++) {
      As[lk + q][lrow] = ra[q];
      Ws[lk + q][lrow] = rw[q];
    }
    __syncthreads();
    if (k0 + kSK < K) load(k0 + kSK);  // in flight while this tile is multiplied
#pragma unroll
    for (int kk = 0; kk < kSK; kk++) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[kk][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Ws[kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Ws[kk][64 + tx * 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] += a[i] * b[j];
    }
  }
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const int n = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
      if (n < N) C[(size_t)m * ldc + n] = acc[i][j] + (bias ? bias[n] : 0.f);
    }
  }
}

// ---------------------------------------------------------------- bf16 tensor-core tiles

constexpr int kHB = 128;       // block tile (M and N)
constexpr int kHK = 32;        // k per tile
constexpr int kHLd = kHK + 8;  // smem row stride in bf16 (80 bytes: ldmatrix rows hit distinct banks)

// VECA: A rows 16-byte aligned (lda % 4 == 0, A aligned); VECW: K % 8 == 0.
template <bool VECA, bool VECW>
__global__ __launch_bounds__(256) void wmma_bf16(const float* __restrict__ A, int lda, const uint16_t* __restrict__ W,
                                                 int K, const float* __restrict__ bias, float* __restrict__ C, int ldc,
                                                 int M, int N) {
  using namespace nvcuda;
  __shared__ __align__(128) __nv_bfloat16 As[kHB][kHLd];
  __shared__ __align__(128) __nv_bfloat16 Ws[kHB][kHLd];
  __shared__ __align__(128) float Cs[8][16][20];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int m0 = blockIdx.y * kHB, n0 = blockIdx.x * kHB;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*64 .. +64, cols wn*32 .. +32
  // Loader: thread loads 16 consecutive k of one row of A (f32) and of W (bf16).
  const int lrow = tid >> 1, lk = (tid & 1) * 16;
  const bool arow = m0 + lrow < M, wrow = n0 + lrow < N;
  const float* Ap = A + (size_t)(m0 + lrow) * lda;
  const uint16_t* Wp = W + (size_t)(n0 + lrow) * K;
  float ra[16];
  uint32_t rw[8];  // 16 bf16, pairs packed low-first
  auto load = [&](int k0) {
    const int kb = k0 + lk;
    if (VECA && arow && kb + 16 <= K) {
#pragma unroll
      for (int q = 0; q < 4; q++) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(Ap + kb) + q);
        ra[4 * q] = v.x;
        ra[4 * q + 1] = v.y;
        ra[4 * q + 2] = v.z;
        ra[4 * q + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int q = 0; q < 16; q++) ra[q] = arow && kb + q < K ? Ap[kb + q] : 0.f;
    }
    if (VECW && wrow && kb + 16 <= K) {
      const uint4 v0 = __ldg(reinterpret_cast<const uint4*>(Wp + kb));
      const uint4 v1 = __ldg(reinterpret_cast<const uint4*>(Wp + kb) + 1);
      rw[0] = v0.x;
      rw[1] = v0.y;
      rw[2] = v0.z;
      rw[3] = v0.w;
      rw[4] = v1.x;
      rw[5] = v1.y;
      rw[6] = v1.z;
      rw[7] = v1.w;
    } else {
#pragma unroll
      for (int q = 0; q < 8; q++) {
        const uint32_t lo = wrow && kb + 2 * q < K ? Wp[kb + 2 * q] : 0u;
        const uint32_t hi = wrow && kb + 2 * q + 1 < K ? Wp[kb + 2 * q + 1] : 0u;
        rw[q] = lo | (hi << 16);
      }
    }
  };
  auto store = [&]() {
    uint32_t pa[8];
#pragma unroll
    for (int q = 0; q < 8; q++) {
      __nv_bfloat162 h = __floats2bfloat162_rn(ra[2 * q], ra[2 * q + 1]);  // .x = low half = first
      pa[q] = *reinterpret_cast<uint32_t*>(&h);
    }
    uint4* da = reinterpret_cast<uint4*>(&As[lrow][lk]);
    da[0] = make_uint4(pa[0], pa[1], pa[2], pa[3]);
    da[1] = make_uint4(pa[4], pa[5], pa[6], pa[7]);
    uint4* dw = reinterpret_cast<uint4*>(&Ws[lrow][lk]);
    dw[0] = make_uint4(rw[0], rw[1], rw[2], rw[3]);
    dw[1] = make_uint4(rw[4], rw[5], rw[6], rw[7]);
  };
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.f);
  load(0);
  for (int k0 = 0; k0 < K; k0 += kHK) {
    __syncthreads();
    store();
    __syncthreads();
    if (k0 + kHK < K) load(k0 + kHK);
#pragma unroll
    for (int kk = 0; kk < kHK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> af[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bf[2];
#pragma unroll
      for (int i = 0; i < 4; i++) wmma::load_matrix_sync(af[i], &As[wm * 64 + i * 16][kk], kHLd);
        // B = W^T (K x N): element (k, n) is Ws[n][k], i.e. column-major with leading dimension kHLd.
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::load_matrix_sync(bf[j], &Ws[wn * 32 + j * 16][kk], kHLd);
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
    }
  }
  // Epilogue through a per-warp 16x16 staging tile (bounds and bias per element).
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) {
      wmma::store_matrix_sync(&Cs[warp][0][0], acc[i][j], 20, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = e >> 4, c = e & 15;
        const int m = m0 + wm * 64 + i * 16 + r, n = n0 + wn * 32 + j * 16 + c;
        if (m < M && n < N) C[(size_t)m * ldc + n] = Cs[warp][r][c] + (bias ? bias[n] : 0.f);
      }
      __syncwarp();
    }
}

}  // namespace

void gemm(const float* A, int lda, const DevLinear& W, float* C, int ldc, int M, cudaStream_t st) {
  if (M <= 0) return;
  const int N = W.N, K = W.K;
  SIMBA_ASSERT(A && W.w && C && N > 0 && K > 0 && lda >= K && ldc >= N);
  if (M <= kGemvMaxM) {
    const dim3 grid(ceil_div(N, kGemvWarps));
    const bool vec = K % (W.bf16 ? 8 : 4) == 0;
    if (W.bf16) {
      if (vec)
        SIMBA_LAUNCH(grid, kGemvWarps * 32, 0, st, gemv_kernel<true, true>)(A, lda, W.w, K, W.bias, C, ldc, M, N);
      else SIMBA_LAUNCH(grid, kGemvWarps * 32, 0, st, gemv_kernel<true, false>)(A, lda, W.w, K, W.bias, C, ldc, M, N);
    } else {
      if (vec)
        SIMBA_LAUNCH(grid, kGemvWarps * 32, 0, st, gemv_kernel<false, true>)(A, lda, W.w, K, W.bias, C, ldc, M, N);
      else SIMBA_LAUNCH(grid, kGemvWarps * 32, 0, st, gemv_kernel<false, false>)(A, lda, W.w, K, W.bias, C, ldc, M, N);
    }
    check_launch("gemv");
    return;
  }
  if (W.bf16) {
    const dim3 grid(ceil_div(N, kHB), ceil_div(M, kHB));
    const bool va = lda % 4 == 0 && reinterpret_cast<uintptr_t>(A) % 16 == 0;
    const bool vw = K % 8 == 0;
    const uint16_t* w = static_cast<const uint16_t*>(W.w);
    if (va && vw) SIMBA_LAUNCH(grid, 256, 0, st, wmma_bf16<true, true>)(A, lda, w, K, W.bias, C, ldc, M, N);
    else if (va) SIMBA_LAUNCH(grid, 256, 0, st, wmma_bf16<true, false>)(A, lda, w, K, W.bias, C, ldc, M, N);
    else if (vw) SIMBA_LAUNCH(grid, 256, 0, st, wmma_bf16<false, true>)(A, lda, w, K, W.bias, C, ldc, M, N);
    else SIMBA_LAUNCH(grid, 256, 0, st, wmma_bf16<false, false>)(A, lda, w, K, W.bias, C, ldc, M, N);
    check_launch("wmma_bf16");
  } else {
    const dim3 grid(ceil_div(N, kSB), ceil_div(M, kSB));
    SIMBA_LAUNCH(grid, 256, 0, st, sgemm_f32)(A, lda, static_cast<const float*>(W.w), K, W.bias, C, ldc, M, N);
    check_launch("sgemm_f32");
  }
}

}  // namespace cuda
}  // namespace simba
