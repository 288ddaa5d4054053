// ssd_scan.cu — Mamba-2's SSD scan on the device, the twin of native/cpu/ssd_scan.cc (whose header
// comment has the chunked form's math):
//   ssd_dt     dt[t,h] = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max), in place, one
//              thread per (row, head); the scan and the Simba score read it.
//   ssd_chunk  one block per (channel tile, head, sequence) walks its sequence in chunks of q tokens,
//              the tile's state rows s[p, :] in shared memory. With cum_i = a_0 + ... + a_i (a_t = dt_t A_h,
//              the log decay of step t) a chunk is four phases, a barrier between each:
//     1. stage B, C (the head's group) and x (the tile's channels) of the chunk; cum by one thread
//        (sequential, in the CPU's order);
//     2. W[i][j] = (C_i . B_j) exp(cum_i - cum_j) dt_j for j <= i: the (C B^T o decay) matrix, one
//        thread per (i, j); and the decays exp(cum_i), exp(cum_{q-1} - cum_j) dt_j;
//     3. y_i[p] = D x_i[p] + sum_{j <= i} W[i][j] x_j[p] + exp(cum_i) C_i . s[p, :], one thread per (i, p);
//     4. s[p, n] = exp(cum_{q-1}) s[p, n] + sum_j exp(cum_{q-1} - cum_j) dt_j x_j[p] B_j[n], one thread
//        per (p, n): the state passed to the next chunk.
// A decode step is a chunk of one token (q = 1), many sequences in one launch. Shared rows of B, C
// and s have an odd stride, so a warp reading a column touches 32 banks.
#include <algorithm>

#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 64;  // tokens per chunk at most
constexpr int kTile = 64;   // channels of a head per block at most

// Shared floats of one block: B, C [q][ldn]; x [q][pt]; s [pt][ldn]; W [q][q]; dt, cum, dec, wst [q].
size_t chunk_smem_floats(int q, int pt, int N) {
  const size_t ldn = N | 1;
  return 2 * (size_t)q * ldn + (size_t)q * pt + (size_t)pt * ldn + (size_t)q * q + 4 * (size_t)q;
}

__global__ void dt_kernel(float* __restrict__ dt, int lddt, const float* __restrict__ bias, size_t rows, int H,
                          float lo, float hi) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * H) return;
  const int h = (int)(i % H);
  float* d = dt + (i / H) * lddt + h;
  *d = fminf(fmaxf(softplus_f(*d + bias[h]), lo), hi);
}

__global__ __launch_bounds__(kThreads) void ssd_chunk(const SsdParams p, int Q, int PT) {
  SIMBA_DYN_SMEM(float, sm);
  const int N = p.N, ldn = N | 1, tid = threadIdx.x;
  const int h = blockIdx.y, p0 = blockIdx.x * PT, pt = min(PT, p.P - p0);
  const int g = h / (p.H / p.G);
  const SeqInfo sq = p.seqs[blockIdx.z];
  float* Bs = sm;
  float* Cs = Bs + Q * ldn;
  float* xs = Cs + Q * ldn;
  float* ss = xs + Q * PT;
  float* W = ss + PT * ldn;
  float* dts = W + Q * Q;
  float* cum = dts + Q;
  float* dec = cum + Q;
  float* wst = dec + Q;
  float* st = p.ssm.at(blockIdx.z) + ((size_t)h * p.P + p0) * N;  // the tile's rows, contiguous
  for (int i = tid; i < pt * N; i += kThreads) ss[(i / N) * ldn + i % N] = st[i];
  const float Ah = p.A[h], Dh = p.D[h];
  for (int c0 = 0; c0 < sq.T; c0 += Q) {
    const int q = min(Q, sq.T - c0);
    const size_t r0 = (size_t)sq.row0 + c0;
    // 1. stage
    for (int i = tid; i < q * N; i += kThreads) {
      const int t = i / N, n = i % N;
      const size_t o = (r0 + t) * p.ldbc + (size_t)g * N + n;
      Bs[t * ldn + n] = p.B[o];
      Cs[t * ldn + n] = p.C[o];
    }
    for (int i = tid; i < q * pt; i += kThreads) {
      const int t = i / pt, c = i % pt;
      xs[t * PT + c] = p.x[(r0 + t) * p.ldx + (size_t)h * p.P + p0 + c];
    }
    for (int i = tid; i < q; i += kThreads) dts[i] = p.dt[(r0 + i) * p.lddt + h];
    __syncthreads();
    if (tid == 0) {
      float a = 0.f;
      for (int i = 0; i < q; i++) {
        a += dts[i] * Ah;
        cum[i] = a;
      }
    }
    __syncthreads();
    // 2. the intra-chunk matrix and the decays
    for (int k = tid; k < q * q; k += kThreads) {
      const int i = k / q, j = k % q;
      float w = 0.f;
      if (j <= i) {
        float cb = 0.f;
        for (int n = 0; n < N; n++) cb += Cs[i * ldn + n] * Bs[j * ldn + n];
        w = cb * exp_decay(cum[i] - cum[j]) * dts[j];
      }
      W[k] = w;
    }
    for (int j = tid; j < q; j += kThreads) {
      dec[j] = exp_decay(cum[j]);
      wst[j] = exp_decay(cum[q - 1] - cum[j]) * dts[j];
    }
    __syncthreads();
    // 3. outputs: the chunk's own tokens, then the incoming state decayed to each
    for (int k = tid; k < q * pt; k += kThreads) {
      const int i = k / pt, c = k % pt;
      float acc = Dh * xs[i * PT + c];
      for (int j = 0; j <= i; j++) acc += W[i * q + j] * xs[j * PT + c];
      float cs = 0.f;
      for (int n = 0; n < N; n++) cs += Cs[i * ldn + n] * ss[c * ldn + n];
      p.y[(r0 + i) * p.ldy + (size_t)h * p.P + p0 + c] = acc + dec[i] * cs;
    }
    __syncthreads();
    // 4. the state passed on
    const float total = dec[q - 1];
    for (int k = tid; k < pt * N; k += kThreads) {
      const int c = k / N, n = k % N;
      float v = total * ss[c * ldn + n];
      for (int j = 0; j < q; j++) v += wst[j] * xs[j * PT + c] * Bs[j * ldn + n];
      ss[c * ldn + n] = v;
    }
    __syncthreads();
  }
  for (int i = tid; i < pt * N; i += kThreads) st[i] = ss[(i / N) * ldn + i % N];
}

}  // namespace

void ssd_dt(float* dt, int lddt, const float* dt_bias, int rows, int H, float dt_min, float dt_max, cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_ASSERT(dt && dt_bias && H > 0 && lddt >= H);
  const size_t n = (size_t)rows * H;
  SIMBA_LAUNCH((unsigned)((n + 255) / 256), 256, 0, st, dt_kernel)(dt, lddt, dt_bias, (size_t)rows, H, dt_min, dt_max);
  check_launch("ssd_dt");
}

void ssd_scan(const SsdParams& p, cudaStream_t st) {
  if (p.nseq <= 0 || p.maxT <= 0) return;
  SIMBA_ASSERT(p.x && p.B && p.C && p.dt && p.A && p.D && p.y && p.ssm.base && p.seqs && p.H > 0 && p.P > 0 &&
               p.G > 0 && p.H % p.G == 0 && p.N >= 1);
  SIMBA_ASSERT(p.ldx >= p.H * p.P && p.ldy >= p.H * p.P && p.ldbc >= p.G * p.N && p.lddt >= p.H);
  // The largest chunk and channel tile whose buffers fit the block's shared memory (q = 1, pt = 1
  // always fit: N <= kMaxState). A decode step (maxT 1) reserves one token's rows only.
  int dev = 0, optin = 0;
  check(cudaGetDevice(&dev), "ssd scan: cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "ssd scan: device attribute");
  int Q = std::min(kChunk, p.maxT), PT = std::min(kTile, p.P);
  while (chunk_smem_floats(Q, PT, p.N) * 4 > (size_t)optin && (Q > 1 || PT > 1)) {
    if (Q > 16 || PT == 1) Q = (Q + 1) / 2;
    else PT = (PT + 1) / 2;
  }
  const size_t smem = chunk_smem_floats(Q, PT, p.N) * 4;
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(ssd_chunk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
          "ssd scan: raising the shared-memory limit");
  SIMBA_LAUNCH(dim3(ceil_div(p.P, PT), p.H, p.nseq), kThreads, smem, st, ssd_chunk)(p, Q, PT);
  check_launch("ssd_scan");
}

}  // namespace cuda
}  // namespace simba
