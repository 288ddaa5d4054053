// dispatch.cc — see dispatch.h.
#include "dispatch.h"

#include "engine/errors.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

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

static constexpr int kRowBlock = 96;

// Jobs below this many floating-point operations run on the calling thread: waking a worker costs
// more than they take, and on a loaded machine a descheduled worker would stall the whole job.
static constexpr double kParallelMinFlops = 4e5;

template <typename F>
static void parallel(int items, double flops, F&& f) {
  if (flops < kParallelMinFlops) {
    if (items > 0) f(0, 0, items);
    return;
  }
  ThreadPool::global().run(items, f);
}

void gemm(const float* A, int lda, const PackedWeight& W, const float* bias, float* C, int ldc,
          int M, bool accumulate) {
  if (M <= 0) return;
  const KernelTable& k = active();
  GemmArgs g{A, lda, &W, bias, C, ldc, M, accumulate, kRowBlock, (M + kRowBlock - 1) / kRowBlock};
  parallel(g.nmblocks * W.npanels, 2.0 * M * W.N * W.K, [&](int, int b, int e) { k.gemm(g, b, e); });
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

void conv1d(const Conv1dArgs& a) {
  SIMBA_ASSERT(a.xin && a.out && a.wT && a.E > 0 && a.K >= 1 && a.K <= kMaxConv && a.ldx >= a.E && a.ldo >= a.E);
  assert_seqs(a.seqs, a.nseq);
  for (int i = 0; i < a.nseq; i++) SIMBA_ASSERT(a.K == 1 || a.seqs[i].conv);
  const KernelTable& k = active();
  parallel(groups(a.E), 2.0 * a.K * a.E * rows_of(a.seqs, a.nseq) + 20.0 * a.E * rows_of(a.seqs, a.nseq),
           [&](int, int b, int e) { k.conv1d(a, b, e); });
}

void scan(const ScanArgs& a) {
  SIMBA_ASSERT(a.x && a.dt && a.B && a.C && a.z && a.AT && a.D && a.y && a.E > 0 && a.N >= 1 && a.N <= kMaxState);
  SIMBA_ASSERT(a.ldx >= a.E && a.lddt >= a.E && a.ldz >= a.E && a.ldy >= a.E && a.ldbc >= a.N);
  assert_seqs(a.seqs, a.nseq);
  for (int i = 0; i < a.nseq; i++) SIMBA_ASSERT(a.seqs[i].ssm);
  const KernelTable& k = active();
  parallel(groups(a.E), 20.0 * a.E * a.N * rows_of(a.seqs, a.nseq), [&](int, int b, int e) { k.scan(a, b, e); });
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
  parallel(groups(a.E), 20.0 * a.E * a.N * rows_of(a.seqs, a.nseq), [&](int tid, int b, int e) {
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

}  // namespace cpu
}  // namespace simba
