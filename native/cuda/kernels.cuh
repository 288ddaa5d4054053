// kernels.cuh — host-side launchers of the CUDA kernels, one file per job:
//   gemm.cu            C = A W^T (+bias): bf16 tensor-core tiles, f32 tiles, skinny GEMV for small M
//   rmsnorm.cu         RMSNorm fused with the residual add; Falcon-Mamba's norms of dt_low, B, C; Mamba-2's gated norm
//   conv1d.cu          causal depthwise conv1d + bias + SiLU (prefill and the one-token update)
//   selective_scan.cu  chunked parallel selective scan (softplus, D skip, SiLU(z) gate fused)
//   simba_score.cu     Simba reverse-pass scores, 'local', 'norm', 'uniform', 'random' scores
//   ssd_scan.cu        Mamba-2: dt (softplus + bias + clamp) and the chunked SSD scan (prefill and decode)
//   simba_score_ssd.cu Mamba-2: Simba's 'simba' and 'local' scores
//   gather.cu          embedding gather, top-k selection per sequence, residual-stream compaction
// Every launcher enqueues on the given stream and checks the launch; none synchronises.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace simba {
namespace cuda {

// ---------------------------------------------------------------- gemm.cu
// A linear layer's weight on the device: W [N, K] row-major (checkpoint layout), f32 or bf16 bits;
// bias [N] f32 or null.
struct DevLinear {
  int N = 0, K = 0;
  bool bf16 = false;
  void* w = nullptr;
  float* bias = nullptr;
};
// C[M, N] (row stride ldc) = A[M, K] (row stride lda) W^T (+ bias), f32 accumulation.
void gemm(const float* A, int lda, const DevLinear& W, float* C, int ldc, int M, cudaStream_t st);

// ---------------------------------------------------------------- rmsnorm.cu
// Per row r < rows (width d, contiguous rows): h[r] += delta[r] (when delta), then
// y[r] = h[r] / sqrt(mean(h[r]^2) + eps) * w (when y).
void add_rmsnorm(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps, cudaStream_t st);
// Falcon-Mamba: per row of dbc [rows, R+2N], each of dt_low [0, R), B [R, R+N), C [R+N, R+2N)
// becomes v / sqrt(mean(v^2) + eps), in place (no weight).
void norm_dbc(float* dbc, int rows, int R, int N, float eps, cudaStream_t st);
// Mamba-2's gated RMSNorm per row of y [rows, E] (stride ldy) and per group of E / G channels, in place:
// v = y * silu(z); y = v / sqrt(mean_group(v^2) + eps) * w   (z [rows, E] at stride ldz, w [E]).
void gated_norm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int E, int G, float eps,
                cudaStream_t st);

// ---------------------------------------------------------------- conv1d.cu
// out[t, e] = silu(bias[e] + sum_{j<K} wT[j][e] * in[t - (K-1) + j, e]) per sequence, in[<0] from
// the conv state [E, K-1] (oldest first), which is then advanced to the sequence's last K-1 inputs.
void conv1d(const float* xin, int ldx, float* out, int ldo, const float* wT, const float* bias, int E, int K,
            const SeqInfo* seqs, int nseq, int maxT, StateRef conv, cudaStream_t st);

// ---------------------------------------------------------------- selective_scan.cu
// dt = softplus(dt_raw) (written back when write_dt); s = exp(dt A) s + dt B x;
// y = (sum_n C s + D x) * silu(z). The SSM state [E, N] of each sequence is read and written back.
struct ScanParams {
  const float* x;
  int ldx;
  float* dt;
  int lddt;
  const float* B;
  const float* C;
  int ldbc;
  const float* z;
  int ldz;
  const float* AT;  // [N][E], A = -exp(A_log)
  const float* D;   // [E]
  float* y;
  int ldy;
  int E, N;
  bool write_dt;
  StateRef ssm;
  const SeqInfo* seqs;
  int nseq;
  int maxT;
};
void selective_scan(const ScanParams& p, cudaStream_t st);

// ---------------------------------------------------------------- simba_score.cu
// score[row] for the rows [0, rows) covered by seqs; see native/cpu/simba_score.cc.
// dt is after softplus. partial: [ceil(E/32), rows] scratch.
struct ScoreParams {
  const float* x;
  int ldx;
  const float* dt;
  int lddt;
  const float* B;
  const float* C;
  int ldbc;
  const float* AT;
  int E, N;
  bool local, reduce_sum;
  const SeqInfo* seqs;
  int nseq;
  int maxT;
  int rows;
  float* partial;
  float* score;
};
void simba_score(const ScoreParams& p, cudaStream_t st);
// score[row] = || out[row, :d] ||_2 (float64 accumulation, as engine/prune.cc).
void norm_score(const float* out, int d, int rows, float* score, cudaStream_t st);
// 'uniform': 1 at the evenly strided positions round((i+1) T / k) - 1, i < k, else 0 (sequences with k < T).
void uniform_score(const SeqInfo* seqs, int nseq, int maxK, int rows, float* score, cudaStream_t st);
// 'random': splitmix(seed ^ splitmix(layer << 40 ^ s << 20 ^ orig[row])) >> 40, as engine/prune.cc.
void random_score(const SeqInfo* seqs, int nseq, int maxT, const int* orig, uint64_t seed, int layer, float* score,
                  cudaStream_t st);

// ---------------------------------------------------------------- ssd_scan.cu
// Mamba-2 (H heads of P channels, G groups of B and C: head h reads group h / (H / G)), per sequence:
//   dt[t,h]  = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max)   (ssd_dt, in place)
//   s[h,p,:] = exp(dt[t,h] A[h]) s[h,p,:] + dt[t,h] x[t,h,p] B[t,g(h),:]
//   y[t,h,p] = C[t,g(h),:] . s[h,p,:] + D[h] x[t,h,p]
// continuing from, and writing back, each sequence's SSM state [H, P, N] (ssm).
struct SsdParams {
  const float* x;
  int ldx;  // [.., H P] post-conv x
  const float* B;
  const float* C;
  int ldbc;  // [.., G N] post-conv B and C
  const float* dt;
  int lddt;        // [.., H] after ssd_dt
  const float* A;  // [H] A = -exp(A_log)
  const float* D;  // [H]
  float* y;
  int ldy;  // [.., H P] (before the gate)
  int H, P, G, N;
  StateRef ssm;
  const SeqInfo* seqs;
  int nseq;
  int maxT;
  int rows;  // rows covered by seqs
  // Device scratch of chunk_floats floats for the chunk-parallel prefill (each chunk's state and total
  // decay); with less than ssd_chunk_buffer_floats (or null) every sequence is scanned sequentially.
  float* chunk_states = nullptr;
  size_t chunk_floats = 0;
  float* chunk_totals = nullptr;  // set by ssd_scan inside chunk_states
};
// Tokens per chunk of the SSD scan at most (fewer where the device's shared memory is smaller).
constexpr int kSsdChunk = 64;
// dt[r, h] for rows r < rows (stride lddt), in place.
void ssd_dt(float* dt, int lddt, const float* dt_bias, int rows, int H, float dt_min, float dt_max, cudaStream_t st);
// Floats of SsdParams::chunk_states that let a scan of `rows` rows in `nseq` sequences run chunk-parallel.
size_t ssd_chunk_buffer_floats(int rows, int nseq, int H, int P, int N);
void ssd_scan(const SsdParams& p, cudaStream_t st);

// ---------------------------------------------------------------- simba_score_ssd.cu
// Mamba-2's Simba scores of the rows [0, rows) covered by seqs (native/cpu/simba_score_ssd.cc):
//   simba: c[t,h,p] = exp(A_h sum_{k>t} dt[k,h]) dt[t,h] x[t,h,p] (C[T,g(h)] . B[t,g(h)])
//   local: c[t,h,p] = dt[t,h] x[t,h,p] (C[t,g(h)] . B[t,g(h)])
// score[t] = max or sum over (h, p) of |c|. dt is ssd_dt's. decay: [rows, H] scratch (simba only).
struct SsdScoreParams {
  const float* x;
  int ldx;
  const float* dt;
  int lddt;
  const float* B;
  const float* C;
  int ldbc;
  const float* A;  // [H]
  int H, P, G, N;
  bool local, reduce_sum;
  const SeqInfo* seqs;
  int nseq;
  int maxT;
  int rows;
  float* decay;
  float* score;
};
void ssd_score(const SsdScoreParams& p, cudaStream_t st);

// ---------------------------------------------------------------- gather.cu
// h[t, :] = W[tokens[t], :] (the embedding, f32 or bf16).
void embed_gather(const int32_t* tokens, int n, const DevLinear& emb, float* h, cudaStream_t st);
// Per sequence: dest[row] = new row of a kept token (nrow0 + rank among kept) or -1 when dropped.
// Kept: the last token, the first protect_first and last protect_last tokens, then the highest
// scores (ties: earlier position first) until k are kept; all tokens when k >= T.
void select_keep(const float* score, const SeqInfo* seqs, int nseq, int protect_first, int protect_last, int* dest,
                 cudaStream_t st);
// Compaction: kept rows move to h2[dest] / orig2[dest]; dropped rows exit: exit_layer[orig] = layer
// + 1 and, when their position is wanted (want_slot[orig] >= 0), their row goes to fin[slot].
void compact_rows(const float* h, const int* orig, const int* dest, int rows, int d, float* h2, int* orig2,
                  int32_t* exit_layer, const int* want_slot, float* fin, int layer, cudaStream_t st);
// Survivors: fin[want_slot[orig[r]]] = h[r] for r < rows with a wanted position.
void gather_final(const float* h, const int* orig, int rows, int d, const int* want_slot, float* fin, cudaStream_t st);
// v[i] = i (i < n) and fill.
void iota(int* v, int n, cudaStream_t st);
void fill(int32_t* v, int n, int32_t value, cudaStream_t st);

}  // namespace cuda
}  // namespace simba
