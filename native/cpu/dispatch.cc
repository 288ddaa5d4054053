// dispatch.cc — see dispatch.h.
#include "dispatch.h"

#include "common/errors.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <stdexcept>
#include <string>

namespace simba {
namespace cpu {

namespace {

bool cpu_has(const std::string& isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return isa == "sse2";
#else
  return false;
#endif
}

const KernelTable* by_name(const std::string& isa) {
  if (isa == "avx512") return avx512::table();
  if (isa == "avx2") return avx2::table();
  if (isa == "sse2") return sse2::table();
  return nullptr;
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const char* n : {"avx512", "avx2", "sse2"})
    if (cpu_has(n)) out.push_back(n);
  return out;
}

void set_isa(const std::string& name) {
  if (!by_name(name)) throw std::invalid_argument("unknown instruction set '" + name + "' (avx512, avx2, sse2)");
  if (!cpu_has(name)) throw std::invalid_argument("this CPU does not support the '" + name + "' kernels");
  g_active.store(by_name(name));
}

const KernelTable& active() {
  const KernelTable* t = g_active.load();
  if (t) return *t;
  const char* env = std::getenv("SIMBA_ISA");
  std::string pick = available_isas().front();
  if (env && *env && by_name(env) && cpu_has(env)) pick = env;
  t = by_name(pick);
  g_active.store(t);
  return *t;
}

// Rows per GEMM work item: a multiple of every build's tile heights (avx512 14 / 12, avx2 3), and
// small enough that a packed block (kRowBlock x K floats, 516 KB at K = 1536) stays in L2.
static constexpr int kRowBlock = 84;
// ... for the int8 vpdpbusd kernel (8-row tiles): 84 left a 4-row tile per block; 96 rows of int8
// A (384 KB at K = 4096) stay in L2 as well.
static constexpr int kRowBlockVnni = 96;
// Rows per AMX work item: a multiple of the 32-row tile pair; the block's A (128 x K bf16, 384 KB
// at K = 1536) stays in L2 while its panel passes over it four times.
static constexpr int kAmxRowBlock = 128;

// Jobs below this many floating-point operations run on the calling thread: waking a worker costs
// more than they take, and on a loaded machine a descheduled worker would stall the whole job.
static constexpr double kParallelMinFlops = 4e5;
// ... except GEMMs with this many bytes of weights (a few microseconds of reading on one thread).
static constexpr double kParallelMinBytes = 128 << 10;

// Dynamic (ThreadPool::run_dynamic) unless a kernel keeps per-thread partial results, reduced in
// thread order afterwards: those take one fixed range per thread, so results do not depend on timing.
enum class Split { Dynamic, Fixed };
template <Split split = Split::Dynamic, typename F>
static void parallel(int items, double flops, F&& f) {
  if (flops < kParallelMinFlops) {
    if (items > 0) f(0, 0, items);
    return;
  }
  if (split == Split::Dynamic) ThreadPool::global().run_dynamic(items, f);
  else ThreadPool::global().run(items, f);
}

// The AVX-512 extensions this CPU has (used only while the active build is avx512).
static bool has_vnni() {
  static const bool v = [] {
    __builtin_cpu_init();
    return (bool)__builtin_cpu_supports("avx512vnni");
  }();
  return v;
}
static bool has_bf16dp() {
  // __builtin_cpu_supports("avx512bf16") needs GCC 13; CPUID leaf 7 subleaf 1, EAX bit 5.
  static const bool v = [] {
#if defined(__x86_64__)
    unsigned a = 7, b, c = 1, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return ((a >> 5) & 1u) != 0;
#else
    return false;
#endif
  }();
  return v;
}
// A switch variable set to anything but empty or "0" (SIMBA_NO_EXT, SIMBA_NO_AMX).
static bool env_flag(const char* name) {
  const char* e = std::getenv(name);
  return e && *e && *e != '0';
}
static bool ext_allowed() {
  static const bool off = env_flag("SIMBA_NO_EXT");
  return !off;
}

// (called per GEMM: compares the build name without building a string)
static bool ext_usable() { return std::strcmp(active().name, "avx512") == 0 && ext_allowed(); }
bool vnni_usable() { return ext_usable() && has_vnni(); }
bool bf16dp_usable() { return ext_usable() && has_bf16dp(); }

// AMX: CPUID leaf 7 EDX bits 22 (AMX-BF16), 24 (AMX-TILE), 25 (AMX-INT8); the OS enables the tile
// state in XCR0 (bits 17, 18); Linux hands the tile data to a process only on request
// (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, once per process, for all its threads).
bool amx_available() {
  static const bool v = [] {
#if defined(__linux__) && defined(__x86_64__)
    unsigned a = 7, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    const unsigned need = (1u << 22) | (1u << 24) | (1u << 25);
    if ((d & need) != need) return false;
    unsigned a1 = 1, b1, c1 = 0, d1;
    __asm__ volatile("cpuid" : "+a"(a1), "=b"(b1), "+c"(c1), "=d"(d1));
    if (!((c1 >> 27) & 1u)) return false;  // OSXSAVE: xgetbv usable
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3u) != 3u) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return v;
}
static std::atomic<bool> g_amx_on{!env_flag("SIMBA_NO_AMX")};
void set_amx(bool on) {
  if (on && !amx_available())
    throw std::invalid_argument(
        "this CPU or OS does not support AMX (AMX-TILE, AMX-BF16, AMX-INT8 and the tile state)");
  g_amx_on.store(on);
}
bool amx_usable() { return g_amx_on.load() && ext_usable() && amx_available(); }

GemmPath gemm_path(const PackedWeight& W, int M) {
  if (W.format == WeightFormat::Q4) return vnni_usable() ? GemmPath::Q4Vnni : GemmPath::Q4;
  if (W.format == WeightFormat::Q8) {
    if (M >= kAmxMinRowsQ8 && amx_usable()) return GemmPath::Q8Amx;
    return vnni_usable() ? GemmPath::Q8Vnni : GemmPath::Q8;
  }
  if (W.format == WeightFormat::BF16) {
    if (M >= kAmxMinRowsBf16 && amx_usable()) return GemmPath::Bf16Amx;
    return M >= kBf16DpMinRows && bf16dp_usable() ? GemmPath::Bf16Dp : GemmPath::Bf16;
  }
  return GemmPath::F32;
}

const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::F32: return "f32 fma";
    case GemmPath::Bf16: return "bf16 weights, f32 fma";
    case GemmPath::Bf16Dp: return "bf16 vdpbf16ps";
    case GemmPath::Bf16Amx: return "bf16 amx";
    case GemmPath::Q8: return "int8 (portable)";
    case GemmPath::Q8Vnni: return "int8 vpdpbusd";
    case GemmPath::Q8Amx: return "int8 amx";
    case GemmPath::Q4: return "int4 (portable)";
    case GemmPath::Q4Vnni: return "int4 vpdpbusd";
  }
  return "?";
}

void gemm(const float* A, int lda, const PackedWeight& W, const float* bias, float* C, int ldc, int M,
          bool accumulate) {
  if (M <= 0) return;
  const KernelTable& k = active();
  GemmArgs g{A, lda, &W, bias, C, ldc, M, accumulate, kRowBlock, (M + kRowBlock - 1) / kRowBlock};
  const double flops = 2.0 * M * W.N * W.K;
  const GemmPath path = gemm_path(W, M);
  // Per-thread scratch for the converted activations (grow-only; one GEMM at a time per thread).
  // The worker lambdas below must only see pointers into it, never the thread_local names.
  thread_local std::vector<uint8_t> qbuf;
  thread_local std::vector<float> qscale;
  thread_local std::vector<int32_t> qcorr;
  thread_local std::vector<uint32_t> bfbuf;
  thread_local std::vector<float> apack;
  QuantRows qr{};
  const bool amx = path == GemmPath::Q8Amx || path == GemmPath::Bf16Amx;
  // AMX tiles read A as 16-row x 64-byte blocks: rows padded to a multiple of 16 (zeros), row
  // width to a multiple of 64 bytes (zeros), and a row stride off multiples of 1 KB (16 rows at a
  // 4 KB stride would share one L1 set).
  const int Mpad = amx ? (M + 15) / 16 * 16 : M;
  auto amx_ld = [](int bytes) {
    int ld = (bytes + 63) / 64 * 64;
    return ld % 1024 == 0 ? ld + 64 : ld;
  };
  if (amx) g.mblock = kAmxRowBlock, g.nmblocks = (M + kAmxRowBlock - 1) / kAmxRowBlock;
  if (path == GemmPath::Q8Vnni) g.mblock = kRowBlockVnni, g.nmblocks = (M + kRowBlockVnni - 1) / kRowBlockVnni;
  const int items = g.nmblocks * W.npanels;
  if (path == GemmPath::Q8 || path == GemmPath::Q8Vnni || path == GemmPath::Q8Amx) {
    // A [M, K] -> unsigned bytes [M, ldq] (padding 128 = zero) + a scale per row
    const int ldq = amx ? amx_ld(W.Kp) : W.Kp;
    if (qbuf.size() < (size_t)Mpad * ldq) qbuf.resize((size_t)Mpad * ldq);
    if (qscale.size() < (size_t)Mpad) qscale.resize(Mpad);
    QuantizeArgs qa{A, lda, W.K, ldq, qbuf.data(), qscale.data()};
    parallel(M, 4.0 * M * W.K, [&](int, int b, int e) { k.quantize(qa, b, e); });
    if (Mpad > M) std::memset(qbuf.data() + (size_t)M * ldq, 128, (size_t)(Mpad - M) * ldq);
    qr = QuantRows{qbuf.data(), ldq, qscale.data()};
    g.aq = &qr;
  } else if (path == GemmPath::Q4 || path == GemmPath::Q4Vnni) {
    // A [M, K] -> signed bytes [M, Kp] (padding 0), a scale per row, a correction per row and block
    const int nb = W.Kp / kQ4Block;
    if (qbuf.size() < (size_t)M * W.Kp) qbuf.resize((size_t)M * W.Kp);
    if (qscale.size() < (size_t)M) qscale.resize(M);
    if (qcorr.size() < (size_t)M * nb) qcorr.resize((size_t)M * nb);
    QuantizeArgs qa{A, lda, W.K, W.Kp, qbuf.data(), qscale.data(), qcorr.data()};
    parallel(M, 4.0 * M * W.K, [&](int, int b, int e) { k.quantize_q4(qa, b, e); });
    qr = QuantRows{qbuf.data(), W.Kp, qscale.data(), qcorr.data(), nb};
    g.aq = &qr;
  } else if (path == GemmPath::Bf16Dp || path == GemmPath::Bf16Amx) {
    // A [M, K] -> bf16 pairs [M, ld2] (AMX: zero past K and past M)
    const int ld2 = amx ? amx_ld(W.Kp * 2) / 4 : W.Kp / 2;
    if (bfbuf.size() < (size_t)Mpad * ld2) bfbuf.resize((size_t)Mpad * ld2);
    uint32_t* abf = bfbuf.data();  // (a lambda naming bfbuf would see the worker thread's own)
    const int kw = (W.K + 1) / 2;  // words round_bf16_pairs writes per row
    parallel(M, 4.0 * M * W.K, [&](int, int b, int e) {
      avx512_ext::round_bf16_pairs(A, lda, W.K, abf, ld2, b, e);
      if (ld2 > kw)
        for (int r = b; r < e; r++) std::memset(abf + (size_t)r * ld2 + kw, 0, (size_t)(ld2 - kw) * 4);
    });
    if (Mpad > M) std::memset(abf + (size_t)M * ld2, 0, (size_t)(Mpad - M) * ld2 * 4);
    g.abf = abf;
    g.lda2 = ld2;
  } else if (M >= k.gemm_mr && k.gemm_mr > 1) {
    // A [M, K] -> row blocks of tiles [Kpack][MR] (gemm.cc), packed once for all panels
    const size_t need = k.gemm_pack_floats(g);
    if (apack.size() < need) apack.resize(need);
    float* ap = apack.data();  // (as above: the lambda must not name the thread_local)
    parallel(g.nmblocks, 2.0 * M * W.K, [&](int, int b, int e) { k.gemm_pack(g, ap, b, e); });
    g.apack = ap;
  }
  // A GEMM of few rows is bound by reading the weights, not by its FLOPs: from kParallelMinBytes
  // of weights it runs on every thread whatever its FLOPs (decode B=1, 130m: f32 x_proj and
  // dt_proj, 491 and 295 KB, 34 -> 27 and 17 -> 13 us per call; from 32 KB int8 dt_proj, 74 KB,
  // lost: 3.4 -> 4.4 us).
  const double wbytes = (double)W.N * W.K * weight_bits(W.format) / 8;
  const double work = wbytes >= kParallelMinBytes ? std::max(flops, kParallelMinFlops) : flops;
  switch (path) {
    case GemmPath::Q8Amx: parallel(items, work, [&](int, int b, int e) { amx::gemm_q8_amx(g, b, e); }); break;
    case GemmPath::Q8Vnni: parallel(items, work, [&](int, int b, int e) { avx512_ext::gemm_q8_vnni(g, b, e); }); break;
    case GemmPath::Q8: parallel(items, work, [&](int, int b, int e) { k.gemm_q8(g, b, e); }); break;
    case GemmPath::Q4Vnni: parallel(items, work, [&](int, int b, int e) { avx512_ext::gemm_q4_vnni(g, b, e); }); break;
    case GemmPath::Q4: parallel(items, work, [&](int, int b, int e) { k.gemm_q4(g, b, e); }); break;
    case GemmPath::Bf16Amx: parallel(items, work, [&](int, int b, int e) { amx::gemm_bf16_amx(g, b, e); }); break;
    case GemmPath::Bf16Dp: parallel(items, work, [&](int, int b, int e) { avx512_ext::gemm_bf16_dp(g, b, e); }); break;
    default: parallel(items, work, [&](int, int b, int e) { k.gemm(g, b, e); });
  }
}

void rmsnorm(const float* x, int ldx, const float* w, float* y, int ldy, int rows, int d, float eps) {
  if (rows <= 0) return;
  SIMBA_ASSERT(x && w && y && d > 0 && ldx >= d && ldy >= d && eps > 0);
  const KernelTable& k = active();
  RmsNormArgs a{x, ldx, w, y, ldy, d, eps};
  parallel(rows, 4.0 * rows * d, [&](int, int b, int e) { k.rmsnorm(a, b, e); });
}

static double rows_of(const SeqSlice* s, int n) {
  double r = 0;
  for (int i = 0; i < n; i++) r += s[i].T;
  return r;
}

// The preconditions every per-sequence kernel shares: a sequence table whose rows lie in the
// buffers (each sequence at least one row, in order).
static void assert_seqs(const SeqSlice* s, int n) {
  SIMBA_ASSERT(s && n >= 1);
  for (int i = 0; i < n; i++) SIMBA_ASSERT(s[i].T >= 1 && s[i].row0 >= (i ? s[i - 1].row0 + s[i - 1].T : 0));
}

static int groups(int E) {
  const int w = active().width;
  return (E + w - 1) / w;
}

// A decode step of several sequences (one token each, at least two per thread): the per-sequence
// kernels (conv, scan) split it by sequence, so that each thread streams whole sequences' states
// (contiguous) instead of a few KB of every one (B = 32, 130m: scan 8.0 -> 7.1 ms per step). The
// same bits either way; prompts keep the channel split, which balances sequences of different
// lengths.
static bool split_by_sequence(const SeqSlice* s, int n) {
  if (n < 2 * ThreadPool::global().size()) return false;
  for (int i = 0; i < n; i++)
    if (s[i].T != 1) return false;
  return true;
}
// items: the kernel's work items of one sequence (channel groups, heads).
template <typename Args, typename Kernel>
static void per_sequence(const Args& a, int items, double flops, Kernel kernel) {
  if (split_by_sequence(a.seqs, a.nseq)) {
    parallel(a.nseq, flops, [&](int, int b, int e) {
      Args sub = a;
      sub.seqs = a.seqs + b;
      sub.nseq = e - b;
      kernel(sub, 0, items);
    });
    return;
  }
  parallel(items, flops, [&](int, int b, int e) { kernel(a, b, e); });
}

void conv1d(const Conv1dArgs& a) {
  SIMBA_ASSERT(a.xin && a.out && a.wT && a.E > 0 && a.K >= 1 && a.K <= kMaxConv && a.ldx >= a.E && a.ldo >= a.E);
  assert_seqs(a.seqs, a.nseq);
  for (int i = 0; i < a.nseq; i++) SIMBA_ASSERT(a.K == 1 || a.seqs[i].conv);
  const KernelTable& k = active();
  per_sequence(a, groups(a.E), 2.0 * a.K * a.E * rows_of(a.seqs, a.nseq) + 20.0 * a.E * rows_of(a.seqs, a.nseq),
               [&](const Conv1dArgs& s, int b, int e) { k.conv1d(s, b, e); });
}

void scan(const ScanArgs& a) {
  SIMBA_ASSERT(a.x && a.dt && a.B && a.C && a.z && a.AT && a.A && a.D && a.y && a.E > 0 && a.N >= 1 &&
               a.N <= kMaxState);
  SIMBA_ASSERT(a.ldx >= a.E && a.lddt >= a.E && a.ldz >= a.E && a.ldy >= a.E && a.ldbc >= a.N);
  assert_seqs(a.seqs, a.nseq);
  for (int i = 0; i < a.nseq; i++) SIMBA_ASSERT(a.seqs[i].ssm);
  const KernelTable& k = active();
  per_sequence(a, groups(a.E), 20.0 * a.E * a.N * rows_of(a.seqs, a.nseq),
               [&](const ScanArgs& s, int b, int e) { k.scan(s, b, e); });
}

void score(ScoreArgs a, float* out, int total_rows) {
  SIMBA_ASSERT(a.x && a.dt && a.B && a.C && a.AT && out && a.E > 0 && a.N >= 1 && a.N <= kMaxState);
  SIMBA_ASSERT(a.ldx >= a.E && a.lddt >= a.E && a.ldbc >= a.N);
  assert_seqs(a.seqs, a.nseq);
  SIMBA_ASSERT(a.seqs[a.nseq - 1].row0 + a.seqs[a.nseq - 1].T <= total_rows);
  const KernelTable& k = active();
  ThreadPool& pool = ThreadPool::global();
  const size_t per = (size_t)total_rows * k.width;  // one vector per row and thread
  std::vector<float> part((size_t)pool.size() * per, 0.f);
  parallel<Split::Fixed>(groups(a.E), 20.0 * a.E * a.N * rows_of(a.seqs, a.nseq), [&](int tid, int b, int e) {
    ScoreArgs mine = a;
    mine.partial = part.data() + (size_t)tid * per;
    k.score(mine, b, e);
  });
  for (int r = 0; r < total_rows; r++) {
    float v = 0.f;  // |c| >= 0, so 0 is neutral for both reductions
    for (int t = 0; t < pool.size(); t++)
      for (int l = 0; l < k.width; l++) {
        const float p = part[(size_t)t * per + (size_t)r * k.width + l];
        v = a.reduce_sum ? v + p : (p > v ? p : v);
      }
    out[r] = v;
  }
}

void ssd_scan(const SsdArgs& a) {
  SIMBA_ASSERT(a.x && a.B && a.C && a.dt && a.dt_bias && a.A && a.D && a.y && a.H > 0 && a.P > 0 && a.G > 0 &&
               a.H % a.G == 0 && a.N >= 1 && a.N <= kMaxState && a.chunk >= 1 && a.chunk <= kMaxSsdChunk);
  SIMBA_ASSERT(a.ldx >= a.H * a.P && a.ldy >= a.H * a.P && a.ldbc >= a.G * a.N && a.lddt >= a.H);
  assert_seqs(a.seqs, a.nseq);
  for (int i = 0; i < a.nseq; i++) SIMBA_ASSERT(a.seqs[i].ssm);
  const KernelTable& k = active();
  // per token and head: y's intra-chunk part (chunk P), the state's (4 P N), C.B (chunk N / heads per group)
  const double per_token = (double)a.H * (a.chunk * a.P + 4.0 * a.P * a.N) + (double)a.G * a.chunk * a.N;
  per_sequence(a, a.H, per_token * rows_of(a.seqs, a.nseq),
               [&](const SsdArgs& s, int b, int e) { k.ssd_scan(s, b, e); });
}

void gated_norm(const GatedNormArgs& a, int rows) {
  SIMBA_ASSERT(a.y && a.z && a.w && a.E > 0 && a.G > 0 && a.E % a.G == 0 && a.ldy >= a.E && a.ldz >= a.E);
  const KernelTable& k = active();
  parallel(rows, 30.0 * rows * a.E, [&](int, int b, int e) { k.gated_norm(a, b, e); });
}

void ssd_score(const SsdScoreArgs& in, const SeqSlice* seqs, int nseq, float* out, int total_rows) {
  SIMBA_ASSERT(in.x && in.dt && in.B && in.C && out && in.H > 0 && in.P > 0 && in.G > 0 && in.H % in.G == 0 &&
               in.N >= 1);
  assert_seqs(seqs, nseq);
  SIMBA_ASSERT(seqs[nseq - 1].row0 + seqs[nseq - 1].T <= total_rows);
  // Per row: its sequence's last row and, for the simba criterion, A_h times the dt that follow it in
  // that sequence (one reverse pass per sequence and head, in double).
  std::vector<int> last(total_rows, 0);
  std::vector<float> decay(in.local ? 0 : (size_t)total_rows * in.H);
  for (int s = 0; s < nseq; s++) {
    const SeqSlice& q = seqs[s];
    for (int t = 0; t < q.T; t++) last[q.row0 + t] = q.row0 + q.T - 1;
    if (in.local) continue;
    for (int h = 0; h < in.H; h++) {
      double after = 0;
      for (int t = q.T - 1; t >= 0; t--) {
        const size_t r = (size_t)(q.row0 + t);
        decay[r * in.H + h] = (float)(in.A[h] * after);
        after += in.dt[r * in.lddt + h];
      }
    }
  }
  SsdScoreArgs a = in;
  a.decay = decay.data();
  a.last = last.data();
  a.score = out;
  std::fill(out, out + total_rows, 0.f);
  const KernelTable& k = active();
  double rows = rows_of(seqs, nseq);
  parallel(total_rows, rows * (2.0 * in.G * in.N + 2.0 * in.H * in.P), [&](int, int b, int e) {
    // only the rows of the sequences given
    for (int s = 0; s < nseq; s++) {
      const int lo = std::max(b, seqs[s].row0), hi = std::min(e, seqs[s].row0 + seqs[s].T);
      if (lo < hi) k.ssd_score(a, lo, hi);
    }
  });
}

}  // namespace cpu
}  // namespace simba
