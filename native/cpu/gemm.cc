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
constexpr int MR = 8;   // 16 accumulators of 32 zmm registers
#elif SIMBA_W == 8
constexpr int MR = 3;   // 12 accumulators of 16 ymm registers
#else
constexpr int MR = 1;   // 8 accumulators of 16 xmm registers
#endif
constexpr int kKC = 256;  // k-slice: 256 x 32 floats = 32 KB of panel, L1-resident

template <int R, bool BF16>
static inline void micro(int K, const float* A, int lda, const void* panel, float* C, int ldc,
                         int ncols, const float* bias, bool accumulate) {
  vf acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[r][v] = vf{};
  const float* pf = static_cast<const float*>(panel);
  const uint16_t* ph = static_cast<const uint16_t*>(panel);
  for (int k = 0; k < K; k++) {
    // Few rows (decode): the kernel streams the panel from memory; prefetch well ahead of the
    // hardware prefetcher so a single thread keeps more misses in flight.
    if (R <= 2) __builtin_prefetch((BF16 ? (const char*)(ph + (size_t)k * kPanel) : (const char*)(pf + (size_t)k * kPanel)) + 2048);
    vf b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
      b[v] = BF16 ? vload_bf16(ph + (size_t)k * kPanel + v * W) : vload(pf + (size_t)k * kPanel + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      vf a = vset1(A[(size_t)r * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
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
      if (n == W) vstore(c + n0, out); else vstore_n(c + n0, out, n);
    }
  }
}

// One (row block, panel) work item. K is cut into slices of kKC so that the panel slice being
// multiplied (kKC x 32 floats, 32 KB) stays in L1 while every row tile of the block passes over it;
// partial sums accumulate in C.
template <bool BF16>
static void tile(const GemmArgs& g, int m0, int rows, int p) {
  const PackedWeight& Wt = *g.W;
  const int K = Wt.K;
  const int n0 = p * kPanel;
  const int ncols = Wt.N - n0 < kPanel ? Wt.N - n0 : kPanel;
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const int kc = K - k0 < kKC ? K - k0 : kKC;
    const size_t off = (size_t)p * K * kPanel + (size_t)k0 * kPanel;
    const void* panel = BF16 ? static_cast<const void*>(Wt.h16 + off) : static_cast<const void*>(Wt.f32 + off);
    const bool acc = g.accumulate || k0 > 0;
    const float* bias = (k0 == 0 && g.bias) ? g.bias + n0 : nullptr;
    int m = m0;
    for (; m + MR <= m0 + rows; m += MR)
      micro<MR, BF16>(kc, g.A + (size_t)m * g.lda + k0, g.lda, panel, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, bias, acc);
    for (; m < m0 + rows; m++)
      micro<1, BF16>(kc, g.A + (size_t)m * g.lda + k0, g.lda, panel, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, bias, acc);
  }
}

void gemm_slice(const GemmArgs& g, int begin, int end) {
  const int np = g.W->npanels;
  for (int item = begin; item < end; item++) {
    int mb = item / np, p = item % np;
    int m0 = mb * g.mblock;
    int rows = g.M - m0 < g.mblock ? g.M - m0 : g.mblock;
    if (g.W->bf16) tile<true>(g, m0, rows, p); else tile<false>(g, m0, rows, p);
  }
}

int gemm_mr() { return MR; }

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
