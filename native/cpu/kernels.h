// kernels.h — the CPU kernels' argument structs and the per-ISA function table.
//
// Each kernel is written once (gemm.cc, rmsnorm.cc, conv1d.cc, selective_scan.cc,
// simba_score.cc) and compiled per instruction set; each build exports a KernelTable.
// Table entries are *slices*: they do the work items [begin, end) of a job, so that threading
// (threadpool.h) stays out of the ISA code. dispatch.cc wraps each slice in a parallel_for.
//
// Shapes use the glossary of lib/types.ts: d model width, E mixer width, N state size,
// R dt rank, K conv width, V vocabulary. Activations are token-major rows: row t of a [M, X]
// buffer holds token t; ld* is the row stride in floats.
#pragma once
#include <cstddef>
#include <cstdint>

namespace simba {
namespace cpu {

// Weights of a linear layer y = x W^T, W [N, K] row-major in the checkpoint, stored packed as
// panels of NR=32 output features: panel p holds W[p*32 .. p*32+31, k] for k = 0..K-1, the 32
// values of one k contiguous ([npanels][K][32], zero-padded past N). The GEMM microkernel then
// reads one k-slice of a panel with unit stride.
constexpr int kPanel = 32;

// Largest conv width and state size the kernels hold in registers / stack arrays (conv1d.cc,
// selective_scan.cc); the engines reject larger configs first (engine/tensor_table.h).
constexpr int kMaxConv = 8, kMaxState = 256;
struct PackedWeight {
  int N = 0, K = 0, npanels = 0;
  bool bf16 = false;
  const float* f32 = nullptr;     // [npanels][K][32] when !bf16
  const uint16_t* h16 = nullptr;  // same layout, bfloat16 bits, when bf16
  // Element W[n, k] (for embedding lookups from a tied, packed matrix).
  float at(int n, int k) const {
    size_t i = (size_t)(n / kPanel) * K * kPanel + (size_t)k * kPanel + (n % kPanel);
    if (!bf16) return f32[i];
    uint32_t u = (uint32_t)h16[i] << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};

// C[M, N] = A[M, K] W^T (+ bias[N]) ; with accumulate, C += A W^T (bias ignored).
struct GemmArgs {
  const float* A; int lda;
  const PackedWeight* W;
  const float* bias;  // may be null
  float* C; int ldc;
  int M;
  bool accumulate;
  // Work items: (row block, panel) pairs, row-block-major. Set by gemm_plan().
  int mblock, nmblocks;
};

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, over rows t in [begin, end).
struct RmsNormArgs {
  const float* x; int ldx;
  const float* w;
  float* y; int ldy;
  int d;
  float eps;
};

// One sequence's slice of a token-major batch, and its recurrent state for one layer.
struct SeqSlice {
  int row0;        // first row of this sequence in the activations
  int T;           // tokens of this sequence present in this layer
  float* conv;     // [E, K-1] last K-1 conv inputs, oldest first (updated in place)
  float* ssm;      // [E, N] SSM state (updated in place)
};

// Causal depthwise conv1d over time + bias + SiLU, per sequence, continuing from the conv state.
// xin rows: [.., E] pre-conv x (stride ldx); out rows: [.., E] silu(conv(x)) (stride ldo).
// Work items: groups of W channels.
struct Conv1dArgs {
  const float* xin; int ldx;
  float* out; int ldo;
  const float* wT;    // [K][E] conv weights transposed (tap-major)
  const float* bias;  // [E] or null
  int E, K;
  const SeqSlice* seqs; int nseq;
};

// Selective scan (Mamba-1), per sequence, continuing from the SSM state:
//   dt = softplus(dt_raw) (written back in place: the Simba score pass reads it)
//   s[e,n] = exp(dt[e] A[e,n]) s[e,n] + dt[e] B[n] x[e];  y[e] = (sum_n C[n] s[e,n] + D[e] x[e]) * silu(z[e])
// Work items: groups of W channels.
struct ScanArgs {
  const float* x; int ldx;    // [.., E] post-conv activation
  float* dt; int lddt;        // [.., E] dt before softplus in, after softplus out
  const float* B; const float* C; int ldbc;  // [.., N] rows (views into x_proj output)
  const float* z; int ldz;    // [.., E] gate
  const float* AT;            // [N][E] A = -exp(A_log), transposed (state-major)
  const float* D;             // [E]
  float* y; int ldy;          // [.., E] output
  int E, N;
  const SeqSlice* seqs; int nseq;
};

// Simba token scores, per sequence, from what the scan leaves (x, softplus'd dt, B, C):
//   simba:  c(t,e) = sum_n C(T,n) exp(A(e,n) sum_{k>t} dt(k,e)) dt(t,e) B(t,n) x(t,e)
//           by one reverse pass carrying Q(e,n) = C(T,n) prod_{k>t} exp(dt(k,e) A(e,n)).
//   local:  c(t,e) = dt(t,e) x(t,e) sum_n C(t,n) B(t,n)
// score(t) = max_e |c(t,e)| (reduce_sum=false) or sum_e |c(t,e)|.
// Work items: groups of W channels; a slice accumulates its groups' reductions lane-wise into
// partial[row * width + lane] (a per-thread buffer the caller zeroes, then reduces over lanes and
// threads: no atomics).
struct ScoreArgs {
  const float* x; int ldx;
  const float* dt; int lddt;
  const float* B; const float* C; int ldbc;
  const float* AT;  // [N][E]
  int E, N;
  bool local;       // local criterion instead of simba
  bool reduce_sum;
  const SeqSlice* seqs; int nseq;
  float* partial;   // [total_rows][width] this slice's lane-wise partial reductions
};

struct KernelTable {
  const char* name;  // "avx512", "avx2", "sse2"
  int width;         // floats per vector
  int gemm_mr;       // rows per GEMM microkernel tile
  void (*gemm)(const GemmArgs&, int begin, int end);  // items: nmblocks * W->npanels
  void (*rmsnorm)(const RmsNormArgs&, int begin, int end);  // items: rows
  void (*conv1d)(const Conv1dArgs&, int begin, int end);    // items: channel groups
  void (*scan)(const ScanArgs&, int begin, int end);        // items: channel groups
  void (*score)(const ScoreArgs&, int begin, int end);      // items: channel groups
};

// Per-ISA tables (defined in kernel_table.cc, compiled once per ISA).
namespace avx512 { const KernelTable* table(); }
namespace avx2 { const KernelTable* table(); }
namespace sse2 { const KernelTable* table(); }

}  // namespace cpu
}  // namespace simba
