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

// The whole slice of sequence si in channel group g.
template <int NF>
static void scan_group(const ScanArgs& a, int g, int si) {
  const int E = a.E, N = NF > 0 ? NF : a.N;
  const int e0 = g * W;
  const int n = E - e0 < W ? E - e0 : W;
  const bool full = n == W;
  vf A[NF > 0 ? NF : kMaxState];
  for (int k = 0; k < N; k++) A[k] = vload_n(a.AT + (size_t)k * E + e0, n);
  const vf Dv = vload_n(a.D + e0, n);
  vf s[NF > 0 ? NF : kMaxState];
  const SeqSlice& sq = a.seqs[si];
  float tile[kMaxState * W];
  state_to_tile(sq.ssm + (size_t)e0 * N, n, N, tile);
  for (int k = 0; k < N; k++) s[k] = vload(tile + k * W);
  for (int t = 0; t < sq.T; t++) {
    const size_t row = (size_t)(sq.row0 + t);
    float* dtp = a.dt + row * a.lddt + e0;
    const float* xp = a.x + row * a.ldx + e0;
    const float* zp = a.z + row * a.ldz + e0;
    const float* Bp = a.B + row * a.ldbc;
    const float* Cp = a.C + row * a.ldbc;
    if (t + kAhead < sq.T) {
      __builtin_prefetch(dtp + (size_t)kAhead * a.lddt, 1);
      __builtin_prefetch(xp + (size_t)kAhead * a.ldx);
      __builtin_prefetch(zp + (size_t)kAhead * a.ldz);
      __builtin_prefetch(Bp + (size_t)kAhead * a.ldbc);
      __builtin_prefetch(a.y + (row + kAhead) * a.ldy + e0, 1);
    }
    vf dt = vsoftplus(full ? vload(dtp) : vload_n(dtp, n));
    if (full) vstore(dtp, dt);
    else vstore_n(dtp, dt, n);
    vf x = full ? vload(xp) : vload_n(xp, n);
    vf dtx = dt * x;
    vf y = Dv * x;
#pragma GCC unroll 16
    for (int k = 0; k < N; k++) {
      s[k] = vexp(dt * A[k]) * s[k] + dtx * Bp[k];
      y += s[k] * Cp[k];
    }
    vf z = full ? vload(zp) : vload_n(zp, n);
    y *= vsilu(z);
    float* yp = a.y + row * a.ldy + e0;
    if (full) vstore(yp, y);
    else vstore_n(yp, y, n);
  }
  for (int k = 0; k < N; k++) vstore(tile + k * W, s[k]);
  tile_to_state(tile, n, N, sq.ssm + (size_t)e0 * N);
}

// One step (a decode token) of kG channel groups of one sequence, N = 16, in two phases: first
// what does not depend on the state for all kG groups (softplus, dt x, D x, the gate and the 16
// decays per group, most of the arithmetic), then the recurrence and y per group. A single step
// of one group is a ~300-cycle dependency chain (softplus -> exp -> state -> the sum over n ->
// gate) of ~400 instructions, more than the out-of-order window holds, so group after group ran
// at its latency; phase 1 gives the core kG independent chains. The same operations as
// scan_group, but the compiler contracts them into FMAs differently, so results can differ from
// it in the last bits (~1e-6 relative on the logits of a 24-layer model).
constexpr int kG = 4;
static void step_groups16(const ScanArgs& a, int si, int g0, int g1) {
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

void scan_slice(const ScanArgs& a, int begin, int end) {
  FlushDenormals ftz;
  const int full_end = a.E / W < end ? a.E / W : end;  // groups with all W lanes inside E
  for (int si = 0; si < a.nseq; si++) {
    int g = begin;
    if (a.N == 16 && a.seqs[si].T == 1)
      while (g < full_end) {
        const int ge = g + kG < full_end ? g + kG : full_end;
        step_groups16(a, si, g, ge);
        g = ge;
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
