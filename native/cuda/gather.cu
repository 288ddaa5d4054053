// gather.cu — row movement on the device: embedding gather, Simba's per-sequence top-k selection,
// and the compaction of the residual stream after a pruning layer (dropped tokens exit there).
#ifndef SIMBA_EMU
#include <cub/block/block_scan.cuh>
#endif

#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

__global__ void embed_kernel(const int32_t* __restrict__ tokens, const void* __restrict__ W, bool bf16, int d,
                             float* __restrict__ h) {
  const size_t t = blockIdx.x;
  const size_t src = (size_t)tokens[t] * d;
  for (int k = threadIdx.x; k < d; k += blockDim.x) {
    h[t * d + k] = bf16 ? __uint_as_float((uint32_t) static_cast<const uint16_t*>(W)[src + k] << 16)
                        : static_cast<const float*>(W)[src + k];
  }
}

// Float bits mapped to an unsigned key with the same order (-0 is folded into +0 first).
__device__ __forceinline__ uint32_t order_key(float v) {
  if (v == 0.f) v = 0.f;
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

constexpr int kSelThreads = 512;

// One block per sequence. must(t): the last token and the protected first / last ones. When k < T,
// the rest of the k slots go to the highest scores, ties to the earlier position (the CPU's stable
// sort): find the need-th largest key tau among the unprotected tokens bit by bit (32 block-wide
// counts), keep every key > tau and the earliest (need - count(> tau)) keys == tau. Then a block scan
// over the keep flags, in position order, gives each kept token its new row.
__global__ __launch_bounds__(kSelThreads) void select_kernel(const float* __restrict__ score,
                                                             const SeqInfo* __restrict__ seqs, int pf, int pl,
                                                             int* __restrict__ dest) {
  using Scan = cub::BlockScan<int, kSelThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ unsigned int cnt;
  const SeqInfo sq = seqs[blockIdx.x];
  const int T = sq.T, k = max(1, min(T, sq.k));
  const int tid = threadIdx.x;
  if (k >= T) {  // nothing dropped in this sequence
    for (int t = tid; t < T; t += kSelThreads) dest[sq.row0 + t] = sq.nrow0 + t;
    return;
  }
  const int pfc = min(max(pf, 0), T), tail = max(0, T - max(pl, 0));
  auto must = [&](int t) { return t == T - 1 || t < pfc || t >= tail; };
  auto block_count = [&](unsigned int local) {
    __syncthreads();
    if (tid == 0) cnt = 0;
    __syncthreads();
    if (local) atomicAdd(&cnt, local);
    __syncthreads();
    return cnt;
  };
  unsigned int c = 0;
  for (int t = tid; t < T; t += kSelThreads) c += must(t);
  const int n_must = (int)block_count(c);
  const int need = k - n_must;
  uint32_t tau = 0xffffffffu;  // keeps nothing beyond the protected tokens when need <= 0
  int ties = 0;
  if (need > 0) {
    tau = 0;
    for (int bit = 31; bit >= 0; bit--) {
      const uint32_t cand = tau | (1u << bit);
      c = 0;
      for (int t = tid; t < T; t += kSelThreads) c += !must(t) && order_key(score[sq.row0 + t]) >= cand;
      if ((int)block_count(c) >= need) tau = cand;
    }
    c = 0;
    for (int t = tid; t < T; t += kSelThreads) c += !must(t) && order_key(score[sq.row0 + t]) > tau;
    ties = need - (int)block_count(c);  // >= 1: count(>= tau) >= need > count(> tau)
  }
  int eq_run = 0, keep_run = 0;
  for (int base = 0; base < T; base += kSelThreads) {
    const int t = base + tid;
    bool m = false, gt = false, eq = false;
    if (t < T) {
      m = must(t);
      if (!m && need > 0) {
        const uint32_t key = order_key(score[sq.row0 + t]);
        gt = key > tau;
        eq = key == tau;
      }
    }
    int eq_pos, eq_tot;
    __syncthreads();
    Scan(scan_tmp).ExclusiveSum(eq ? 1 : 0, eq_pos, eq_tot);
    const bool keep = t < T && (m || gt || (eq && eq_run + eq_pos < ties));
    int k_pos, k_tot;
    __syncthreads();
    Scan(scan_tmp).ExclusiveSum(keep ? 1 : 0, k_pos, k_tot);
    if (t < T) dest[sq.row0 + t] = keep ? sq.nrow0 + keep_run + k_pos : -1;
    eq_run += eq_tot;
    keep_run += k_tot;
  }
}

constexpr int kRowThreads = 128;

__global__ __launch_bounds__(kRowThreads) void compact_kernel(const float* __restrict__ h, const int* __restrict__ orig,
                                                              const int* __restrict__ dest, int d,
                                                              float* __restrict__ h2, int* __restrict__ orig2,
                                                              int32_t* __restrict__ exit_layer,
                                                              const int* __restrict__ want_slot,
                                                              float* __restrict__ fin, int layer) {
  const size_t row = blockIdx.x;
  const int o = orig[row], to = dest[row];
  float* dst = nullptr;
  if (to >= 0) {
    dst = h2 + (size_t)to * d;
    if (threadIdx.x == 0) orig2[to] = o;
  } else {
    if (threadIdx.x == 0) exit_layer[o] = layer + 1;
    const int slot = want_slot[o];
    if (slot >= 0) dst = fin + (size_t)slot * d;
  }
  if (!dst) return;
  for (int i = threadIdx.x; i < d; i += kRowThreads) dst[i] = h[row * d + i];
}

__global__ __launch_bounds__(kRowThreads) void final_kernel(const float* __restrict__ h, const int* __restrict__ orig,
                                                            int d, const int* __restrict__ want_slot,
                                                            float* __restrict__ fin) {
  const size_t row = blockIdx.x;
  const int slot = want_slot[orig[row]];
  if (slot < 0) return;
  for (int i = threadIdx.x; i < d; i += kRowThreads) fin[(size_t)slot * d + i] = h[row * d + i];
}

__global__ void iota_kernel(int* v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] = i;
}
__global__ void fill_kernel(int32_t* v, int n, int32_t value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] = value;
}

}  // namespace

void embed_gather(const int32_t* tokens, int n, const DevLinear& emb, float* h, cudaStream_t st) {
  if (n <= 0) return;
  SIMBA_LAUNCH(n, 256, 0, st, embed_kernel)(tokens, emb.w, emb.bf16, emb.K, h);
  check_launch("embed_gather");
}

void select_keep(const float* score, const SeqInfo* seqs, int nseq, int protect_first, int protect_last, int* dest,
                 cudaStream_t st) {
  if (nseq <= 0) return;
  SIMBA_LAUNCH(nseq, kSelThreads, 0, st, select_kernel)(score, seqs, protect_first, protect_last, dest);
  check_launch("select_keep");
}

void compact_rows(const float* h, const int* orig, const int* dest, int rows, int d, float* h2, int* orig2,
                  int32_t* exit_layer, const int* want_slot, float* fin, int layer, cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_LAUNCH(rows, kRowThreads, 0, st, compact_kernel)
  (h, orig, dest, d, h2, orig2, exit_layer, want_slot, fin, layer);
  check_launch("compact_rows");
}

void gather_final(const float* h, const int* orig, int rows, int d, const int* want_slot, float* fin, cudaStream_t st) {
  if (rows <= 0) return;
  SIMBA_LAUNCH(rows, kRowThreads, 0, st, final_kernel)(h, orig, d, want_slot, fin);
  check_launch("gather_final");
}

void iota(int* v, int n, cudaStream_t st) {
  if (n <= 0) return;
  SIMBA_LAUNCH(ceil_div(n, 256), 256, 0, st, iota_kernel)(v, n);
  check_launch("iota");
}

void fill(int32_t* v, int n, int32_t value, cudaStream_t st) {
  if (n <= 0) return;
  SIMBA_LAUNCH(ceil_div(n, 256), 256, 0, st, fill_kernel)(v, n, value);
  check_launch("fill");
}

}  // namespace cuda
}  // namespace simba
