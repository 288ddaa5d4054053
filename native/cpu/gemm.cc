// gemm.cc — C[M,N] = A[M,K] W^T (+bias), W packed in 32-wide panels (kernels.h).
//
// Blocking (the GotoBLAS / BLIS scheme, with W already packed at load time):
//   - Rows are cut into blocks of g.mblock rows. Blocks with at least one full tile of rows are
//     packed once per GEMM call (gemm_pack, all blocks in parallel, before the GEMM) into tiles
//     [K][MR] (MR rows interleaved per k), so the microkernel's MR broadcasts per k read one
//     sequential, L1/L2-resident stream instead of MR strided rows. The packed block (mblock x K floats, <= 516 KB for
//     K = 1536) stays in L2 while the panels stream past it.
//   - K is cut into slices of kKC: the panel slice being multiplied (kKC x 32 floats, 32 KB) stays
//     in L1 while every row tile of the block passes over it; partial sums accumulate in C.
//   - While the tiles of one slice run, they prefetch the next slice (the next 32 KB of the panel
//     array: the next k-slice or the next panel) into L2, spread over the tiles, so the first tile
//     of each slice no longer waits on L3.
//   - The microkernel computes an MR x 32 tile of C in MR x (32/W) vector accumulators and reads per
//     k one 32-float slice of the panel (unit stride) and MR scalars of A (broadcast).
// Rows left over after the full tiles (and every block with fewer rows than MR: decode) use an
// unpacked kernel of exactly that many rows. The k order of every sum is the same on every path
// (slices of kKC, k ascending within), so the packed and unpacked kernels give identical bits.
// Work items are (row block, panel) pairs so both large-M prefill and M=1 decode split evenly.
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int NV = kPanel / W;  // vectors per panel row
#if SIMBA_W == 16
constexpr int MR = 14;       // f32: 28 accumulators + 2 panel vectors + 1 broadcast of 32 zmm
constexpr int MR_BF16 = 12;  // bf16: 24 accumulators + 4 widened panel vectors + 2 broadcasts
#elif SIMBA_W == 8
constexpr int MR = 3;  // 12 accumulators of 16 ymm registers
constexpr int MR_BF16 = 3;
#else
constexpr int MR = 1;  // 8 accumulators of 16 xmm registers
constexpr int MR_BF16 = 1;
#endif
constexpr int kKC = 256;  // k-slice: 256 x 32 floats = 32 KB of panel, L1-resident

// Stores an R x 32 tile of accumulators into C (+= C with accumulate, else + bias), first
// ncols columns only.
template <int R>
__attribute__((always_inline)) static inline void store_tile(vf (&acc)[R][NV], float* C, int ldc, int ncols,
                                                             const float* bias, bool accumulate) {
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

// Zeroes the accumulators register by register (`= {}` on the array compiles to a rep stos into a
// stack copy: 4% of prefill).
template <int R>
__attribute__((always_inline)) static inline void zero_tile(vf (&acc)[R][NV]) {
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[r][v] = vset1(0.f);
}

// Where a microkernel reads its R rows of A: unpacked (row r, column k at a[r * ld + k]) or
// packed (a[k * R + r], ld unused). The kernels are written once against it.
template <int R, bool PACKED>
struct ARows {
  const float* a;
  int ld;
  float at(int r, int k) const { return PACKED ? a[(size_t)k * R + r] : a[(size_t)r * ld + k]; }
};

// Prefetch of the next slice into L2: nl lines from pn, one per k (nl <= K).
struct Prefetch {
  const char* pn = nullptr;
  int nl = 0;
};

// C[R, 32] (+)= A[R, K] panel^T, f32 panel [K][32].
template <int R, bool PACKED>
static inline void micro_f32(int K, ARows<R, PACKED> A, const float* pf, float* C, int ldc, int ncols,
                             const float* bias, bool accumulate, Prefetch next) {
  vf acc[R][NV];
  zero_tile<R>(acc);
  for (int k = 0; k < K; k++) {
    // Unpacked rows (decode: M below the tile height) stream the panel from memory.
    if (!PACKED) prefetch_stream_row(pf + (size_t)k * kPanel);
    if (PACKED && k < next.nl) __builtin_prefetch(next.pn + 64 * k, 0, 2);
    vf b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) b[v] = vload(pf + (size_t)k * kPanel + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      vf a = vset1(A.at(r, k));
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
  store_tile<R>(acc, C, ldc, ncols, bias, accumulate);
}

// C[R, 32] (+)= A[R, K] panel^T, bf16 panel [K2/2][32][2] (k pairs): one 32-bit load holds
// W[n, k] in its low and W[n, k+1] in its high half. K may be odd (the last pair's high half is
// zero padding; A is not read past K unpacked, and the packed block has a zero row there).
template <int R, bool PACKED>
static inline void micro_bf16(int K, ARows<R, PACKED> A, const uint16_t* ph, float* C, int ldc, int ncols,
                              const float* bias, bool accumulate, Prefetch next) {
  vf acc[R][NV];
  zero_tile<R>(acc);
  const uint32_t* pw = reinterpret_cast<const uint32_t*>(ph);
  for (int k = 0; k < K; k += 2) {
    const uint32_t* row = pw + (size_t)(k / 2) * kPanel;
    if (!PACKED) prefetch_stream_row(row);  // as micro_f32
    if (PACKED && k / 2 < next.nl) __builtin_prefetch(next.pn + 64 * (k / 2), 0, 2);
    vf b0[NV], b1[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
      vu u = *reinterpret_cast<const vu*>(row + v * W);
      vu lo = u << 16, hi = u & 0xffff0000u;
      b0[v] = reinterpret_cast<vf&>(lo);
      b1[v] = reinterpret_cast<vf&>(hi);
    }
    const bool pair = k + 1 < K;
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      vf a0 = vset1(A.at(r, k));
      vf a1 = vset1(PACKED || pair ? A.at(r, k + 1) : 0.f);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[r][v] += a0 * b0[v] + a1 * b1[v];
    }
  }
  store_tile<R>(acc, C, ldc, ncols, bias, accumulate);
}

template <int R, bool BF16, bool PACKED>
static inline void micro(int K, ARows<R, PACKED> A, const void* panel, float* C, int ldc, int ncols, const float* bias,
                         bool accumulate, Prefetch next = {}) {
  if (BF16) micro_bf16<R, PACKED>(K, A, static_cast<const uint16_t*>(panel), C, ldc, ncols, bias, accumulate, next);
  else micro_f32<R, PACKED>(K, A, static_cast<const float*>(panel), C, ldc, ncols, bias, accumulate, next);
}

// The rows left after the full tiles (fewer than the tile height), unpacked, in one kernel of
// exactly that height (rows in 1 .. MR - 1; narrower builds: row by row).
template <bool BF16>
static void micro_rest(int rows, int K, const float* A, int lda, const void* panel, float* C, int ldc, int ncols,
                       const float* bias, bool accumulate) {
#define SIMBA_REST(R) \
  case R: return micro<R, BF16, false>(K, {A, lda}, panel, C, ldc, ncols, bias, accumulate)
  switch (rows) {
    SIMBA_REST(1);
#if SIMBA_W >= 8
    SIMBA_REST(2);
#endif
#if SIMBA_W == 16
    SIMBA_REST(3);
    SIMBA_REST(4);
    SIMBA_REST(5);
    SIMBA_REST(6);
    SIMBA_REST(7);
    SIMBA_REST(8);
    SIMBA_REST(9);
    SIMBA_REST(10);
    SIMBA_REST(11);
    SIMBA_REST(12);
    SIMBA_REST(13);
#endif
    default:
      // narrower builds: whole rows one at a time
      for (int r = 0; r < rows; r++)
        micro<1, BF16, false>(K, {A + (size_t)r * lda, lda}, panel, C + (size_t)r * ldc, ldc, ncols, bias, accumulate);
  }
#undef SIMBA_REST
}

// K of the packed A: bf16 kernels read k pairs, so an odd K gets one zero row.
static int kpack_of(const PackedWeight& W) { return W.bf16 ? W.K + (W.K & 1) : W.K; }

// Packs rows [m0, m0 + ntile * R) of A into ntile tiles of [Kpack][R] (k-major, R rows
// interleaved); k in [K, Kpack) is zero (the bf16 kernel's padding pair).
template <int R>
static void pack_rows(const float* A, int lda, int m0, int ntile, int K, int Kpack, float* out) {
  for (int t = 0; t < ntile; t++) {
    float* o = out + (size_t)t * Kpack * R;
    const float* a = A + (size_t)(m0 + t * R) * lda;
    for (int k = 0; k < K; k++)
      for (int r = 0; r < R; r++) o[(size_t)k * R + r] = a[(size_t)r * lda + k];
    for (int k = K; k < Kpack; k++)
      for (int r = 0; r < R; r++) o[(size_t)k * R + r] = 0.f;
  }
}

// One (row block, panel) work item; packed: the block's full tiles packed by pack_rows (or null).
template <bool BF16>
static void tile(const GemmArgs& g, int m0, int rows, int p, const float* packed) {
  constexpr int R = BF16 ? MR_BF16 : MR;
  const PackedWeight& Wt = *g.W;
  const int K = Wt.K, Kp = Wt.Kp;
  const int n0 = p * kPanel;
  const int ncols = Wt.N - n0 < kPanel ? Wt.N - n0 : kPanel;
  const int ntile = packed ? rows / R : 0;
  const size_t panel_elems = (size_t)Wt.npanels * Kp * kPanel;
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const int kc = K - k0 < kKC ? K - k0 : kKC;
    const size_t off = (size_t)p * Kp * kPanel + (size_t)k0 * kPanel;  // k0 even: a pair boundary
    const void* panel = BF16 ? static_cast<const void*>(Wt.h16 + off) : static_cast<const void*>(Wt.f32 + off);
    const bool acc = g.accumulate || k0 > 0;
    const float* bias = (k0 == 0 && g.bias) ? g.bias + n0 : nullptr;
    // The next slice is the next block of the panel array (this panel's next k-slice, or the next
    // panel's first); its lines are spread over this slice's tiles.
    const size_t slice_elems = BF16 ? (size_t)((kc + 1) / 2) * kPanel * 2 : (size_t)kc * kPanel;
    const size_t next_off = off + slice_elems;
    const size_t next_elems =
        next_off < panel_elems ? (panel_elems - next_off < slice_elems ? panel_elems - next_off : slice_elems) : 0;
    const int lines = (int)(next_elems * (BF16 ? 2 : 4) / 64);
    const int per = ntile ? (lines + ntile - 1) / ntile : 0;
    const char* next_base =
        BF16 ? reinterpret_cast<const char*>(Wt.h16 + next_off) : reinterpret_cast<const char*>(Wt.f32 + next_off);
    int m = m0;
    for (int t = 0; t < ntile; t++, m += R) {
      const int l0 = t * per;
      const Prefetch next{next_base + 64 * (size_t)l0, lines - l0 < per ? (lines - l0 > 0 ? lines - l0 : 0) : per};
      const float* ap = packed + (size_t)t * kpack_of(Wt) * R + (size_t)k0 * R;
      micro<R, BF16, true>(kc, {ap, 0}, panel, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, bias, acc, next);
    }
    if (m < m0 + rows)
      micro_rest<BF16>(m0 + rows - m, kc, g.A + (size_t)m * g.lda + k0, g.lda, panel, g.C + (size_t)m * g.ldc + n0,
                       g.ldc, ncols, bias, acc);
  }
}

// Packed A: each row block with at least one full tile, its full tiles [Kpack][R] back to back,
// at block * mblock * Kpack (rows past the full tiles are read from A directly).
size_t gemm_pack_floats(const GemmArgs& g) { return (size_t)g.nmblocks * g.mblock * kpack_of(*g.W); }

void gemm_pack(const GemmArgs& g, float* out, int begin, int end) {
  const bool bf16 = g.W->bf16;
  const int R = bf16 ? MR_BF16 : MR, K = g.W->K, Kpack = kpack_of(*g.W);
  for (int mb = begin; mb < end; mb++) {
    const int m0 = mb * g.mblock, rows = g.M - m0 < g.mblock ? g.M - m0 : g.mblock;
    const int ntile = R > 1 ? rows / R : 0;
    float* o = out + (size_t)mb * g.mblock * Kpack;
    if (bf16) pack_rows<MR_BF16>(g.A, g.lda, m0, ntile, K, Kpack, o);
    else pack_rows<MR>(g.A, g.lda, m0, ntile, K, Kpack, o);
  }
}

void gemm_slice(const GemmArgs& g, int begin, int end) {
  const int np = g.W->npanels;
  const bool bf16 = g.W->bf16;
  const int R = bf16 ? MR_BF16 : MR;
  const int Kpack = kpack_of(*g.W);
  for (int item = begin; item < end; item++) {
    const int mb = item / np, p = item % np;
    const int m0 = mb * g.mblock;
    const int rows = g.M - m0 < g.mblock ? g.M - m0 : g.mblock;
    const bool packed = g.apack && R > 1 && rows >= R;
    const float* ap = packed ? g.apack + (size_t)mb * g.mblock * Kpack : nullptr;
    if (bf16) tile<true>(g, m0, rows, p, ap);
    else tile<false>(g, m0, rows, p, ap);
  }
}

int gemm_mr() { return MR; }

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
