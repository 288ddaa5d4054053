// ssd_scan.cc — Mamba-2's SSD scan (kernels.h SsdArgs) by the chunked form of the SSD paper.
//
// Per sequence and head h (group g = g(h)), with a_t = dt_t A_h the log decay of step t, a chunk of
// q tokens starting from the state s (the state before the chunk) gives, for i, j < q:
//   seg(i, j) = a_{j+1} + ... + a_i                          (0 for j = i; the decay from j to i)
//   y_i[p]   = D x_i[p]
//            + sum_{j <= i} (C_i . B_j) exp(seg(i, j)) dt_j x_j[p]      intra-chunk: (C B^T o decay) x
//            + exp(a_0 + ... + a_i) (C_i . s[p, :])                      the incoming state, decayed to i
//   s'[p, :] = exp(a_0 + ... + a_{q-1}) s[p, :] + sum_j exp(seg(q-1, j)) dt_j x_j[p] B_j    the state passed on
// which is the recurrence s <- exp(a_t) s + dt_t x_t B_t, y_t = C_t . s + D x_t unrolled over the chunk.
// Each seg(i, j) is summed from j = i downwards, so its rounding error scales with itself, not with the
// chunk's running total (exp(seg) near 1 is where the terms count). C_i . B_j depends on the group only:
// a slice computes it once per chunk for each group its heads read. A decode step is a chunk of one
// token (the same code: y = D x + dt (C.B) x + exp(a) C.s; s <- exp(a) s + dt x B).
// Inner loops: y_i's P channels held in up to kPV vectors while j runs (one load per FMA); the state row
// s[p, :] held in registers while the chunk's C_i are dotted with it and its B_j accumulated into it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int kPV = 4;                        // vectors of y_i's channels per pass over j
constexpr int kNV = (kMaxState + W - 1) / W;  // vectors of one state row at most

// Lanes of vector v of a row of n floats starting at vector index v (0 when past the end).
static inline int lanes(int n, int v) { return std::clamp(n - v * W, 0, W); }
static inline vf load_part(const float* p, int n) { return n == W ? vload(p) : vload_n(p, n); }
static inline void store_part(float* p, vf v, int n) {
  if (n == W) vstore(p, v);
  else vstore_n(p, v, n);
}

// One slice's buffers (per thread, reused across calls).
struct ChunkScratch {
  std::vector<float> cb;   // [chunk][chunk] C_i . B_j, j <= i
  std::vector<float> w;    // [chunk] weights of one y row, then the state input weights
  std::vector<float> seg;  // [chunk]
  std::vector<float> dec;  // [chunk] exp(a_0 + ... + a_i)
  std::vector<float> dtv;  // [chunk] dt of the head
  void reserve(int chunk) {
    if ((int)w.size() >= chunk) return;
    cb.assign((size_t)chunk * chunk, 0.f);
    w.assign(chunk, 0.f);
    seg.assign(chunk, 0.f);
    dec.assign(chunk, 0.f);
    dtv.assign(chunk, 0.f);
  }
};

static float dot_row(const float* u, const float* v, int N) {
  vf acc = {};
  for (int k = 0; k < N; k += W) {
    const int n = std::min(W, N - k);
    acc += load_part(u + k, n) * load_part(v + k, n);
  }
  return hsum(acc);
}

// One chunk [c0, c0 + q) of sequence sq for heads [hb, he).
static void ssd_chunk(const SsdArgs& a, const SeqSlice& sq, int c0, int q, int hb, int he, ChunkScratch& cs) {
  const int P = a.P, N = a.N, per_group = a.H / a.G;
  const int NV = (N + W - 1) / W;
  auto row = [&](int i) { return (size_t)(sq.row0 + c0 + i); };
  int cb_group = -1;
  for (int h = hb; h < he; h++) {
    const int g = h / per_group;
    if (g != cb_group) {  // C_i . B_j of this group, j <= i
      for (int i = 0; i < q; i++)
        for (int j = 0; j <= i; j++)
          cs.cb[(size_t)i * q + j] =
              dot_row(a.C + row(i) * a.ldbc + (size_t)g * N, a.B + row(j) * a.ldbc + (size_t)g * N, N);
      cb_group = g;
    }
    const float Ah = a.A[h], Dh = a.D[h];
    for (int i = 0; i < q; i++) cs.dtv[i] = a.dt[row(i) * a.lddt + h];
    float cum = 0.f;
    for (int i = 0; i < q; i++) {
      cum += cs.dtv[i] * Ah;
      cs.dec[i] = cum;
    }
    for (int i = 0; i < q; i += W)
      store_part(cs.dec.data() + i, vexp(load_part(cs.dec.data() + i, std::min(W, q - i))), std::min(W, q - i));
    const size_t xoff = (size_t)h * P;
    // y_i = D x_i + sum_{j <= i} w_j x_j, w_j = (C_i . B_j) exp(seg(i, j)) dt_j; the last row's
    // exp(seg(q-1, j)) dt_j are the state's input weights (kept in cs.w after the loop).
    for (int i = 0; i < q; i++) {
      float s = 0.f;
      cs.seg[i] = 0.f;
      for (int j = i - 1; j >= 0; j--) {
        s += cs.dtv[j + 1] * Ah;
        cs.seg[j] = s;
      }
      for (int j = 0; j <= i; j += W) {
        const int n = std::min(W, i + 1 - j);
        const vf e = vexp(load_part(cs.seg.data() + j, n)) * load_part(cs.dtv.data() + j, n);
        store_part(cs.w.data() + j, e, n);
      }
      float* yi = a.y + row(i) * a.ldy + xoff;
      const float* xi = a.x + row(i) * a.ldx + xoff;
      const float* cbi = cs.cb.data() + (size_t)i * q;
      for (int p0 = 0; p0 < P; p0 += kPV * W) {
        vf acc[kPV];
#pragma GCC unroll 4
        for (int v = 0; v < kPV; v++) acc[v] = load_part(xi + p0 + v * W, lanes(P - p0, v)) * Dh;
        for (int j = 0; j <= i; j++) {
          const float wj = cbi[j] * cs.w[j];
          const float* xj = a.x + row(j) * a.ldx + xoff + p0;
#pragma GCC unroll 4
          for (int v = 0; v < kPV; v++)
            if (lanes(P - p0, v)) acc[v] += wj * load_part(xj + v * W, lanes(P - p0, v));
        }
#pragma GCC unroll 4
        for (int v = 0; v < kPV; v++)
          if (lanes(P - p0, v)) store_part(yi + p0 + v * W, acc[v], lanes(P - p0, v));
      }
    }
    // The incoming state's part of y, and the state passed on, one state row s[p, :] at a time.
    const float total = cs.dec[q - 1];
    float* st = sq.ssm + (size_t)h * P * N;
    const float* Cg = a.C + (size_t)g * N;
    const float* Bg = a.B + (size_t)g * N;
    for (int p = 0; p < P; p++) {
      vf s[kNV];
      for (int v = 0; v < NV; v++) s[v] = load_part(st + (size_t)p * N + v * W, lanes(N, v));
      for (int i = 0; i < q; i++) {
        const float* ci = Cg + row(i) * a.ldbc;
        vf acc = {};
        for (int v = 0; v < NV; v++) acc += s[v] * load_part(ci + v * W, lanes(N, v));
        a.y[row(i) * a.ldy + xoff + p] += cs.dec[i] * hsum(acc);
      }
      for (int v = 0; v < NV; v++) s[v] *= total;
      for (int j = 0; j < q; j++) {
        const float u = cs.w[j] * a.x[row(j) * a.ldx + xoff + p];
        const float* bj = Bg + row(j) * a.ldbc;
        for (int v = 0; v < NV; v++) s[v] += u * load_part(bj + v * W, lanes(N, v));
      }
      for (int v = 0; v < NV; v++) store_part(st + (size_t)p * N + v * W, s[v], lanes(N, v));
    }
  }
}

void ssd_scan_slice(const SsdArgs& a, int begin, int end) {
  FlushDenormals ftz;  // the decays of long chunks underflow
  static thread_local ChunkScratch cs;
  cs.reserve(a.chunk);
  for (int si = 0; si < a.nseq; si++) {
    const SeqSlice& sq = a.seqs[si];
    for (int t = 0; t < sq.T; t++) {  // dt = clamp(softplus(dt_raw + bias)), in place
      float* dt = a.dt + (size_t)(sq.row0 + t) * a.lddt;
      for (int h = begin; h < end; h++) {
        const float v = dt[h] + a.dt_bias[h];
        const float sp = v > 20.f ? v : std::log1p(std::exp(v));
        dt[h] = std::min(std::max(sp, a.dt_min), a.dt_max);
      }
    }
    for (int c0 = 0; c0 < sq.T; c0 += a.chunk) ssd_chunk(a, sq, c0, std::min(a.chunk, sq.T - c0), begin, end, cs);
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
