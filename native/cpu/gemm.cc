// gemm.cc — C[M,N] = A[M,K] W^T (+bias), W packed in 32-wide panels (kernels.h).
//
// Blocking: rows are cut into blocks of kMC rows (the A block, kMC x K floats, stays in L2 while
// the panels stream past it); within a block the microkernel computes an MR x 32 tile of C,
// keeping MR x (32/W) vector accumulators in registers and reading per k one 32-float slice of
// the panel (unit stride) and MR scalars of A (broadcast). Work items are (row block, panel)
// pairs so both large-M prefill and M=1 decode split evenly over threads.
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int NV = kPanel / W;  // vectors per panel row
#if SIMBA_W == 16
constexpr int MR = 8;  // 16 accumulators of 32 zmm registers
#elif SIMBA_W == 8
constexpr int MR = 3;  // 12 accumulators of 16 ymm registers
#else
constexpr int MR = 1;  // 8 accumulators of 16 xmm registers
#endif
constexpr int kKC = 256;  // k-slice: 256 x 32 floats = 32 KB of panel, L1-resident

// Stores an MR x 32 tile of accumulators into C (+= C with accumulate, else + bias), first
// ncols columns only.
template <int R>
static inline void store_tile(vf (&acc)[R][NV], float* C, int ldc, int ncols, const float* bias, bool accumulate) {
  for (int r = 0; r < R; r++) {
    float* c = C + (size_t)r * ldc;
    for (int v = 0; v < NV; v++) {
      int n0 = v * W;
      if (n0 >= ncols) break;
      int n = ncols - n0 < W ? ncols - n0 : W;
      vf out = acc[r][v];
      if (accumulate) {
        out += n == W ? vload(c + n0) : vload_n(c + n0, n);
      } else if (bias) {
        out += n == W ? vload(bias + n0) : vload_n(bias + n0, n);
      }
      if (n == W) vstore(c + n0, out);
      else vstore_n(c + n0, out, n);
    }
  }
}

// C[R, 32] (+)= A[R, K] panel^T, f32 panel [K][32].
template <int R>
static inline void micro_f32(int K, const float* A, int lda, const float* pf, float* C, int ldc, int ncols,
                             const float* bias, bool accumulate) {
  vf acc[R][NV] = {};
  for (int k = 0; k < K; k++) {
    // Few rows (decode): the kernel streams the panel from memory; prefetch well ahead of the
    // hardware prefetcher so a single thread keeps more misses in flight.
    if (R <= 2) __builtin_prefetch((const char*)(pf + (size_t)k * kPanel) + 2048);
    vf b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) b[v] = vload(pf + (size_t)k * kPanel + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      vf a = vset1(A[(size_t)r * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
  store_tile<R>(acc, C, ldc, ncols, bias, accumulate);
}

// C[R, 32] (+)= A[R, K] panel^T, bf16 panel [K2/2][32][2] (k pairs): one 32-bit load holds
// W[n, k] in its low and W[n, k+1] in its high half. K may be odd (the last pair's high half is
// zero padding; A is not read past K).
template <int R>
static inline void micro_bf16(int K, const float* A, int lda, const uint16_t* ph, float* C, int ldc, int ncols,
                              const float* bias, bool accumulate) {
  vf acc[R][NV] = {};
  const uint32_t* pw = reinterpret_cast<const uint32_t*>(ph);
  for (int k = 0; k < K; k += 2) {
    const uint32_t* row = pw + (size_t)(k / 2) * kPanel;
    if (R <= 2) __builtin_prefetch((const char*)row + 2048);
    vf b0[NV], b1[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
      vu u = *reinterpret_cast<const vu*>(row + v * W);
      vu lo = u << 16, hi = u & 0xffff0000u;
      b0[v] = reinterpret_cast<vf&>(lo);
      b1[v] = reinterpret_cast<vf&>(hi);
    }
    const bool pair = k + 1 < K;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      vf a0 = vset1(A[(size_t)r * lda + k]);
      vf a1 = vset1(pair ? A[(size_t)r * lda + k + 1] : 0.f);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] += a0 * b0[v] + a1 * b1[v];
    }
  }
  store_tile<R>(acc, C, ldc, ncols, bias, accumulate);
}

template <int R, bool BF16>
static inline void micro(int K, const float* A, int lda, const void* panel, float* C, int ldc, int ncols,
                         const float* bias, bool accumulate) {
  if (BF16) micro_bf16<R>(K, A, lda, static_cast<const uint16_t*>(panel), C, ldc, ncols, bias, accumulate);
  else micro_f32<R>(K, A, lda, static_cast<const float*>(panel), C, ldc, ncols, bias, accumulate);
}

// One (row block, panel) work item. K is cut into slices of kKC so that the panel slice being
// multiplied (kKC x 32 floats, 32 KB) stays in L1 while every row tile of the block passes over it;
// partial sums accumulate in C.
template <bool BF16>
static void tile(const GemmArgs& g, int m0, int rows, int p) {
  const PackedWeight& Wt = *g.W;
  const int K = Wt.K, Kp = Wt.Kp;
  const int n0 = p * kPanel;
  const int ncols = Wt.N - n0 < kPanel ? Wt.N - n0 : kPanel;
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const int kc = K - k0 < kKC ? K - k0 : kKC;
    const size_t off = (size_t)p * Kp * kPanel + (size_t)k0 * kPanel;  // k0 even: a pair boundary
    const void* panel = BF16 ? static_cast<const void*>(Wt.h16 + off) : static_cast<const void*>(Wt.f32 + off);
    const bool acc = g.accumulate || k0 > 0;
    const float* bias = (k0 == 0 && g.bias) ? g.bias + n0 : nullptr;
    int m = m0;
    for (; m + MR <= m0 + rows; m += MR)
      micro<MR, BF16>(kc, g.A + (size_t)m * g.lda + k0, g.lda, panel, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, bias,
                      acc);
    for (; m < m0 + rows; m++)
      micro<1, BF16>(kc, g.A + (size_t)m * g.lda + k0, g.lda, panel, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, bias,
                     acc);
  }
}

void gemm_slice(const GemmArgs& g, int begin, int end) {
  const int np = g.W->npanels;
  for (int item = begin; item < end; item++) {
    int mb = item / np, p = item % np;
    int m0 = mb * g.mblock;
    int rows = g.M - m0 < g.mblock ? g.M - m0 : g.mblock;
    if (g.W->bf16) tile<true>(g, m0, rows, p);
    else tile<false>(g, m0, rows, p);
  }
}

int gemm_mr() { return MR; }

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
