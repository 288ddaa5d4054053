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

#include "common/shape_limits.h"

namespace simba {
namespace cpu {

// Weights of a linear layer y = x W^T, W [N, K] row-major in the checkpoint, stored packed as
// panels of NR=32 output features, so that the GEMM microkernel reads one k-slice of a panel with
// unit stride. Per format (zero-padded past N and past K):
//   F32   [npanels][K][32]        float: the 32 values of one k contiguous.
//   BF16  [npanels][K2/2][32][2]  bfloat16 bits, K2 = K rounded up to even: per k pair, per output
//         feature, (W[n,k], W[n,k+1]) side by side — the operand layout of vdpbf16ps; a 32-bit
//         lane's low half is k, its high half k+1, so plain f32 code splits one load into two.
//   Q8    [npanels][K4/4][32][4]  int8, K4 = K rounded up to a multiple of 4: per group of 4 k, per
//         output feature, 4 consecutive k — the operand layout of vpdpbusd. W[n,k] ~= q * scale[n]
//         (symmetric, per output channel: scale = max_k |W[n,k]| / 127), and colsum[n] = sum_k q.
//   Q4    [npanels][K32/32][8][64] bytes, K32 = K rounded up to a multiple of kQ4Block: blocks of 32 k,
//         each 8 groups of 4 k in the Q8 order [16 features][4 k] = 64 bytes, whose low nibbles hold
//         features 0-15 and high nibbles features 16-31 (one 64-byte load, an and and a shift give
//         the two vpdpbusd operands). A nibble u in [0, 15] stands for W[n,k] ~= (u - 8) * d, with a
//         scale d per (feature, block): d16 [npanels][K32/32][32] IEEE half floats.
constexpr int kPanel = 32;
// k per Q4 block (one scale each): 32, as llama.cpp's Q4_0. A block is 8 vpdpbusd groups, so its
// integer sum costs one int32 -> float conversion and one FMA per 8 dot products; 32 keeps the
// outliers of one block from flattening many weights (64 would halve the per-block cost but
// doubles the weights sharing one outlier's scale).
constexpr int kQ4Block = 32;
// Decode GEMMs (few rows) stream the panels from memory: each kernel prefetches the panel this far
// ahead into L2 (an L2 prefetch does not hold one of L1's few fill buffers, so a thread keeps more
// misses in flight; bench/RESULTS.md, "AMX tile GEMMs and decode prefetch").
constexpr int kStreamPrefetchBytes = 6144;
// Both 64-byte lines of a 128-byte panel row at p, kStreamPrefetchBytes ahead, into L2.
inline void prefetch_stream_row(const void* p) {
  const char* c = static_cast<const char*>(p) + kStreamPrefetchBytes;
  __builtin_prefetch(c, 0, 1);
  __builtin_prefetch(c + 64, 0, 1);
}
enum class WeightFormat { F32 = 0, BF16 = 1, Q8 = 2, Q4 = 3 };
// Bits of one stored weight (not counting the scales).
constexpr int weight_bits(WeightFormat f) {
  return f == WeightFormat::F32 ? 32 : f == WeightFormat::BF16 ? 16 : f == WeightFormat::Q8 ? 8 : 4;
}
// IEEE half float bits -> float (the Q4 block scales: finite, subnormals included).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 1023u;
  float f;
  if (e == 0) {
    f = (float)m * 5.9604644775390625e-8f;  // m 2^-24
    return sign ? -f : f;
  }
  const uint32_t u = sign | ((e + 112) << 23) | (m << 13);
  __builtin_memcpy(&f, &u, 4);
  return f;
}

struct PackedWeight {
  int N = 0, K = 0, npanels = 0;
  WeightFormat format = WeightFormat::F32;
  bool bf16 = false;                // format == BF16
  int Kp = 0;                       // K padded: K (F32), K2 (BF16), K4 (Q8), K32 (Q4)
  const float* f32 = nullptr;       // F32 panels
  const uint16_t* h16 = nullptr;    // BF16 panels
  const int8_t* q8 = nullptr;       // Q8 panels
  const uint8_t* q4 = nullptr;      // Q4 panels (nibbles)
  const uint16_t* d16 = nullptr;    // Q4: [npanels][Kp/32][32] half-float block scales
  const float* scale = nullptr;     // Q8: [npanels * 32] per output feature
  const int32_t* colsum = nullptr;  // Q8: [npanels * 32] sum over k of the int8 values
  // Element W[n, k] (for embedding lookups from a tied, packed matrix), dequantized.
  float at(int n, int k) const {
    const size_t pbase = (size_t)(n / kPanel) * Kp * kPanel;
    const int c = n % kPanel;
    if (format == WeightFormat::F32) return f32[pbase + (size_t)k * kPanel + c];
    if (format == WeightFormat::Q8) return (float)q8[pbase + (size_t)(k / 4) * (4 * kPanel) + c * 4 + k % 4] * scale[n];
    if (format == WeightFormat::Q4) {
      const uint8_t b = q4[pbase / 2 + (size_t)(k / 4) * (2 * kPanel) + (c % 16) * 4 + k % 4];
      const int u = c < 16 ? b & 15 : b >> 4;
      return (float)(u - 8) * half_to_float(d16[pbase / kQ4Block + (size_t)(k / kQ4Block) * kPanel + c]);
    }
    uint32_t u = (uint32_t)h16[pbase + (size_t)(k / 2) * (2 * kPanel) + c * 2 + k % 2] << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};

// Activations quantized for a Q8 GEMM, per row: A[m, k] ~= (q[m, k] - 128) * scale[m], q unsigned
// (vpdpbusd multiplies unsigned by signed bytes), scale = max_k |A[m, k]| / 127; rows of Kp bytes
// (padding 128, i.e. zero).
// For Q4 weights the bytes are signed instead (q[m, k] = round(A[m, k] / scale[m]) in [-127, 127],
// padding 0) and bcorr[m * ldb + b] = -8 sum_{k in block b} q[m, k]: the integer dot product of a
// block with the unsigned nibbles u starts from it, which makes it the dot product with u - 8.
struct QuantRows {
  const uint8_t* q;
  int ldq;
  const float* scale;              // [M]
  const int32_t* bcorr = nullptr;  // Q4: [M][ldb]
  int ldb = 0;
};
struct QuantizeArgs {
  const float* A;
  int lda;
  int K, Kp;
  uint8_t* q;                // [M][Kp]
  float* scale;              // [M]
  int32_t* bcorr = nullptr;  // Q4 (quantize_q4): [M][Kp / kQ4Block]
};

// C[M, N] = A[M, K] W^T (+ bias[N]) ; with accumulate, C += A W^T (bias ignored).
struct GemmArgs {
  const float* A;
  int lda;
  const PackedWeight* W;
  const float* bias;  // may be null
  float* C;
  int ldc;
  int M;
  bool accumulate;
  // Work items: (row block, panel) pairs, row-block-major. Set by dispatch.cc.
  int mblock, nmblocks;
  // Q8 weights: the quantized A (dispatch.cc quantizes it first). BF16 with vdpbf16ps: A rounded
  // to bfloat16 pairs, [M][K2/2] 32-bit words (lda2 words per row). Null otherwise.
  const QuantRows* aq = nullptr;
  const uint32_t* abf = nullptr;
  int lda2 = 0;
  // F32 / BF16 weights (the fma kernels): A packed by KernelTable::gemm_pack, row block mb at
  // apack + mb * mblock * Kpack (null: gemm_slice reads A directly; blocks below the tile
  // height always do).
  const float* apack = nullptr;
};

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, over rows t in [begin, end).
struct RmsNormArgs {
  const float* x;
  int ldx;
  const float* w;
  float* y;
  int ldy;
  int d;
  float eps;
};

// One sequence's slice of a token-major batch, and its recurrent state for one layer.
struct SeqSlice {
  int row0;     // first row of this sequence in the activations
  int T;        // tokens of this sequence present in this layer
  float* conv;  // [E, K-1] last K-1 conv inputs, oldest first (updated in place)
  float* ssm;   // [E, N] SSM state (updated in place)
};

// Causal depthwise conv1d over time + bias + SiLU, per sequence, continuing from the conv state.
// xin rows: [.., E] pre-conv x (stride ldx); out rows: [.., E] silu(conv(x)) (stride ldo).
// Work items: groups of W channels.
struct Conv1dArgs {
  const float* xin;
  int ldx;
  float* out;
  int ldo;
  const float* wT;    // [K][E] conv weights transposed (tap-major)
  const float* bias;  // [E] or null
  int E, K;
  const SeqSlice* seqs;
  int nseq;
};

// Selective scan (Mamba-1), per sequence, continuing from the SSM state:
//   dt = softplus(dt_raw) (written back in place: the Simba score pass reads it)
//   s[e,n] = exp(dt[e] A[e,n]) s[e,n] + dt[e] B[n] x[e];  y[e] = (sum_n C[n] s[e,n] + D[e] x[e]) * silu(z[e])
// Work items: groups of W channels.
struct ScanArgs {
  const float* x;
  int ldx;  // [.., E] post-conv activation
  float* dt;
  int lddt;  // [.., E] dt before softplus in, after softplus out
  const float* B;
  const float* C;
  int ldbc;  // [.., N] rows (views into x_proj output)
  const float* z;
  int ldz;          // [.., E] gate
  const float* AT;  // [N][E] A = -exp(A_log), transposed (state-major)
  const float* A;   // [E][N] the same A in the state's layout (the AVX-512 decode step reads it)
  const float* D;   // [E]
  float* y;
  int ldy;  // [.., E] output
  int E, N;
  const SeqSlice* seqs;
  int nseq;
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
  const float* x;
  int ldx;
  const float* dt;
  int lddt;
  const float* B;
  const float* C;
  int ldbc;
  const float* AT;  // [N][E]
  int E, N;
  bool local;  // local criterion instead of simba
  bool reduce_sum;
  const SeqSlice* seqs;
  int nseq;
  float* partial;  // [total_rows][width] this slice's lane-wise partial reductions
};

// ---- Mamba-2 (SSD; engine/mixer_mamba2.cc). Glossary: H heads of P channels (E = H P), G groups of
// B and C (head h reads group g(h) = h / (H / G)), state s [H][P][N] per sequence.

// The SSD scan, per sequence and head, continuing from the SSM state:
//   dt[t,h]  = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max)   (written back in place)
//   s[h,p,:] = exp(dt[t,h] A[h]) s[h,p,:] + dt[t,h] x[t,h,p] B[t,g(h),:]
//   y[t,h,p] = C[t,g(h),:] . s[h,p,:] + D[h] x[t,h,p]
// computed by the chunked form (ssd_scan.cc) over chunks of at most `chunk` tokens; a decode step is
// a chunk of one token. Work items: heads.
struct SsdArgs {
  const float* x;
  int ldx;  // [.., E] post-conv x, head h at h P
  const float* B;
  const float* C;
  int ldbc;  // [.., G N] post-conv B and C, group g at g N
  float* dt;
  int lddt;  // [.., H] raw dt in, the clamped softplus out
  const float* dt_bias;
  const float* A;  // [H] A = -exp(A_log)
  const float* D;  // [H]
  float dt_min, dt_max;
  float* y;
  int ldy;  // [.., E] output (before the gate)
  int H, P, G, N;
  int chunk;             // 1 .. kMaxSsdChunk
  const SeqSlice* seqs;  // ssm: [H, P, N]
  int nseq;
};
constexpr int kMaxSsdChunk = 128;

// Mamba-2's gated RMSNorm, per row and per group of E / G channels (mamba_ssm's RMSNormGated with
// norm_before_gate=False): v = y * silu(z); y = v / sqrt(mean_group(v^2) + eps) * w. In place.
// Work items: rows.
struct GatedNormArgs {
  float* y;
  int ldy;
  const float* z;
  int ldz;
  const float* w;  // [E]
  int E, G;
  float eps;
};

// Simba token scores for Mamba-2 (simba_score_ssd.cc), from what the scan leaves (x, dt, B, C):
//   simba:  c[t,h,p] = exp(A_h sum_{k>t} dt[k,h]) dt[t,h] x[t,h,p] (C[T,g(h)] . B[t,g(h)])
//   local:  c[t,h,p] = dt[t,h] x[t,h,p] (C[t,g(h)] . B[t,g(h)])
// score[t] = max over (h,p) of |c| (reduce_sum=false) or the sum. decay[r*H + h] holds
// A_h sum_{k>t} dt[k,h] for row r (the dispatcher's one pass per sequence), last[r] the row of its
// sequence's last token. Work items: rows.
struct SsdScoreArgs {
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
  const float* decay;  // [rows][H] (simba only)
  const int* last;     // [rows]
  float* score;        // [rows]
};

struct KernelTable {
  const char* name;                                                    // "avx512", "avx2", "sse2"
  int width;                                                           // floats per vector
  int gemm_mr;                                                         // rows per GEMM microkernel tile
  void (*gemm)(const GemmArgs&, int begin, int end);                   // items: nmblocks * W->npanels
  void (*gemm_pack)(const GemmArgs&, float* out, int begin, int end);  // items: row blocks (gemm.cc)
  size_t (*gemm_pack_floats)(const GemmArgs&);                         // buffer gemm_pack needs
  void (*rmsnorm)(const RmsNormArgs&, int begin, int end);             // items: rows
  void (*conv1d)(const Conv1dArgs&, int begin, int end);               // items: channel groups
  void (*scan)(const ScanArgs&, int begin, int end);                   // items: channel groups
  void (*score)(const ScoreArgs&, int begin, int end);                 // items: channel groups
  void (*ssd_scan)(const SsdArgs&, int begin, int end);                // items: heads (ssd_scan.cc)
  void (*gated_norm)(const GatedNormArgs&, int begin, int end);        // items: rows (rmsnorm.cc)
  void (*ssd_score)(const SsdScoreArgs&, int begin, int end);          // items: rows (simba_score_ssd.cc)
  void (*gemm_q8)(const GemmArgs&, int begin, int end);                // Q8 weights, g.aq set (gemm_int8.cc)
  void (*quantize)(const QuantizeArgs&, int begin, int end);           // items: rows (quantize.cc)
  void (*gemm_q4)(const GemmArgs&, int begin, int end);                // Q4 weights, g.aq signed (gemm_int4.cc)
  void (*quantize_q4)(const QuantizeArgs&, int begin, int end);        // signed rows + bcorr (quantize.cc)
  // W [N, K] row-major -> F32 panels (weight_pack.cc); items: panels.
  void (*pack_f32)(const float* W, int N, int K, float* out, int begin, int end);
  // Machine-limit probes (limits_kernels.cc, timed by limits.cc).
  float (*fma_loop)(long iters);
  int fma_flops_per_iter;
  float (*read_sum)(const float* x, size_t n);
};

// Builds with extra instructions, compiled only for AVX-512 (CMakeLists: simba_cpu_avx512_ext),
// used when the CPU has them (dispatch.cc): vpdpbusd (AVX512-VNNI) for Q8 weights, vdpbf16ps
// (AVX512-BF16) for BF16 weights with g.abf set.
namespace avx512_ext {
void gemm_q8_vnni(const GemmArgs& g, int begin, int end);
void gemm_q4_vnni(const GemmArgs& g, int begin, int end);  // gemm_int4_vnni.cc
void gemm_bf16_dp(const GemmArgs& g, int begin, int end);
void round_bf16_pairs(const float* A, int lda, int K, uint32_t* out, int ld2, int begin, int end);  // items: rows
// Peak probes (limits_ext.cc): iters x *_flops_per_iter() operations (a multiply-add = 2) of chain-free
// dot products; the result depends on every accumulator.
float vnni_loop(long iters);
int vnni_flops_per_iter();
float bf16dp_loop(long iters);
int bf16dp_flops_per_iter();
}  // namespace avx512_ext

// Intel AMX tiles (gemm_amx.cc: simba_cpu_amx, the tile instructions as inline assembly),
// used when the CPU has AMX and the OS granted the tile data (dispatch.cc: amx_usable). A as for
// the AVX-512 extension kernels (g.abf / g.aq), its rows padded with zeros to a multiple of 16
// and to a multiple of 64 bytes per row (dispatch.cc); g.mblock a multiple of 32.
namespace amx {
void gemm_bf16_amx(const GemmArgs& g, int begin, int end);
void gemm_q8_amx(const GemmArgs& g, int begin, int end);
// Peak probes: iters x *_flops_per_iter() operations of tile products on constant tiles.
float bf16_loop(long iters);
int bf16_flops_per_iter();
float int8_loop(long iters);
int int8_flops_per_iter();
}  // namespace amx

// Per-ISA tables (defined in kernel_table.cc, compiled once per ISA).
namespace avx512 {
const KernelTable* table();
}
namespace avx2 {
const KernelTable* table();
}
namespace sse2 {
const KernelTable* table();
}

}  // namespace cpu
}  // namespace simba
