// simba_score.cu — per-token pruning scores: how much each token contributes to the layer's last
// output (Simba), or the 'local' / 'norm' / 'uniform' / 'random' criteria (CPU: native/cpu/simba_score.cc).
//
// simba: contribution of token t to the layer's last output, channel e:
//   c(t,e) = dt(t,e) x(t,e) sum_n Q_t(e,n) B(t,n),   Q_t(e,n) = C(T,n) prod_{k>t} exp(dt(k,e) A(e,n))
// Q is a reverse cumulative product, computed like the forward scan but walking the sequence from
// its end: one block per (32-channel group, sequence), lane = channel, warp = time segment of a
// tile. Per state n each lane forms the product of its segment's a = exp(dt A) (kept in registers),
// takes the products of the warps *after* it and the tile's carry (C(T,n) times everything later),
// then walks its steps backwards: acc += Q B; Q *= a. Never a (T, E, N) buffer; O(E N) memory.
// The 32 lanes reduce |c| (max or sum) with shuffles into partial[group][row]; a second kernel
// reduces the groups in order (deterministic: no atomics).
// local:   c(t,e) = dt(t,e) x(t,e) sum_n C(t,n) B(t,n)   (one block per row)
// norm:    || out[row] ||_2 in float64                     (one block per row)
// uniform: ones at the evenly strided positions; random: splitmix of (seed, layer, seq, position).
#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kSteps = 16;
constexpr int kTile = kWarps * kSteps;

size_t score_smem_bytes(int N) {
  // Bs [kTile][N]; carry [2][N][32]; prods [2][kWarps][32]
  return sizeof(float) * ((size_t)kTile * N + (size_t)2 * N * 32 + (size_t)2 * kWarps * 32);
}

__global__ __launch_bounds__(kWarps * 32) void score_chunked(const ScoreParams p) {
  SIMBA_DYN_SMEM(float, sm);
  const int N = p.N, E = p.E;
  float* Bs = sm;                     // [kTile][N]
  float* carry = Bs + kTile * N;      // [2][N][32]
  float* prods = carry + 2 * N * 32;  // [2][kWarps][32]
  const int lane = threadIdx.x, warp = threadIdx.y, tid = warp * 32 + lane;
  const int e = blockIdx.x * 32 + lane;
  const bool ev = e < E;
  const SeqInfo sq = p.seqs[blockIdx.y];
  const size_t last = (size_t)sq.row0 + sq.T - 1;
  float* part = p.partial + (size_t)blockIdx.x * p.rows;
  for (int i = tid; i < N * 32; i += kWarps * 32) carry[i] = p.C[last * p.ldbc + i / 32];  // carry[0][n][l] = C(T, n)
  int par = 0, pb = 0;
  __syncthreads();
  const int ntiles = (sq.T + kTile - 1) / kTile;
  for (int j = 0; j < ntiles; j++) {
    const int tstart = sq.T - (j + 1) * kTile;  // may be negative in the first (earliest) tile
    for (int i = tid; i < kTile * N; i += kWarps * 32) {
      const int t = tstart + i / N;
      Bs[i] = t >= 0 ? p.B[((size_t)sq.row0 + t) * p.ldbc + i % N] : 0.f;
    }
    float dt[kSteps], xv[kSteps], acc[kSteps];
#pragma unroll
    for (int i = 0; i < kSteps; i++) {
      const int t = tstart + warp * kSteps + i;
      float d = 0.f, x = 0.f;  // padding steps: a = 1
      if (ev && t >= 0) {
        const size_t row = (size_t)sq.row0 + t;
        d = p.dt[row * p.lddt + e];
        x = p.x[row * p.ldx + e];
      }
      dt[i] = d;
      xv[i] = x;
      acc[i] = 0.f;
    }
    __syncthreads();  // Bs staged
    const float* Bw = Bs + warp * kSteps * N;
    for (int n = 0; n < N; n++) {
      const float An = ev ? p.AT[(size_t)n * E + e] : 0.f;
      float a[kSteps];
      float P = 1.f;
#pragma unroll
      for (int i = kSteps - 1; i >= 0; i--) {
        a[i] = exp_decay(dt[i] * An);
        P *= a[i];
      }
      prods[(pb * kWarps + warp) * 32 + lane] = P;
      __syncthreads();
      float q = carry[(par * N + n) * 32 + lane];
      for (int w = kWarps - 1; w > warp; w--) q *= prods[(pb * kWarps + w) * 32 + lane];
#pragma unroll
      for (int i = kSteps - 1; i >= 0; i--) {
        acc[i] += q * Bw[i * N + n];
        q *= a[i];
      }
      if (warp == 0) carry[((par ^ 1) * N + n) * 32 + lane] = q;
      pb ^= 1;
    }
#pragma unroll
    for (int i = 0; i < kSteps; i++) {
      const int t = tstart + warp * kSteps + i;  // uniform across the warp
      const float c = ev ? fabsf(dt[i] * xv[i] * acc[i]) : 0.f;
      const float v = warp_reduce(c, p.reduce_sum);
      if (lane == 0 && t >= 0) part[(size_t)sq.row0 + t] = v;
    }
    par ^= 1;
    __syncthreads();
  }
}

// score[row] = reduce over groups g (in order) of partial[g][row].
__global__ void reduce_groups(const float* __restrict__ partial, int groups, int rows, bool sum,
                              float* __restrict__ score) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float v = 0.f;
  for (int g = 0; g < groups; g++) {
    const float u = partial[(size_t)g * rows + r];
    v = sum ? v + u : (u > v ? u : v);
  }
  score[r] = v;
}

constexpr int kRowThreads = 128;

__device__ __forceinline__ float block_reduce(float v, bool sum, float* red) {
  v = warp_reduce(v, sum);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = 0.f;
  for (int i = 0; i < kRowThreads / 32; i++) r = sum ? r + red[i] : fmaxf(r, red[i]);
  return r;
}

// local: one block per row.
__global__ __launch_bounds__(kRowThreads) void local_score(const ScoreParams p) {
  const size_t row = blockIdx.x;
  __shared__ float cbs;
  __shared__ float red[kRowThreads / 32];
  if (threadIdx.x == 0) {  // sequential, in the CPU's order
    float cb = 0.f;
    for (int n = 0; n < p.N; n++) cb += p.C[row * p.ldbc + n] * p.B[row * p.ldbc + n];
    cbs = cb;
  }
  __syncthreads();
  const float cb = cbs;
  float v = 0.f;
  for (int e = threadIdx.x; e < p.E; e += kRowThreads) {
    const float c = fabsf(p.dt[row * p.lddt + e] * p.x[row * p.ldx + e] * cb);
    v = p.reduce_sum ? v + c : fmaxf(v, c);
  }
  v = block_reduce(v, p.reduce_sum, red);
  if (threadIdx.x == 0) p.score[row] = v;
}

__global__ __launch_bounds__(kRowThreads) void norm_kernel(const float* __restrict__ out, int d,
                                                           float* __restrict__ score) {
  const size_t row = blockIdx.x;
  __shared__ double red[kRowThreads / 32];
  double ss = 0;
  for (int k = threadIdx.x; k < d; k += kRowThreads) {
    const double v = out[row * d + k];
    ss += v * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int i = 0; i < kRowThreads / 32; i++) t += red[i];
    score[row] = (float)sqrt(t);
  }
}

__global__ void uniform_kernel(const SeqInfo* __restrict__ seqs, float* __restrict__ score) {
  const SeqInfo sq = seqs[blockIdx.y];
  const int T = sq.T, k = max(1, min(T, sq.k));
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= T || i >= k) return;
  const int pos = (int)(((int64_t)2 * (i + 1) * T + k) / (2 * k)) - 1;  // round((i+1) T / k) - 1
  score[(size_t)sq.row0 + pos] = 1.f;
}

__device__ __forceinline__ uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__global__ void random_kernel(const SeqInfo* __restrict__ seqs, const int* __restrict__ orig, uint64_t seed, int layer,
                              float* __restrict__ score) {
  const int s = blockIdx.y;
  const SeqInfo sq = seqs[s];
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= sq.T) return;
  const size_t row = (size_t)sq.row0 + t;
  const uint64_t h = splitmix(((uint64_t)layer << 40) ^ ((uint64_t)s << 20) ^ (uint64_t)orig[row]);
  score[row] = (float)(splitmix(seed ^ h) >> 40);
}

}  // namespace

void simba_score(const ScoreParams& p, cudaStream_t st) {
  if (p.rows <= 0) return;
  SIMBA_ASSERT(p.x && p.dt && p.B && p.C && p.score && p.seqs && p.nseq >= 1 && p.E > 0 && p.N >= 1);
  SIMBA_ASSERT(p.local || (p.AT && p.partial));
  SIMBA_ASSERT(p.ldx >= p.E && p.lddt >= p.E && p.ldbc >= p.N);
  if (p.local) {
    SIMBA_LAUNCH(p.rows, kRowThreads, 0, st, local_score)(p);
    check_launch("local_score");
    return;
  }
  const size_t smem = score_smem_bytes(p.N);
  if (smem > 48 * 1024) {
    check(cudaFuncSetAttribute(score_chunked, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
          "simba score: raising the shared-memory limit");
  }
  const int groups = ceil_div(p.E, 32);
  SIMBA_LAUNCH(dim3(groups, p.nseq), dim3(32, kWarps), smem, st, score_chunked)(p);
  check_launch("score_chunked");
  SIMBA_LAUNCH(ceil_div(p.rows, 256), 256, 0, st, reduce_groups)(p.partial, groups, p.rows, p.reduce_sum, p.score);
  check_launch("score_reduce");
}

void norm_score(const float* out, int d, int rows, float* score, cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_LAUNCH(rows, kRowThreads, 0, st, norm_kernel)(out, d, score);
  check_launch("norm_score");
}

void uniform_score(const SeqInfo* seqs, int nseq, int maxK, int rows, float* score, cudaStream_t st) {
  if (rows <= 0 || nseq <= 0) return;
  check(cudaMemsetAsync(score, 0, sizeof(float) * rows, st), "uniform score: clearing");
  if (maxK <= 0) return;
  SIMBA_LAUNCH(dim3(ceil_div(maxK, 128), nseq), 128, 0, st, uniform_kernel)(seqs, score);
  check_launch("uniform_score");
}

void random_score(const SeqInfo* seqs, int nseq, int maxT, const int* orig, uint64_t seed, int layer, float* score,
                  cudaStream_t st) {
  if (nseq <= 0 || maxT <= 0) return;
  SIMBA_LAUNCH(dim3(ceil_div(maxT, 128), nseq), 128, 0, st, random_kernel)(seqs, orig, seed, layer, score);
  check_launch("random_score");
}

}  // namespace cuda
}  // namespace simba
