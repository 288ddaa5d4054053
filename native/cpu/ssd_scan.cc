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
// A chunk of at least kBlockedMinTokens tokens runs as four small matrix products on padded copies in
// the slice's scratch (block_gemm: 4 rows x 4 vectors of accumulators, one broadcast per row and one load
// per vector each step): C B^T, (C B^T o decay) x, C S^T (the incoming state, S^T = [N][P]) and the
// state update S^T' = total S^T + (B o w)^T x. Shorter chunks (decode) take the direct loops: the state
// row s[p, :] held in registers while C_i is dotted with it and B_j accumulated into it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int kNV = (kMaxState + W - 1) / W;  // vectors of one state row at most
constexpr int kRB = 4;                        // rows per block of block_gemm
constexpr int kCB = 4 * W;                    // columns per block of block_gemm
constexpr int kBlockedMinTokens = 8;          // chunks this long take the blocked products

// Lanes of vector v of a row of n floats starting at vector index v (0 when past the end).
static inline int lanes(int n, int v) { return std::clamp(n - v * W, 0, W); }
static inline vf load_part(const float* p, int n) { return n == W ? vload(p) : vload_n(p, n); }
static inline void store_part(float* p, vf v, int n) {
  if (n == W) vstore(p, v);
  else vstore_n(p, v, n);
}
static inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// One slice's buffers, sized for a chunk of Q tokens, P channels and state N (padded: rows to kRB,
// columns to kCB); all zero-padded where the products read past the data.
struct ChunkScratch {
  int Q4, Qp, Pp, N;
  std::vector<float> cb, m, cl, bt, bw, xl, yl, st, seg, dec, dtv, w;
  ChunkScratch(int Q, int P, int N_) : Q4(round_up(Q, kRB)), Qp(round_up(Q, kCB)), Pp(round_up(P, kCB)), N(N_) {
    seg.assign(Qp, 0.f);
    dec.assign(Qp, 0.f);
    dtv.assign(Qp, 0.f);
    w.assign(Qp, 0.f);
  }
  // The blocked products' buffers, allocated on first use (a decode step never needs them).
  void blocked() {
    if (!cb.empty()) return;
    cb.assign((size_t)Q4 * Qp, 0.f);                // [Q4][Qp] C_i . B_j
    m.assign((size_t)Q4 * Qp, 0.f);                 // [Q4][Qp] (C_i . B_j) exp(seg(i, j)) dt_j, j <= i
    cl.assign((size_t)Q4 * N, 0.f);                 // [Q4][N] C rows of the group
    bt.assign((size_t)N * Qp, 0.f);                 // [N][Qp] B^T of the group
    bw.assign((size_t)round_up(N, kRB) * Qp, 0.f);  // [N4][Qp] B[j][n] exp(seg(q-1, j)) dt_j, transposed
    xl.assign((size_t)Q4 * Pp, 0.f);                // [Q4][Pp] x of the head
    yl.assign((size_t)Q4 * Pp, 0.f);                // [Q4][Pp] y of the head
    st.assign((size_t)round_up(N, kRB) * Pp, 0.f);  // [N4][Pp] S^T
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

// out[r][0, cols) = beta out[r] + (alpha ? alpha[r] : 1) sum_{k < K(r)} a[r][k] b[k][0, cols) for r < R,
// with R a multiple of kRB, cols a multiple of kCB; Lower: row r sums k <= r only (rows of a block sum
// to the block's last row, a's entries past the diagonal being zero).
template <bool Lower>
static void block_gemm(int R, int K, int cols, const float* a, int lda, const float* b, int ldb, float* out, int ldo,
                       const float* alpha, float beta) {
  for (int r0 = 0; r0 < R; r0 += kRB) {
    const int kend = Lower ? std::min(K, r0 + kRB) : K;
    for (int c0 = 0; c0 < cols; c0 += kCB) {
      vf acc[kRB][4] = {};
      for (int k = 0; k < kend; k++) {
        const float* bk = b + (size_t)k * ldb + c0;
        const vf b0 = vload(bk), b1 = vload(bk + W), b2 = vload(bk + 2 * W), b3 = vload(bk + 3 * W);
#pragma GCC unroll 4
        for (int r = 0; r < kRB; r++) {
          const float s = a[(size_t)(r0 + r) * lda + k];
          acc[r][0] += s * b0;
          acc[r][1] += s * b1;
          acc[r][2] += s * b2;
          acc[r][3] += s * b3;
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < kRB; r++) {
        float* o = out + (size_t)(r0 + r) * ldo + c0;
        const float al = alpha ? alpha[r0 + r] : 1.f;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) vstore(o + v * W, (beta == 0.f ? vf{} : vload(o + v * W) * beta) + acc[r][v] * al);
      }
    }
  }
}

// dt of the head over the chunk, its decays from the chunk start (dec[i] = exp(a_0 + ... + a_i)), and
// row i's weights w[j] = exp(seg(i, j)) dt_j, j <= i (seg summed from j = i down: see the top).
static void chunk_decays(const SsdArgs& a, const SeqSlice& sq, int c0, int q, int h, ChunkScratch& cs) {
  const float Ah = a.A[h];
  for (int i = 0; i < q; i++) cs.dtv[i] = a.dt[(size_t)(sq.row0 + c0 + i) * a.lddt + h];
  float cum = 0.f;
  for (int i = 0; i < q; i++) {
    cum += cs.dtv[i] * Ah;
    cs.dec[i] = cum;
  }
  for (int i = 0; i < q; i += W)
    store_part(cs.dec.data() + i, vexp(load_part(cs.dec.data() + i, std::min(W, q - i))), std::min(W, q - i));
}
static void row_weights(int i, float Ah, ChunkScratch& cs) {
  float s = 0.f;
  cs.seg[i] = 0.f;
  for (int j = i - 1; j >= 0; j--) {
    s += cs.dtv[j + 1] * Ah;
    cs.seg[j] = s;
  }
  for (int j = 0; j <= i; j += W) {
    const int n = std::min(W, i + 1 - j);
    store_part(cs.w.data() + j, vexp(load_part(cs.seg.data() + j, n)) * load_part(cs.dtv.data() + j, n), n);
  }
}

// A chunk of q >= kBlockedMinTokens tokens for heads [hb, he), by the blocked products.
static void ssd_chunk_blocked(const SsdArgs& a, const SeqSlice& sq, int c0, int q, int hb, int he, ChunkScratch& cs) {
  const int P = a.P, N = a.N, per_group = a.H / a.G;
  const int Q4 = round_up(q, kRB), N4 = round_up(N, kRB), Pp = cs.Pp, Qp = cs.Qp;
  auto row = [&](int i) { return (size_t)(sq.row0 + c0 + i); };
  cs.blocked();
  int group = -1;
  for (int h = hb; h < he; h++) {
    const int g = h / per_group;
    if (g != group) {  // the group's C rows, B^T and C B^T
      for (int i = 0; i < q; i++) {
        std::copy_n(a.C + row(i) * a.ldbc + (size_t)g * N, N, cs.cl.data() + (size_t)i * N);
        const float* bi = a.B + row(i) * a.ldbc + (size_t)g * N;
        for (int n = 0; n < N; n++) cs.bt[(size_t)n * Qp + i] = bi[n];
      }
      std::fill(cs.cl.begin() + (size_t)q * N, cs.cl.begin() + (size_t)Q4 * N, 0.f);
      for (int n = 0; n < N; n++)
        std::fill(cs.bt.begin() + (size_t)n * Qp + q, cs.bt.begin() + (size_t)(n + 1) * Qp, 0.f);
      block_gemm<false>(Q4, N, round_up(q, kCB), cs.cl.data(), N, cs.bt.data(), Qp, cs.cb.data(), Qp, nullptr, 0.f);
      group = g;
    }
    const float Ah = a.A[h], Dh = a.D[h];
    chunk_decays(a, sq, c0, q, h, cs);
    // M = (C B^T o decay) with dt folded in; the last row's weights feed the state.
    for (int i = 0; i < q; i++) {
      row_weights(i, Ah, cs);
      float* mi = cs.m.data() + (size_t)i * Qp;
      const float* cbi = cs.cb.data() + (size_t)i * Qp;
      for (int j = 0; j <= i; j++) mi[j] = cbi[j] * cs.w[j];
      std::fill(mi + i + 1, mi + Qp, 0.f);
    }
    for (int i = q; i < Q4; i++) std::fill(cs.m.begin() + (size_t)i * Qp, cs.m.begin() + (size_t)(i + 1) * Qp, 0.f);
    // x of the head, padded
    const size_t xoff = (size_t)h * P;
    for (int i = 0; i < Q4; i++) {
      float* xi = cs.xl.data() + (size_t)i * Pp;
      if (i < q) std::copy_n(a.x + row(i) * a.ldx + xoff, P, xi);
      std::fill(xi + (i < q ? P : 0), xi + Pp, 0.f);
    }
    // S^T [N][Pp] of the incoming state [P][N]
    float* st = sq.ssm + (size_t)h * P * N;
    for (int n = 0; n < N4; n++) std::fill(cs.st.begin() + (size_t)n * Pp, cs.st.begin() + (size_t)(n + 1) * Pp, 0.f);
    for (int p = 0; p < P; p++)
      for (int n = 0; n < N; n++) cs.st[(size_t)n * Pp + p] = st[(size_t)p * N + n];
    // y = M x, then + dec_i C_i S^T
    block_gemm<true>(Q4, q, Pp, cs.m.data(), Qp, cs.xl.data(), Pp, cs.yl.data(), Pp, nullptr, 0.f);
    block_gemm<false>(Q4, N, Pp, cs.cl.data(), N, cs.st.data(), Pp, cs.yl.data(), Pp, cs.dec.data(), 1.f);
    for (int i = 0; i < q; i++) {
      float* yi = a.y + row(i) * a.ldy + xoff;
      const float* yl = cs.yl.data() + (size_t)i * Pp;
      const float* xi = cs.xl.data() + (size_t)i * Pp;
      for (int p = 0; p < P; p++) yi[p] = yl[p] + Dh * xi[p];
    }
    // S^T' = total S^T + (B o w_last)^T x: row q-1's weights are still in cs.w
    const float total = cs.dec[q - 1];
    for (int n = 0; n < N; n++) {
      float* bwn = cs.bw.data() + (size_t)n * Qp;
      const float* btn = cs.bt.data() + (size_t)n * Qp;
      for (int j = 0; j < q; j++) bwn[j] = btn[j] * cs.w[j];
    }
    block_gemm<false>(N4, q, Pp, cs.bw.data(), Qp, cs.xl.data(), Pp, cs.st.data(), Pp, nullptr, total);
    for (int p = 0; p < P; p++)
      for (int n = 0; n < N; n++) st[(size_t)p * N + n] = cs.st[(size_t)n * Pp + p];
  }
}

// A short chunk (decode: one token) [c0, c0 + q) of sequence sq for heads [hb, he), by direct loops.
static void ssd_chunk_direct(const SsdArgs& a, const SeqSlice& sq, int c0, int q, int hb, int he, ChunkScratch& cs) {
  const int P = a.P, N = a.N, per_group = a.H / a.G;
  const int NV = (N + W - 1) / W;
  auto row = [&](int i) { return (size_t)(sq.row0 + c0 + i); };
  for (int h = hb; h < he; h++) {
    const int g = h / per_group;
    const float Ah = a.A[h], Dh = a.D[h];
    chunk_decays(a, sq, c0, q, h, cs);
    const size_t xoff = (size_t)h * P;
    const float* Cg = a.C + (size_t)g * N;
    const float* Bg = a.B + (size_t)g * N;
    // y_i = D x_i + sum_{j <= i} (C_i . B_j) exp(seg(i, j)) dt_j x_j; row q-1's weights stay in cs.w
    for (int i = 0; i < q; i++) {
      row_weights(i, Ah, cs);
      float* yi = a.y + row(i) * a.ldy + xoff;
      const float* xi = a.x + row(i) * a.ldx + xoff;
      for (int p = 0; p < P; p++) yi[p] = Dh * xi[p];
      for (int j = 0; j <= i; j++) {
        const float wj = dot_row(Cg + row(i) * a.ldbc, Bg + row(j) * a.ldbc, N) * cs.w[j];
        const float* xj = a.x + row(j) * a.ldx + xoff;
        for (int p = 0; p < P; p++) yi[p] += wj * xj[p];
      }
    }
    // The incoming state's part of y, and the state passed on, one state row s[p, :] at a time.
    const float total = cs.dec[q - 1];
    float* st = sq.ssm + (size_t)h * P * N;
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
  ChunkScratch cs(a.chunk, a.P, a.N);
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
    for (int c0 = 0; c0 < sq.T; c0 += a.chunk) {
      const int q = std::min(a.chunk, sq.T - c0);
      if (q >= kBlockedMinTokens) ssd_chunk_blocked(a, sq, c0, q, begin, end, cs);
      else ssd_chunk_direct(a, sq, c0, q, begin, end, cs);
    }
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
