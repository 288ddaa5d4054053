// selective_scan.cu — the Mamba-1 selective scan, softplus, D skip and SiLU(z) gate fused:
//   dt[t,e] = softplus(dt_raw[t,e])                   (written back when write_dt: the Simba score reads it)
//   s[e,n]  = exp(dt[t,e] A[e,n]) s[e,n] + dt[t,e] B[t,n] x[t,e]
//   y[t,e]  = (sum_n C[t,n] s[e,n] + D[e] x[t,e]) * silu(z[t,e])
// continuing from, and writing back, each sequence's SSM state [E, N] (so decode and continued
// prefill share the code).
//
// scan_chunked (T > kShortT): a chunked parallel scan over time. One block per (32-channel group,
// sequence): lane = channel (token-major rows: every load is 128 coalesced bytes), warp = time
// segment. The sequence is walked in tiles of kTile = kWarps * kSteps steps; in a tile, warp w owns
// steps [w kSteps, (w+1) kSteps) and holds their dt, dt x and y in registers. For each state n:
//   1. every lane composes its kSteps pairs (a, b) = (exp(dt A), dt B x) with
//      (a1, b1) o (a0, b0) = (a1 a0, a1 b0 + b1), keeping the a's in registers;
//   2. the pairs of the warps before it (shared memory) and the tile's carry-in state give the
//      state entering its segment;
//   3. it replays its steps from that state (one FMA each, no second exp) and adds C s to y.
// The last warp's final state is the next tile's carry (ping-pong buffers: one barrier per n).
// B and C rows of the tile are staged in shared memory. exp is evaluated once per (t, e, n).
//
// scan_short (T <= kShortT, i.e. decode): one thread per (sequence, channel), time sequential,
// the state read and written in place in device memory (it stays in L1/L2 over the few steps).
#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kSteps = 16;
constexpr int kTile = kWarps * kSteps;
constexpr int kShortT = 4;

size_t chunked_smem_bytes(int N) {
  // Bs, Cs [kTile][N]; carry [2][N][32]; pairs [2][kWarps][32] float2
  return sizeof(float) * ((size_t)2 * kTile * N + (size_t)2 * N * 32) + sizeof(float2) * 2 * kWarps * 32;
}

__global__ __launch_bounds__(kWarps * 32) void scan_chunked(const ScanParams p) {
  SIMBA_DYN_SMEM(float, sm);
  const int N = p.N, E = p.E;
  float* Bs = sm;
  float* Cs = Bs + kTile * N;
  float* carry = Cs + kTile * N;                                  // [2][N][32]
  float2* pairs = reinterpret_cast<float2*>(carry + 2 * N * 32);  // [2][kWarps][32]
  const int lane = threadIdx.x, warp = threadIdx.y, tid = warp * 32 + lane;
  const int g0 = blockIdx.x * 32;
  const int e = g0 + lane;
  const bool ev = e < E;
  const int s = blockIdx.y;
  const SeqInfo sq = p.seqs[s];
  float* st = p.ssm.at(s);
  // Initial state -> carry[0][n][lane] (global reads coalesced along n).
  for (int i = tid; i < N * 32; i += kWarps * 32) {
    const int l = i / N, n = i % N;
    carry[n * 32 + l] = g0 + l < E ? st[(size_t)(g0 + l) * N + n] : 0.f;
  }
  const float Dv = ev ? p.D[e] : 0.f;
  int par = 0, pb = 0;
  __syncthreads();
  for (int t0 = 0; t0 < sq.T; t0 += kTile) {
    for (int i = tid; i < kTile * N; i += kWarps * 32) {
      const int r = i / N, n = i % N, t = t0 + r;
      float b = 0.f, c = 0.f;
      if (t < sq.T) {
        const size_t row = (size_t)sq.row0 + t;
        b = p.B[row * p.ldbc + n];
        c = p.C[row * p.ldbc + n];
      }
      Bs[i] = b;
      Cs[i] = c;
    }
    float dt[kSteps], dtx[kSteps], y[kSteps];
#pragma unroll
    for (int i = 0; i < kSteps; i++) {
      const int t = t0 + warp * kSteps + i;
      float d = 0.f, x = 0.f;  // padding steps: a = 1, b = 0 (the identity)
      if (ev && t < sq.T) {
        const size_t row = (size_t)sq.row0 + t;
        d = softplus_f(p.dt[row * p.lddt + e]);
        x = p.x[row * p.ldx + e];
        if (p.write_dt) p.dt[row * p.lddt + e] = d;
      }
      dt[i] = d;
      dtx[i] = d * x;
      y[i] = Dv * x;
    }
    __syncthreads();  // Bs, Cs staged
    const float* Bw = Bs + warp * kSteps * N;
    const float* Cw = Cs + warp * kSteps * N;
    for (int n = 0; n < N; n++) {
      const float An = ev ? p.AT[(size_t)n * E + e] : 0.f;
      float a[kSteps];
      float ap = 1.f, bp = 0.f;
#pragma unroll
      for (int i = 0; i < kSteps; i++) {
        a[i] = exp_decay(dt[i] * An);
        bp = a[i] * bp + dtx[i] * Bw[i * N + n];
        ap *= a[i];
      }
      pairs[(pb * kWarps + warp) * 32 + lane] = make_float2(ap, bp);
      __syncthreads();
      float sv = carry[(par * N + n) * 32 + lane];
      for (int w = 0; w < warp; w++) {
        const float2 q = pairs[(pb * kWarps + w) * 32 + lane];
        sv = q.x * sv + q.y;
      }
#pragma unroll
      for (int i = 0; i < kSteps; i++) {
        sv = a[i] * sv + dtx[i] * Bw[i * N + n];
        y[i] += sv * Cw[i * N + n];
      }
      if (warp == kWarps - 1) carry[((par ^ 1) * N + n) * 32 + lane] = sv;
      pb ^= 1;
    }
#pragma unroll
    for (int i = 0; i < kSteps; i++) {
      const int t = t0 + warp * kSteps + i;
      if (ev && t < sq.T) {
        const size_t row = (size_t)sq.row0 + t;
        p.y[row * p.ldy + e] = y[i] * silu_f(p.z[row * p.ldz + e]);
      }
    }
    par ^= 1;
    __syncthreads();  // the tile's carry is complete; Bs, Cs free for the next tile
  }
  for (int i = tid; i < N * 32; i += kWarps * 32) {
    const int l = i / N, n = i % N;
    if (g0 + l < E) st[(size_t)(g0 + l) * N + n] = carry[(par * N + n) * 32 + l];
  }
}

constexpr int kShortThreads = 128;

__global__ __launch_bounds__(kShortThreads) void scan_short(const ScanParams p) {
  const int e = blockIdx.x * kShortThreads + threadIdx.x;
  if (e >= p.E) return;
  const int N = p.N, E = p.E;
  const SeqInfo sq = p.seqs[blockIdx.y];
  float* st = p.ssm.at(blockIdx.y) + (size_t)e * N;
  const float Dv = p.D[e];
  for (int t = 0; t < sq.T; t++) {
    const size_t row = (size_t)sq.row0 + t;
    const float d = softplus_f(p.dt[row * p.lddt + e]);
    if (p.write_dt) p.dt[row * p.lddt + e] = d;
    const float x = p.x[row * p.ldx + e];
    const float dtx = d * x;
    const float* Br = p.B + row * p.ldbc;
    const float* Cr = p.C + row * p.ldbc;
    float y = Dv * x;
    for (int n = 0; n < N; n++) {
      const float sv = exp_decay(d * p.AT[(size_t)n * E + e]) * st[n] + dtx * Br[n];
      st[n] = sv;
      y += sv * Cr[n];
    }
    p.y[row * p.ldy + e] = y * silu_f(p.z[row * p.ldz + e]);
  }
}

}  // namespace

void selective_scan(const ScanParams& p, cudaStream_t st) {
  if (p.nseq <= 0 || p.maxT <= 0) return;
  SIMBA_ASSERT(p.x && p.dt && p.B && p.C && p.z && p.AT && p.D && p.y && p.ssm.base && p.seqs && p.E > 0 && p.N >= 1);
  SIMBA_ASSERT(p.ldx >= p.E && p.lddt >= p.E && p.ldz >= p.E && p.ldy >= p.E && p.ldbc >= p.N);
  if (p.maxT <= kShortT) {
    SIMBA_LAUNCH(dim3(ceil_div(p.E, kShortThreads), p.nseq), kShortThreads, 0, st, scan_short)(p);
    check_launch("scan_short");
    return;
  }
  const size_t smem = chunked_smem_bytes(p.N);
  int dev = 0, optin = 0;
  check(cudaGetDevice(&dev), "selective scan: cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
        "selective scan: device attribute");
  if (smem > (size_t)optin) {  // a very large d_state on a smaller part: the sequential kernel works for any T
    SIMBA_LAUNCH(dim3(ceil_div(p.E, kShortThreads), p.nseq), kShortThreads, 0, st, scan_short)(p);
    check_launch("scan_short");
    return;
  }
  if (smem > 48 * 1024) {
    check(cudaFuncSetAttribute(scan_chunked, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
          "selective scan: raising the shared-memory limit");
  }
  SIMBA_LAUNCH(dim3(ceil_div(p.E, 32), p.nseq), dim3(32, kWarps), smem, st, scan_chunked)(p);
  check_launch("scan_chunked");
}

}  // namespace cuda
}  // namespace simba
