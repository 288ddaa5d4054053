// selective_scan.cc — the Mamba-1 selective scan with softplus, D skip and SiLU(z) gate fused.
//
// Per sequence and channel e (A = -exp(A_log), precomputed and transposed to [N][E]):
//   dt[t,e]  = softplus(dt_raw[t,e])                      (written back: the Simba score reads it)
//   s[e,n]   = exp(dt[t,e] A[e,n]) s[e,n] + dt[t,e] B[t,n] x[t,e]
//   y[t,e]   = (sum_n C[t,n] s[e,n] + D[e] x[t,e]) * silu(z[t,e])
// Channels are split into groups of W lanes (one vector per state index n); time runs
// sequentially. The group's N state vectors live in registers (N=16 specialisation) or in a small
// stack array. The SSM state [E, N] is read at the start and written back at the end, so decode
// (T=1) and prefill share this code.
// Rows are E (or 2E) floats apart, so each step's loads of dt, x, z, B and the store of y land on
// new pages, where the hardware prefetchers do not follow; the loop prefetches kAhead steps ahead
// (T=2048, E=1536: 69 -> 51 ms per layer and thread).
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int kAhead = 8;

// The state's decay exp(dt A) as 2^(dt A log2(e)), with A log2(e) (decay_coef) computed once per group
// and the rounding to nearest split off by vreduceps (AVX-512): r = t - round(t), 2^r by a degree-5
// polynomial on [-1/2, 1/2] (relative error 1e-7, as vexp's), scaled by 2^round(t): 9 operations
// where vexp(dt A) takes 11; the state update is most of the scan's work. Narrower builds: vexp.
#if SIMBA_W == 16
static inline vf decay_coef(vf A) { return A * 1.44269504088896341f; }
static inline vf decay(vf dt, vf coef) {
  const vf t = dt * coef;
  const __m512 tv = reinterpret_cast<const __m512&>(t);
  const __m512 rv = _mm512_reduce_ps(tv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf r = reinterpret_cast<const vf&>(rv);
  vf p = vset1(0.00132647273f);
  p = p * r + 0.00967151308f;
  p = p * r + 0.0555073375f;
  p = p * r + 0.240222421f;
  p = p * r + 0.693146978f;
  p = p * r + 1.f;
  const vf n = t - r;  // exact: round(t)
  const __m512 out = _mm512_scalef_ps(reinterpret_cast<const __m512&>(p), reinterpret_cast<const __m512&>(n));
  return reinterpret_cast<const vf&>(out);
}
#else
static inline vf decay_coef(vf A) { return A; }
static inline vf decay(vf dt, vf coef) { return vexp(dt * coef); }
#endif

// A group's state is a contiguous [n][N] block of the [E, N] state; the kernels hold it as N
// vectors of W lanes. Transposed through a plain float buffer (element access on vector registers
// would go through the stack per lane); lanes past E (n < W) are zero.
static inline void state_to_tile(const float* st, int n, int N, float* tile) {
  if (n < W) std::memset(tile, 0, sizeof(float) * N * W);
  for (int l = 0; l < n; l++)
    for (int k = 0; k < N; k++) tile[k * W + l] = st[l * N + k];
}
static inline void tile_to_state(const float* tile, int n, int N, float* st) {
  for (int l = 0; l < n; l++)
    for (int k = 0; k < N; k++) st[l * N + k] = tile[k * W + l];
}

// The whole slice of sequence si in channel group g, kChunk time steps at a time in two phases:
// first what does not depend on the state (softplus, dt x, D x and the gate) for all the chunk's
// steps, then the recurrence and y, y's sum over n as four partial sums. Step by step, one step
// was a ~190-cycle dependency chain (softplus -> exp -> state -> a chain of 16 FMAs over n -> gate)
// of ~250 instructions, more than the core's window holds, so it ran near that latency. With
// decay() for vexp: T=512, E=4096, N=16, one thread 73-80 -> 52-57 ns per group and step (a
// standalone timing loop, alternated). (Running the states in the outer loop and the steps inside,
// or 8 states at a time, was slower: 70-77 ns.)
constexpr int kChunk = 16;
template <int NF>
static void scan_group(const ScanArgs& a, int g, int si) {
  const int E = a.E, N = NF > 0 ? NF : a.N;
  const int e0 = g * W;
  const int n = E - e0 < W ? E - e0 : W;
  const bool full = n == W;
  vf A[NF > 0 ? NF : kMaxState];
  for (int k = 0; k < N; k++) A[k] = decay_coef(vload_n(a.AT + (size_t)k * E + e0, n));
  const vf Dv = vload_n(a.D + e0, n);
  const SeqSlice& sq = a.seqs[si];
  float tile[kMaxState * W];  // the state, [n][W]
  state_to_tile(sq.ssm + (size_t)e0 * N, n, N, tile);
  vf s[NF > 0 ? NF : kMaxState];
  for (int k = 0; k < N; k++) s[k] = vload(tile + k * W);
  vf dtc[kChunk], dtxc[kChunk], gatec[kChunk], yc[kChunk];
  const float* Bc[kChunk];
  const float* Cc[kChunk];
  for (int t0 = 0; t0 < sq.T; t0 += kChunk) {
    const int tn = sq.T - t0 < kChunk ? sq.T - t0 : kChunk;
    for (int j = 0; j < tn; j++) {
      const int t = t0 + j;
      const size_t row = (size_t)(sq.row0 + t);
      float* dtp = a.dt + row * a.lddt + e0;
      const float* xp = a.x + row * a.ldx + e0;
      const float* zp = a.z + row * a.ldz + e0;
      if (t + kAhead < sq.T) {
        __builtin_prefetch(dtp + (size_t)kAhead * a.lddt, 1);
        __builtin_prefetch(xp + (size_t)kAhead * a.ldx);
        __builtin_prefetch(zp + (size_t)kAhead * a.ldz);
        __builtin_prefetch(a.B + (row + kAhead) * a.ldbc);
        __builtin_prefetch(a.y + (row + kAhead) * a.ldy + e0, 1);
      }
      const vf dt = vsoftplus(full ? vload(dtp) : vload_n(dtp, n));
      if (full) vstore(dtp, dt);
      else vstore_n(dtp, dt, n);
      const vf x = full ? vload(xp) : vload_n(xp, n);
      dtc[j] = dt;
      dtxc[j] = dt * x;
      yc[j] = Dv * x;
      gatec[j] = vsilu(full ? vload(zp) : vload_n(zp, n));
      Bc[j] = a.B + row * a.ldbc;
      Cc[j] = a.C + row * a.ldbc;
    }
    for (int j = 0; j < tn; j++) {
      const float* Bp = Bc[j];
      const float* Cp = Cc[j];
      const vf dt = dtc[j], dtx = dtxc[j];
      vf yp[4] = {yc[j], vf{}, vf{}, vf{}};
#pragma GCC unroll 16
      for (int k = 0; k < N; k++) {
        s[k] = decay(dt, A[k]) * s[k] + dtx * Bp[k];
        yp[k & 3] += s[k] * Cp[k];
      }
      const vf y = ((yp[0] + yp[1]) + (yp[2] + yp[3])) * gatec[j];
      float* yo = a.y + (size_t)(sq.row0 + t0 + j) * a.ldy + e0;
      if (full) vstore(yo, y);
      else vstore_n(yo, y, n);
    }
  }
  for (int k = 0; k < N; k++) vstore(tile + k * W, s[k]);
  tile_to_state(tile, n, N, sq.ssm + (size_t)e0 * N);
}

#if SIMBA_W == 16
// One step (a decode token) of channel groups [g0, g1) of one sequence, N = 16 = W, in the
// state's own [E][N] layout: one vector holds one channel's 16 states, so the state is loaded
// and stored as it lies, with A read in the same layout (a.A), B and C one vector each for all
// channels, and dt, dt x broadcast per channel. y needs each channel's sum over n: the 16
// products s C of a group are summed across lanes together by a shuffle tree (hsum16, 30
// shuffles), where the transposes of the state into [N][W] tiles and back took 128 (B = 32,
// 130m: 255 -> 203 cycles per group on one thread, and 1.3x the scan with two threads).
// Per state the same operations as scan_group; only the order of y's sum over n differs.
static inline vf hsum16(const vf (&p)[16]) {
  __m512 q[16];
  for (int i = 0; i < 16; i++) q[i] = reinterpret_cast<const __m512&>(p[i]);
  // pairs: per 128-bit quarter [p0 lanes 0+2, p1 0+2, p0 1+3, p1 1+3] of that quarter
  __m512 a[8];
  for (int i = 0; i < 8; i++)
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(q[2 * i], q[2 * i + 1]), _mm512_unpackhi_ps(q[2 * i], q[2 * i + 1]));
  // fours: per quarter, the quarter's sums of channels 4i .. 4i+3
  __m512 b[4];
  for (int i = 0; i < 4; i++)
    b[i] =
        _mm512_add_ps(_mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44), _mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0xee));
  // across quarters: channels 0-3 | 4-7 | 8-11 | 12-15
  const __m512 d01 = _mm512_add_ps(_mm512_shuffle_f32x4(b[0], b[1], 0x44), _mm512_shuffle_f32x4(b[0], b[1], 0xee));
  const __m512 d23 = _mm512_add_ps(_mm512_shuffle_f32x4(b[2], b[3], 0x44), _mm512_shuffle_f32x4(b[2], b[3], 0xee));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_f32x4(d01, d23, 0x88), _mm512_shuffle_f32x4(d01, d23, 0xdd));
  return reinterpret_cast<const vf&>(r);
}

static void step_groups16(const ScanArgs& a, int si, int g0, int g1) {
  constexpr int N = 16;
  const SeqSlice& sq = a.seqs[si];
  const size_t row = (size_t)sq.row0;
  const vf Bv = vload(a.B + row * a.ldbc), Cv = vload(a.C + row * a.ldbc);
  for (int g = g0; g < g1; g++) {
    const int e0 = g * W;
    float* dtp = a.dt + row * a.lddt + e0;
    const vf dt = vsoftplus(vload(dtp));
    vstore(dtp, dt);
    const vf x = vload(a.x + row * a.ldx + e0);
    alignas(64) float dts[W], dtxs[W];  // broadcast per channel from here
    vstore(dts, dt);
    vstore(dtxs, dt * x);
    const vf dx = vload(a.D + e0) * x;
    const vf gate = vsilu(vload(a.z + row * a.ldz + e0));
    float* st = sq.ssm + (size_t)e0 * N;
    const float* A = a.A + (size_t)e0 * N;
    vf p[W];
#pragma GCC unroll 16
    for (int l = 0; l < W; l++) {
      vf s = vload(st + l * N);
      s = vexp(vset1(dts[l]) * vload(A + l * N)) * s + vset1(dtxs[l]) * Bv;
      vstore(st + l * N, s);
      p[l] = s * Cv;
    }
    vstore(a.y + row * a.ldy + e0, (hsum16(p) + dx) * gate);
  }
}
#else
// Narrower builds (AVX2, SSE2: a channel's 16 states are several vectors) keep the [N][W] tiles.
// One step (a decode token) of kG channel groups of one sequence, N = 16, in two phases: first
// what does not depend on the state for all kG groups (softplus, dt x, D x, the gate and the 16
// decays per group, most of the arithmetic), then the recurrence and y per group. A single step
// of one group is a ~300-cycle dependency chain (softplus -> exp -> state -> the sum over n ->
// gate) of ~400 instructions, more than the out-of-order window holds, so group after group ran
// at its latency; phase 1 gives the core kG independent chains. The same operations as
// scan_group, but the compiler contracts them into FMAs differently, so results can differ from
// it in the last bits (~1e-6 relative on the logits of a 24-layer model).
constexpr int kG = 4;
static void step_block16(const ScanArgs& a, int si, int g0, int g1) {
  constexpr int N = 16;
  const int E = a.E;
  const SeqSlice& sq = a.seqs[si];
  const size_t row = (size_t)sq.row0;
  vf dA[kG][N], dtx[kG], dx[kG], gate[kG];
  for (int j = 0; j < g1 - g0; j++) {
    const int e0 = (g0 + j) * W;
    float* dtp = a.dt + row * a.lddt + e0;
    const vf dt = vsoftplus(vload(dtp));
    vstore(dtp, dt);
    const vf x = vload(a.x + row * a.ldx + e0);
    dtx[j] = dt * x;
    dx[j] = vload(a.D + e0) * x;
    gate[j] = vsilu(vload(a.z + row * a.ldz + e0));
#pragma GCC unroll 16
    for (int k = 0; k < N; k++) dA[j][k] = vexp(dt * vload(a.AT + (size_t)k * E + e0));
  }
  const float* Bp = a.B + row * a.ldbc;
  const float* Cp = a.C + row * a.ldbc;
  for (int j = 0; j < g1 - g0; j++) {
    const int e0 = (g0 + j) * W;
    float tile[N * W];
    float* st = sq.ssm + (size_t)e0 * N;
    state_to_tile(st, W, N, tile);
    vf y = dx[j];
#pragma GCC unroll 16
    for (int k = 0; k < N; k++) {
      vf sk = vload(tile + k * W);
      sk = dA[j][k] * sk + dtx[j] * Bp[k];
      y += sk * Cp[k];
      vstore(tile + k * W, sk);
    }
    vstore(a.y + row * a.ldy + e0, y * gate[j]);
    tile_to_state(tile, W, N, st);
  }
}
static void step_groups16(const ScanArgs& a, int si, int g0, int g1) {
  for (int g = g0; g < g1; g += kG) step_block16(a, si, g, g + kG < g1 ? g + kG : g1);
}
#endif

void scan_slice(const ScanArgs& a, int begin, int end) {
  FlushDenormals ftz;
  const int full_end = a.E / W < end ? a.E / W : end;  // groups with all W lanes inside E
  for (int si = 0; si < a.nseq; si++) {
    int g = begin;
    if (a.N == 16 && a.seqs[si].T == 1 && g < full_end) {
      step_groups16(a, si, g, full_end);
      g = full_end;
    }
    for (; g < end; g++) {
      if (a.N == 16) scan_group<16>(a, g, si);
      else scan_group<0>(a, g, si);
    }
  }
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
