// weight_pack.cc — f32 weights W [N, K] row-major into the F32 panel layout of kernels.h,
// [npanels][K][32]: a transpose of each 32-row band. Loading a checkpoint spends most of its CPU
// time here and in page faults, so the AVX-512 build transposes 16x16 blocks in registers (16
// loads of 16 k from 16 rows, 16 stores of 16 features per k); other builds, and the edges (a
// last panel with fewer than 32 features, K past a multiple of 16), copy one value at a time.
// Every build writes the same bytes.
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

namespace {

// Panel columns [k0, k1) one value at a time: d[k][c] = W[n0 + c][k], zero past nc features.
void pack_columns(const float* W, int K, int n0, int nc, float* d, int k0, int k1) {
  for (int k = k0; k < k1; k++)
    for (int c = 0; c < kPanel; c++) d[(size_t)k * kPanel + c] = c < nc ? W[(size_t)(n0 + c) * K + k] : 0.f;
}

#if SIMBA_W == 16
// dst[j * ldd + i] = src[i * ld + j] for a 16x16 block (i: source row, j: column).
inline void transpose16(const float* src, size_t ld, float* dst, size_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * ld);
  // Stage 1: interleave row pairs (2x2 blocks of 1 float).
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Stage 2: 2x2 blocks of 2 floats within 128-bit lanes.
  for (int i = 0; i < 4; i++) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // Stages 3 and 4: 128-bit lanes across registers 4 and then 8 apart.
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xDD);
    }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
  }
  for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ldd, r[i]);
}
#endif

}  // namespace

// Panels [begin, end) of W [N, K] into out ([npanels][K][32] floats).
void pack_f32(const float* W, int N, int K, float* out, int begin, int end) {
  for (int pi = begin; pi < end; pi++) {
    const int n0 = pi * kPanel, nc = N - n0 < kPanel ? N - n0 : kPanel;
    float* d = out + (size_t)pi * K * kPanel;
    int k0 = 0;
#if SIMBA_W == 16
    if (nc == kPanel)
      for (; k0 + 16 <= K; k0 += 16)
        for (int h = 0; h < 2; h++)  // features [16h, 16h + 16) of k [k0, k0 + 16)
          transpose16(W + (size_t)(n0 + 16 * h) * K + k0, K, d + (size_t)k0 * kPanel + 16 * h, kPanel);
#endif
    pack_columns(W, K, n0, nc, d, k0, K);
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
