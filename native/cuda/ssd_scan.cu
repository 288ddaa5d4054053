// ssd_scan.cu — Mamba-2's SSD scan on the device, the twin of native/cpu/ssd_scan.cc (whose header
// comment has the chunked form's math):
//   ssd_dt     dt[t,h] = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max), in place, one
//              thread per (row, head); the scan and the Simba score read it.
//   ssd_chunk  one block per (channel tile, head, sequence) and, in the chunk-parallel form, chunk: a
//              chunk of q tokens with the tile's state rows s[p, :] in shared memory. With cum_i =
//              a_0 + ... + a_i (a_t = dt_t A_h, the log decay of step t) a chunk is four phases, a
//              barrier between each:
//     1. stage B, C (the head's group) and x (the tile's channels) of the chunk; cum by one thread
//        (sequential, in the CPU's order);
//     2. W[i][j] = (C_i . B_j) exp(cum_i - cum_j) dt_j for j <= i: the (C B^T o decay) matrix, one
//        thread per (i, j); and the decays exp(cum_i), exp(cum_{q-1} - cum_j) dt_j;
//     3. y_i[p] = D x_i[p] + sum_{j <= i} W[i][j] x_j[p] + exp(cum_i) C_i . s[p, :], one thread per (i, p);
//     4. s[p, n] = exp(cum_{q-1}) s[p, n] + sum_j exp(cum_{q-1} - cum_j) dt_j x_j[p] B_j[n], one thread
//        per (p, n): the state passed to the next chunk.
// Two ways through a sequence:
//   sequential      (decode, prompts of one chunk, and where the caller gave no chunk buffer) one block
//                   walks every chunk of its sequence, phases 1-4 each, the state from and back to the
//                   SSM state;
//   chunk-parallel  (a prompt of more than one chunk, when the caller gave the chunk buffer) three
//                   launches: [local] every chunk at once, phases 1, 2 (decays only) and 4 from a zero
//                   state: its own contribution to the state passed on, and its total decay, to the
//                   chunk buffer; [pass] one thread per (sequence, head, state entry) walks the chunks in
//                   order, s_in(c+1) = total(c) s_in(c) + local(c), leaving each chunk's incoming state in
//                   the buffer and the last in the SSM state; [outputs] every chunk at once, phases 1-3
//                   from its incoming state.
// Shared rows of B, C and s have an odd stride, so a warp reading a column touches 32 banks.
#include <algorithm>

#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTile = 64;  // channels of a head per block at most

// What one launch of ssd_chunk does.
enum class Pass : int {
  kSequential,  // every chunk of the sequence, from and back to the SSM state
  kLocal,       // one chunk from a zero state: its state contribution and total decay to the chunk buffer
  kOutputs,     // one chunk's outputs from its incoming state in the chunk buffer
};

// Shared floats of one block: B, C [q][ldn]; x [q][pt]; s [pt][ldn]; W [q][q]; dt, cum, dec, wst [q].
size_t chunk_smem_floats(int q, int pt, int N) {
  const size_t ldn = N | 1;
  return 2 * (size_t)q * ldn + (size_t)q * pt + (size_t)pt * ldn + (size_t)q * q + 4 * (size_t)q;
}

// The chunk buffer's slot of chunk c of a sequence starting at row row0 (sequence s): distinct for
// every chunk of every sequence, below rows / Q + nseq (ssd_chunk_buffer_floats).
__host__ __device__ __forceinline__ size_t chunk_slot(const SeqInfo& sq, int s, int c, int Q) {
  return (size_t)(sq.row0 / Q) + s + c;
}

__global__ void dt_kernel(float* __restrict__ dt, int lddt, const float* __restrict__ bias, size_t rows, int H,
                          float lo, float hi) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * H) return;
  const int h = (int)(i % H);
  float* d = dt + (i / H) * lddt + h;
  *d = fminf(fmaxf(softplus_f(*d + bias[h]), lo), hi);
}

// Grid: (ptiles, H, nseq) for kSequential; (ptiles * chunks, H, nseq) otherwise. At least 2 blocks per
// SM (a 64-token chunk's shared memory allows no more): left to itself ptxas held sm_90 to 64
// registers and spilled.
__global__ __launch_bounds__(kThreads, 2) void ssd_chunk(const SsdParams p, int Q, int PT, Pass pass) {
  SIMBA_DYN_SMEM(float, sm);
  const int N = p.N, ldn = N | 1, tid = threadIdx.x;
  const int ptiles = (p.P + PT - 1) / PT, s = blockIdx.z, h = blockIdx.y;
  const int tile = blockIdx.x % ptiles, chunk = blockIdx.x / ptiles;
  const int p0 = tile * PT, pt = min(PT, p.P - p0);
  const int g = h / (p.H / p.G);
  const SeqInfo sq = p.seqs[s];
  const bool one_chunk = pass != Pass::kSequential;
  if (one_chunk && chunk * Q >= sq.T) return;  // the whole block: past this sequence's chunks
  float* Bs = sm;
  float* Cs = Bs + Q * ldn;
  float* xs = Cs + Q * ldn;
  float* ss = xs + Q * PT;
  float* W = ss + PT * ldn;
  float* dts = W + Q * Q;
  float* cum = dts + Q;
  float* dec = cum + Q;
  float* wst = dec + Q;
  const size_t slot = chunk_slot(sq, s, chunk, Q);
  const size_t HPN = (size_t)p.H * p.P * N, tile0 = ((size_t)h * p.P + p0) * N;  // the tile's rows, contiguous
  float* st = pass == Pass::kSequential ? p.ssm.at(s) + tile0 : p.chunk_states + slot * HPN + tile0;
  for (int i = tid; i < pt * N; i += kThreads) ss[(i / N) * ldn + i % N] = pass == Pass::kLocal ? 0.f : st[i];
  const float Ah = p.A[h], Dh = p.D[h];
  for (int c0 = one_chunk ? chunk * Q : 0; c0 < (one_chunk ? chunk * Q + 1 : sq.T); c0 += Q) {
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
    for (int k = tid; pass != Pass::kLocal && k < q * q; k += kThreads) {
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
    for (int k = tid; pass != Pass::kLocal && k < q * pt; k += kThreads) {
      const int i = k / pt, c = k % pt;
      float acc = Dh * xs[i * PT + c];
      for (int j = 0; j <= i; j++) acc += W[i * q + j] * xs[j * PT + c];
      float cs = 0.f;
      for (int n = 0; n < N; n++) cs += Cs[i * ldn + n] * ss[c * ldn + n];
      p.y[(r0 + i) * p.ldy + (size_t)h * p.P + p0 + c] = acc + dec[i] * cs;
    }
    if (pass == Pass::kOutputs) return;  // no barrier follows
    __syncthreads();
    // 4. the state passed on (kLocal: this chunk's part of it, and its total decay)
    const float total = dec[q - 1];
    for (int k = tid; k < pt * N; k += kThreads) {
      const int c = k / N, n = k % N;
      float v = total * ss[c * ldn + n];
      for (int j = 0; j < q; j++) v += wst[j] * xs[j * PT + c] * Bs[j * ldn + n];
      ss[c * ldn + n] = v;
    }
    if (pass == Pass::kLocal && tile == 0 && tid == 0) p.chunk_totals[slot * p.H + h] = total;
    __syncthreads();
  }
  for (int i = tid; i < pt * N; i += kThreads) st[i] = ss[(i / N) * ldn + i % N];
}

// Grid (ceil(P N / 256), H, nseq): each thread one entry of one head's state, through the chunks in order.
__global__ void pass_kernel(const SsdParams p, int Q) {
  const size_t PN = (size_t)p.P * p.N, e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= PN) return;
  const int h = blockIdx.y, s = blockIdx.z;
  const SeqInfo sq = p.seqs[s];
  const size_t HPN = (size_t)p.H * PN, off = h * PN + e;
  float* st = p.ssm.at(s) + off;
  float v = *st;
  for (int c = 0; c * Q < sq.T; c++) {
    const size_t slot = chunk_slot(sq, s, c, Q);
    float* b = p.chunk_states + slot * HPN + off;
    const float local = *b;
    *b = v;  // the state entering chunk c
    v = p.chunk_totals[slot * p.H + h] * v + local;
  }
  *st = v;
}

// The largest chunk (<= kSsdChunk, <= maxT) and channel tile whose buffers fit the device's shared memory
// per block (q = pt = 1 always fit: N <= kMaxState).
void chunk_shape(const SsdParams& p, int* Q, int* PT, size_t* smem) {
  int dev = 0, optin = 0;
  check(cudaGetDevice(&dev), "ssd scan: cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "ssd scan: device attribute");
  int q = std::min(kSsdChunk, p.maxT), pt = std::min(kTile, p.P);
  while (chunk_smem_floats(q, pt, p.N) * 4 > (size_t)optin && (q > 1 || pt > 1)) {
    if (q > 16 || pt == 1) q = (q + 1) / 2;
    else pt = (pt + 1) / 2;
  }
  *Q = q;
  *PT = pt;
  *smem = chunk_smem_floats(q, pt, p.N) * 4;
  if (*smem > 48 * 1024)
    check(cudaFuncSetAttribute(ssd_chunk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)*smem),
          "ssd scan: raising the shared-memory limit");
}

}  // namespace

void ssd_dt(float* dt, int lddt, const float* dt_bias, int rows, int H, float dt_min, float dt_max, cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_ASSERT(dt && dt_bias && H > 0 && lddt >= H);
  const size_t n = (size_t)rows * H;
  SIMBA_LAUNCH((unsigned)((n + 255) / 256), 256, 0, st, dt_kernel)(dt, lddt, dt_bias, (size_t)rows, H, dt_min, dt_max);
  check_launch("ssd_dt");
}

// Slots of the chunk buffer a scan of rows rows in nseq sequences may use (chunk_slot is below it).
static size_t chunk_slots(int rows, int nseq) { return (size_t)rows / kSsdChunk + nseq + 1; }

size_t ssd_chunk_buffer_floats(int rows, int nseq, int H, int P, int N) {
  return chunk_slots(rows, nseq) * ((size_t)H * P * N + H);
}

void ssd_scan(const SsdParams& p, cudaStream_t st) {
  if (p.nseq <= 0 || p.maxT <= 0) return;
  SIMBA_ASSERT(p.x && p.B && p.C && p.dt && p.A && p.D && p.y && p.ssm.base && p.seqs && p.H > 0 && p.P > 0 &&
               p.G > 0 && p.H % p.G == 0 && p.N >= 1);
  SIMBA_ASSERT(p.ldx >= p.H * p.P && p.ldy >= p.H * p.P && p.ldbc >= p.G * p.N && p.lddt >= p.H);
  int Q = 0, PT = 0;
  size_t smem = 0;
  chunk_shape(p, &Q, &PT, &smem);
  const int ptiles = ceil_div(p.P, PT), chunks = ceil_div(p.maxT, Q);
  // chunk-parallel where some sequence has several chunks and the buffer holds them (sized for kSsdChunk)
  if (chunks > 1 && Q == kSsdChunk && p.chunk_states &&
      p.chunk_floats >= ssd_chunk_buffer_floats(p.rows, p.nseq, p.H, p.P, p.N)) {
    SsdParams q = p;
    q.chunk_totals = p.chunk_states + chunk_slots(p.rows, p.nseq) * p.H * p.P * p.N;  // after the states
    const dim3 grid((unsigned)ptiles * chunks, p.H, p.nseq);
    SIMBA_LAUNCH(grid, kThreads, smem, st, ssd_chunk)(q, Q, PT, Pass::kLocal);
    check_launch("ssd_scan (chunk states)");
    SIMBA_LAUNCH(dim3(ceil_div(p.P * p.N, 256), p.H, p.nseq), 256, 0, st, pass_kernel)(q, Q);
    check_launch("ssd_scan (state passing)");
    SIMBA_LAUNCH(grid, kThreads, smem, st, ssd_chunk)(q, Q, PT, Pass::kOutputs);
    check_launch("ssd_scan (outputs)");
    return;
  }
  SIMBA_LAUNCH(dim3(ptiles, p.H, p.nseq), kThreads, smem, st, ssd_chunk)(p, Q, PT, Pass::kSequential);
  check_launch("ssd_scan");
}

}  // namespace cuda
}  // namespace simba
