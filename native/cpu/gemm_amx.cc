// gemm_amx.cc — GEMMs on Intel AMX tiles (CMakeLists: simba_cpu_amx, AVX-512 flags), called by
// dispatch.cc only when the CPU has AMX and Linux has granted this process the tile data
// (dispatch.cc: amx_usable).
//   gemm_bf16_amx  BF16 weights, A rounded to bf16 pairs: tdpbf16ps, f32 accumulators in tiles.
//   gemm_q8_amx    Q8 weights, A quantized per row (unsigned, +128): tdpbusd, int32 accumulators
//                  over the whole K; C = sa sw (acc - 128 colsum), as gemm_q8_vnni.
// The packed weight panels are already AMX's B layout: a bf16 panel [K2/2][32][2] is, per 16 k
// pairs, two B tiles of 16 rows x 64 bytes (columns 0-15, 16-31) at a row stride of 128 bytes; a
// Q8 panel [K4/4][32][4] the same per 16 groups of 4 k. A tile is 16 rows x 64 bytes of A (32 bf16
// or 64 bytes of k) at A's row stride.
//
// Tiles: C 0-3 (a 32 x 32 block of C as 2 x 2 tiles of 16 x 16 f32 / int32), A 4-5 (rows 0-15,
// 16-31), B 6-7 (columns 0-15, 16-31): each A and B tile feeds two products per k step.
// Preconditions (dispatch.cc): A's rows padded with zeros to a multiple of 16 (a block of both row
// tiles runs only where more than 16 rows remain, so its 32 rows exist) and to a multiple of one
// k step (64 bytes) per row; the last partial k step of a panel is copied into a
// zero-padded scratch tile, so no tile reads past the panel. Work items: (row block, panel) pairs
// with mblock a multiple of 32.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "amx_insn.h"
#include "gemm_store_avx512.h"
#include "kernels.h"

namespace simba {
namespace cpu {
namespace amx {

namespace {

constexpr int kBStride = kPanel * 4;  // bytes per B tile row: 32 columns x 4 bytes (2 bf16 / 4 int8)
constexpr int kKStepBytes = 64;       // one A tile row: 32 bf16 or 64 int8 k values
constexpr int kBTileBytes = 16 * kBStride;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile 16 rows x 64 bytes (the config is per thread; loaded per slice, released after so
// the thread's tile state does not ride along in context switches and signal frames).
struct TileScope {
  TileScope() {
    TileConfig c;
    for (int t = 0; t < 8; t++) {
      c.colsb[t] = 64;
      c.rows[t] = 16;
    }
    AMX_LOADCONFIG(&c);
  }
  ~TileScope() { AMX_RELEASE(); }
};

// C[m + r][n0 + c] for r < rows, c < ncols (+)= v[r][c] (+ bias[c]).
inline void store_rows(const float (*v)[kPanel], int rows, float* C, int ldc, int ncols, const float* bias, bool acc) {
  for (int r = 0; r < rows; r++)
    store_row32(C + (size_t)r * ldc, _mm512_load_ps(v[r]), _mm512_load_ps(v[r] + 16), ncols, bias, acc);
}

// The last partial k step of a panel (krows < 16 B tile rows) in a zeroed scratch tile pair.
inline const char* tail_tiles(const char* b, int krows, char* scratch) {
  std::memcpy(scratch, b, (size_t)krows * kBStride);
  std::memset(scratch + (size_t)krows * kBStride, 0, (size_t)(16 - krows) * kBStride);
  return scratch;
}

// One k step: C tiles (+)= A tiles x the B tile pair at b. RT row tiles (1: rows 0-15 only).
template <int RT, bool INT8>
__attribute__((always_inline)) inline void kstep(const char* a, int lda, const char* b) {
  AMX_LOAD(6, b, kBStride);
  AMX_LOAD(7, b + 64, kBStride);
  AMX_LOAD(4, a, lda);
  if (INT8) {
    AMX_DPBUSD(0, 4, 6);
    AMX_DPBUSD(1, 4, 7);
  } else {
    AMX_DPBF16PS(0, 4, 6);
    AMX_DPBF16PS(1, 4, 7);
  }
  if (RT == 2) {
    AMX_LOAD(5, a + (size_t)16 * lda, lda);
    if (INT8) {
      AMX_DPBUSD(2, 5, 6);
      AMX_DPBUSD(3, 5, 7);
    } else {
      AMX_DPBF16PS(2, 5, 6);
      AMX_DPBF16PS(3, 5, 7);
    }
  }
}

// acc[32][32] (f32 or int32 bits) = A[16 RT rows, Kp] x panel over the whole padded K.
//   a: A's first row, lda bytes per row; panel: the panel's first B row; kbytes: Kp in bytes of
//   one A row (Kp * 2 bf16, Kp int8), a multiple of 4; stream: the GEMM has one row block (decode
//   batches, M <= 128), so each panel is read once, from memory, and is prefetched into L2 as it
//   goes (streaming every decode batch up to 128 rows, not only M <= 16, took decode B=32 int8 from
//   17.5 to 15.9 ms per step and bf16 from 23.6 to 20.9; bench/RESULTS.md). More row blocks re-read
//   the panels from the caches.
template <int RT, bool INT8>
inline void block(const char* a, int lda, const char* panel, int kbytes, void* acc, bool stream) {
  AMX_ZERO(0);
  AMX_ZERO(1);
  if (RT == 2) {
    AMX_ZERO(2);
    AMX_ZERO(3);
  }
  const int full = kbytes / kKStepBytes;
  for (int s = 0; s < full; s++) {
    const char* b = panel + (size_t)s * kBTileBytes;
    if (stream)  // kStreamPrefetchBytes ahead: 3 k steps
      for (int l = 0; l < kBTileBytes; l += 2 * 64) prefetch_stream_row(b + l);
    kstep<RT, INT8>(a + (size_t)s * kKStepBytes, lda, b);
  }
  const int rest = kbytes % kKStepBytes;  // bytes of the last A tile row; B rows: 4 bytes of A each
  if (rest) {
    alignas(64) char scratch[kBTileBytes];
    const char* b = tail_tiles(panel + (size_t)full * kBTileBytes, rest / 4, scratch);
    kstep<RT, INT8>(a + (size_t)full * kKStepBytes, lda, b);
  }
  char* o = static_cast<char*>(acc);
  AMX_STORE(0, o, kBStride);
  AMX_STORE(1, o + 64, kBStride);
  if (RT == 2) {
    AMX_STORE(2, o + 16 * kBStride, kBStride);
    AMX_STORE(3, o + 16 * kBStride + 64, kBStride);
  }
}

// The items [begin, end): tile(m, rows (1..32), p, ncols) per 32-row block of each item.
template <typename F>
inline void for_items(const GemmArgs& g, int begin, int end, F&& tile) {
  const PackedWeight& Wt = *g.W;
  const int np = Wt.npanels;
  for (int item = begin; item < end; item++) {
    const int mb = item / np, p = item % np;
    const int m0 = mb * g.mblock;
    const int mend = g.M < m0 + g.mblock ? g.M : m0 + g.mblock;
    const int ncols = Wt.N - p * kPanel < kPanel ? Wt.N - p * kPanel : kPanel;
    for (int m = m0; m < mend; m += 32) tile(m, mend - m < 32 ? mend - m : 32, p, ncols);
  }
}

}  // namespace

void gemm_bf16_amx(const GemmArgs& g, int begin, int end) {
  TileScope tiles;
  const bool stream = g.nmblocks == 1;
  const PackedWeight& Wt = *g.W;
  const int lda = g.lda2 * 4;
  for_items(g, begin, end, [&](int m, int rows, int p, int ncols) {
    const char* a = reinterpret_cast<const char*>(g.abf + (size_t)m * g.lda2);
    const char* panel = reinterpret_cast<const char*>(Wt.h16 + (size_t)p * Wt.Kp * kPanel);
    alignas(64) float acc[32][kPanel];
    if (rows > 16) block<2, false>(a, lda, panel, Wt.Kp * 2, acc, stream);
    else block<1, false>(a, lda, panel, Wt.Kp * 2, acc, stream);
    const int n0 = p * kPanel;
    store_rows(acc, rows, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, g.bias && !g.accumulate ? g.bias + n0 : nullptr,
               g.accumulate);
  });
}

void gemm_q8_amx(const GemmArgs& g, int begin, int end) {
  TileScope tiles;
  const bool stream = g.nmblocks == 1;
  const PackedWeight& Wt = *g.W;
  const int lda = g.aq->ldq;
  for_items(g, begin, end, [&](int m, int rows, int p, int ncols) {
    const char* a = reinterpret_cast<const char*>(g.aq->q + (size_t)m * lda);
    const char* panel = reinterpret_cast<const char*>(Wt.q8 + (size_t)p * Wt.Kp * kPanel);
    alignas(64) int32_t acc[32][kPanel];
    if (rows > 16) block<2, true>(a, lda, panel, Wt.Kp, acc, stream);
    else block<1, true>(a, lda, panel, Wt.Kp, acc, stream);
    // the epilogue of gemm_q8_vnni (same operations in the same order: the same bits for one k-slice)
    const int n0 = p * kPanel;
    const __m512 sw0 = _mm512_loadu_ps(Wt.scale + n0), sw1 = _mm512_loadu_ps(Wt.scale + n0 + 16);
    const __m512i off0 = _mm512_slli_epi32(_mm512_loadu_si512(Wt.colsum + n0), 7);
    const __m512i off1 = _mm512_slli_epi32(_mm512_loadu_si512(Wt.colsum + n0 + 16), 7);
    alignas(64) float v[32][kPanel];
    for (int r = 0; r < rows; r++) {
      const __m512 sa = _mm512_set1_ps(g.aq->scale[m + r]);
      const __m512i a0 = _mm512_load_si512(acc[r]), a1 = _mm512_load_si512(acc[r] + 16);
      _mm512_store_ps(v[r], _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a0, off0)), _mm512_mul_ps(sw0, sa)));
      _mm512_store_ps(v[r] + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a1, off1)), _mm512_mul_ps(sw1, sa)));
    }
    store_rows(v, rows, g.C + (size_t)m * g.ldc + n0, g.ldc, ncols, g.bias && !g.accumulate ? g.bias + n0 : nullptr,
               g.accumulate);
  });
}

// ---- Peak probes (limits.cc): 4 independent products per iteration on tiles of constant data.

namespace {
// A (tiles 4, 5) x B (tiles 6, 7) into C tiles 0-3, iters times; zero data (the timing does not
// depend on the values).
template <bool INT8>
float tile_loop(long iters) {
  TileScope tiles;
  alignas(64) static const uint8_t zero[16 * 64] = {};
  AMX_LOAD(4, zero, 64);
  AMX_LOAD(5, zero, 64);
  AMX_LOAD(6, zero, 64);
  AMX_LOAD(7, zero, 64);
  AMX_ZERO(0);
  AMX_ZERO(1);
  AMX_ZERO(2);
  AMX_ZERO(3);
  for (long i = 0; i < iters; i++) {
    if (INT8) {
      AMX_DPBUSD(0, 4, 6);
      AMX_DPBUSD(1, 4, 7);
      AMX_DPBUSD(2, 5, 6);
      AMX_DPBUSD(3, 5, 7);
    } else {
      AMX_DPBF16PS(0, 4, 6);
      AMX_DPBF16PS(1, 4, 7);
      AMX_DPBF16PS(2, 5, 6);
      AMX_DPBF16PS(3, 5, 7);
    }
  }
  alignas(64) float out[16 * 16];
  AMX_STORE(0, out, 64);
  return out[0];
}
}  // namespace

float bf16_loop(long iters) { return tile_loop<false>(iters); }
// 4 products of 16 x 16 outputs x 32 k, a multiply-add = 2 operations
int bf16_flops_per_iter() { return 4 * 16 * 16 * 32 * 2; }
float int8_loop(long iters) { return tile_loop<true>(iters); }
int int8_flops_per_iter() { return 4 * 16 * 16 * 64 * 2; }

}  // namespace amx
}  // namespace cpu
}  // namespace simba
