// checks.cc — the CPU-vs-CUDA comparisons of simba_gpu_check (see checks.h): kernels on fresh random
// inputs, then whole models (dense, Simba-pruned, prefill then decode, batched decode on device slots).
#include "tools/gpu_check/checks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "common/tensor_table.h"
#include "cpu/dispatch.h"

namespace simba {
namespace tools {

namespace {

using Vec = std::vector<float>;

Vec rnd(std::mt19937& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  Vec v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

double rel(const Vec& a, const Vec& b) {
  return a.size() == b.size() ? rel_err(a.data(), b.data(), a.size()) : INFINITY;
}

void backend_ok(int rc, const char* err, const std::string& what) {
  if (rc != 0) throw std::runtime_error(what + ": " + err);
}

// A_log [E, N] -> AT [N][E] = -exp(A_log), the layout both engines' scans read.
Vec a_transposed(const Vec& alog, int E, int N) {
  Vec AT((size_t)N * E);
  for (int e = 0; e < E; e++)
    for (int n = 0; n < N; n++) AT[(size_t)n * E + e] = -std::exp(alog[(size_t)e * N + n]);
  return AT;
}

std::string dims(std::initializer_list<int> v, const char* names) {
  std::string s;
  const char* p = names;
  for (int x : v) {
    if (!s.empty()) s += ' ';
    s += *p++;
    s += '=' + std::to_string(x);
  }
  return s;
}

// ---------------------------------------------------------------- kernels

void gemm_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, int M, int N, int K, bool bf16) {
  Vec A = rnd(rng, (size_t)M * K), W = rnd(rng, (size_t)N * K), bias = rnd(rng, N), ref((size_t)M * N),
      got((size_t)M * N);
  Linear lin;
  pack_linear(lin, W.data(), N, K, bf16);
  cpu::gemm(A.data(), K, lin.w, bias.data(), ref.data(), N, M);
  char err[1024] = {0};
  backend_ok(b.kernel_gemm(A.data(), W.data(), bias.data(), got.data(), M, N, K, bf16, err, sizeof err), err, "gemm");
  rep.add("kernels", std::string("gemm ") + (bf16 ? "bf16 " : "f32 ") + dims({M, N, K}, "MNK"), rel(got, ref),
          bf16 ? 2e-2 : 1e-4);
}

void rmsnorm_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, int rows, int d) {
  Vec h = rnd(rng, (size_t)rows * d, -3, 3), delta = rnd(rng, h.size()), w = rnd(rng, d), ref(h.size()), got(h.size());
  Vec sum(h.size());
  for (size_t i = 0; i < h.size(); i++) sum[i] = h[i] + delta[i];
  cpu::rmsnorm(sum.data(), d, w.data(), ref.data(), d, rows, d, 1e-5f);
  char err[1024] = {0};
  if (!cuda_backend_has(&simba_backend_v1_t::kernel_rmsnorm)) {
    rep.add_bool("kernels", "rmsnorm (+residual)", false, "library has no kernel_rmsnorm (stale build)");
    return;
  }
  backend_ok(b.kernel_rmsnorm(h.data(), delta.data(), w.data(), got.data(), rows, d, 1e-5f, err, sizeof err), err,
             "rmsnorm");
  rep.add("kernels", "rmsnorm+residual " + dims({rows, d}, "Md"), std::max(rel(got, ref), rel(h, sum)), 1e-4);
}

void conv_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, int T, int E, int K) {
  Vec x = rnd(rng, (size_t)T * E), w = rnd(rng, (size_t)E * K), bias = rnd(rng, E), st = rnd(rng, (size_t)E * (K - 1));
  Vec wT((size_t)K * E);
  for (int e = 0; e < E; e++)
    for (int j = 0; j < K; j++) wT[(size_t)j * E + e] = w[(size_t)e * K + j];
  Vec st_cpu = st, out_cpu((size_t)T * E), out((size_t)T * E);
  cpu::SeqSlice sq{0, T, st_cpu.data(), nullptr};
  cpu::conv1d(cpu::Conv1dArgs{x.data(), E, out_cpu.data(), E, wT.data(), bias.data(), E, K, &sq, 1});
  char err[1024] = {0};
  backend_ok(b.kernel_conv1d(x.data(), w.data(), bias.data(), st.data(), out.data(), T, E, K, err, sizeof err), err,
             "conv1d");
  rep.add("kernels", "conv1d " + dims({T, E, K}, "TEK") + " out+state", std::max(rel(out, out_cpu), rel(st, st_cpu)),
          1e-4);
}

void scan_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, int T, int E, int N) {
  Vec x = rnd(rng, (size_t)T * E), dt = rnd(rng, (size_t)T * E, -4, 1), alog = rnd(rng, (size_t)E * N, -1, 1),
      B = rnd(rng, (size_t)T * N), C = rnd(rng, (size_t)T * N), D = rnd(rng, E), z = rnd(rng, (size_t)T * E, -3, 3),
      st = rnd(rng, (size_t)E * N);
  Vec AT = a_transposed(alog, E, N), A((size_t)E * N), dt_cpu = dt, st_cpu = st, y_cpu((size_t)T * E), y((size_t)T * E);
  apply_layout(Layout::kTransposed, AT.data(), N, E, A.data());  // back to [E][N], the state's layout
  cpu::SeqSlice sq{0, T, nullptr, st_cpu.data()};
  cpu::scan(cpu::ScanArgs{x.data(), E, dt_cpu.data(), E, B.data(), C.data(), N, z.data(), E, AT.data(), A.data(),
                          D.data(), y_cpu.data(), E, E, N, &sq, 1});
  char err[1024] = {0};
  backend_ok(b.kernel_scan(x.data(), dt.data(), alog.data(), B.data(), C.data(), D.data(), z.data(), st.data(),
                           y.data(), T, E, N, err, sizeof err),
             err, "scan");
  const std::string name = "scan " + dims({T, E, N}, "TEN");
  rep.add("kernels", name + " y", rel(y, y_cpu), 1e-4);
  rep.add("kernels", name + " dt+state", std::max(rel(dt, dt_cpu), rel(st, st_cpu)), 1e-4);
}

void score_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, int T, int E, int N, bool local,
                bool sum) {
  Vec x = rnd(rng, (size_t)T * E), dt = rnd(rng, (size_t)T * E, 0.001f, 0.5f), alog = rnd(rng, (size_t)E * N, -1, 1),
      B = rnd(rng, (size_t)T * N), C = rnd(rng, (size_t)T * N);
  Vec AT = a_transposed(alog, E, N), ref(T), got(T);
  cpu::SeqSlice sq{0, T, nullptr, nullptr};
  cpu::score(
      cpu::ScoreArgs{x.data(), E, dt.data(), E, B.data(), C.data(), N, AT.data(), E, N, local, sum, &sq, 1, nullptr},
      ref.data(), T);
  char err[1024] = {0};
  backend_ok(b.kernel_score(x.data(), dt.data(), alog.data(), B.data(), C.data(), got.data(), T, E, N, local, sum, err,
                            sizeof err),
             err, "score");
  rep.add("kernels",
          std::string("score ") + (local ? "local " : "simba ") + (sum ? "sum " : "max ") + dims({T, E, N}, "TEN"),
          rel(got, ref), 1e-4);
}

// Mamba-2 (H heads of P channels, G groups of N): one sequence of T tokens, both engines from the
// same raw dt (softplus, bias and clamp included) and state.
struct SsdShape {
  int T, H, P, G, N;
  std::string name() const { return dims({T, H, P, G, N}, "THPGN"); }
};

// dt_bias and the clamp of the scan checks: a random model's dt range, clamped at both ends for some tokens.
constexpr float kDtMin = 0.002f, kDtMax = 0.08f;

// chunk_parallel: the device's chunk-parallel form where T has several chunks, else the sequential one.
void ssd_scan_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, const SsdShape& s,
                   bool chunk_parallel) {
  const int E = s.H * s.P, GN = s.G * s.N;
  Vec x = rnd(rng, (size_t)s.T * E), dt = rnd(rng, (size_t)s.T * s.H, -6, 0), bias = rnd(rng, s.H, -2, 0),
      alog = rnd(rng, s.H, 0, 2.8f), B = rnd(rng, (size_t)s.T * GN), C = rnd(rng, (size_t)s.T * GN), D = rnd(rng, s.H),
      st = rnd(rng, (size_t)E * s.N);
  Vec A(s.H), dt_cpu = dt, st_cpu = st, y_cpu((size_t)s.T * E), y((size_t)s.T * E);
  apply_layout(Layout::kNegExp, alog.data(), s.H, 1, A.data());
  cpu::SeqSlice sq{0, s.T, nullptr, st_cpu.data()};
  cpu::ssd_scan({.x = x.data(),
                 .ldx = E,
                 .B = B.data(),
                 .C = C.data(),
                 .ldbc = GN,
                 .dt = dt_cpu.data(),
                 .lddt = s.H,
                 .dt_bias = bias.data(),
                 .A = A.data(),
                 .D = D.data(),
                 .dt_min = kDtMin,
                 .dt_max = kDtMax,
                 .y = y_cpu.data(),
                 .ldy = E,
                 .H = s.H,
                 .P = s.P,
                 .G = s.G,
                 .N = s.N,
                 .chunk = 64,
                 .seqs = &sq,
                 .nseq = 1});
  char err[1024] = {0};
  backend_ok(b.kernel_ssd_scan(x.data(), dt.data(), bias.data(), alog.data(), B.data(), C.data(), D.data(), st.data(),
                               y.data(), s.T, s.H, s.P, s.G, s.N, kDtMin, kDtMax, chunk_parallel, err, sizeof err),
             err, "ssd scan");
  const std::string name = "ssd scan " + s.name() + (chunk_parallel ? "" : " sequential");
  rep.add("kernels", name + " y", rel(y, y_cpu), 1e-4);
  rep.add("kernels", name + " dt+state", std::max(rel(dt, dt_cpu), rel(st, st_cpu)), 1e-4);
}

void ssd_score_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, const SsdShape& s, bool local,
                    bool sum) {
  const int E = s.H * s.P, GN = s.G * s.N;
  Vec x = rnd(rng, (size_t)s.T * E), dt = rnd(rng, (size_t)s.T * s.H, 0.001f, 0.1f), alog = rnd(rng, s.H, 0, 2.8f),
      B = rnd(rng, (size_t)s.T * GN), C = rnd(rng, (size_t)s.T * GN);
  Vec A(s.H), ref(s.T), got(s.T);
  apply_layout(Layout::kNegExp, alog.data(), s.H, 1, A.data());
  cpu::SeqSlice sq{0, s.T, nullptr, nullptr};
  cpu::ssd_score({.x = x.data(),
                  .ldx = E,
                  .dt = dt.data(),
                  .lddt = s.H,
                  .B = B.data(),
                  .C = C.data(),
                  .ldbc = GN,
                  .A = A.data(),
                  .H = s.H,
                  .P = s.P,
                  .G = s.G,
                  .N = s.N,
                  .local = local,
                  .reduce_sum = sum},
                 &sq, 1, ref.data(), s.T);
  char err[1024] = {0};
  backend_ok(b.kernel_ssd_score(x.data(), dt.data(), alog.data(), B.data(), C.data(), got.data(), s.T, s.H, s.P, s.G,
                                s.N, local, sum, err, sizeof err),
             err, "ssd score");
  rep.add("kernels", std::string("ssd score ") + (local ? "local " : "simba ") + (sum ? "sum " : "max ") + s.name(),
          rel(got, ref), 1e-4);
}

void gated_norm_case(Report& rep, const simba_backend_v1_t& b, std::mt19937& rng, int rows, int E, int G) {
  Vec y = rnd(rng, (size_t)rows * E, -3, 3), z = rnd(rng, y.size(), -4, 4), w = rnd(rng, E, 0.5f, 1.5f), ref = y;
  cpu::gated_norm({.y = ref.data(), .ldy = E, .z = z.data(), .ldz = E, .w = w.data(), .E = E, .G = G, .eps = 1e-5f},
                  rows);
  char err[1024] = {0};
  backend_ok(b.kernel_gated_norm(y.data(), z.data(), w.data(), rows, E, G, 1e-5f, err, sizeof err), err, "gated norm");
  rep.add("kernels", "gated norm " + dims({rows, E, G}, "MEG"), rel(y, ref), 1e-4);
}

void check_ssd_kernels(Report& rep, const simba_backend_v1_t& b, const Sizes& sz, std::mt19937& rng) {
  if (!cuda_backend_has(&simba_backend_v1_t::kernel_gated_norm)) {
    rep.add_bool("kernels", "Mamba-2 kernels", false, "library has no kernel_ssd_scan (stale build)");
    return;
  }
  // Tokens: one (decode), a few, and more than the device's 64-token chunks, ending inside one;
  // G > 1 with P != N, and a mamba2-130m-like head (P 64, N 128).
  const std::vector<SsdShape> scans =
      sz.quick ? std::vector<SsdShape>{{1, 6, 12, 3, 16}, {5, 6, 12, 3, 16}, {150, 6, 12, 3, 16}, {70, 2, 64, 1, 128}}
               : std::vector<SsdShape>{{1, 24, 64, 1, 128},
                                       {5, 24, 64, 1, 128},
                                       {700, 24, 64, 1, 128},
                                       {300, 16, 64, 8, 64},
                                       {130, 6, 12, 3, 16}};
  for (const SsdShape& s : scans) {
    ssd_scan_case(rep, b, rng, s, true);
    if (s.T > 64) ssd_scan_case(rep, b, rng, s, false);  // several chunks in one block
  }
  const SsdShape sc = sz.quick ? SsdShape{40, 6, 12, 3, 16} : SsdShape{700, 24, 64, 2, 128};
  for (bool local : {false, true})
    for (bool sum : {false, true}) ssd_score_case(rep, b, rng, sc, local, sum);
  gated_norm_case(rep, b, rng, sz.quick ? 7 : 300, sz.quick ? 96 : 1536, sz.quick ? 4 : 8);
  if (!sz.quick) gated_norm_case(rep, b, rng, 5, 8192, 1);  // a group wider than a block's threads many times
}

// ---------------------------------------------------------------- whole model

struct Out {
  Vec logits;
  std::vector<int> processed;
  std::vector<int32_t> exit;
};

Out run(Model& m, const ForwardRequest& r) {
  ForwardResult f = m.forward(r);
  return {f.logits, f.processed, f.exit_layer};
}
Out run(CudaModel& m, const ForwardRequest& r, const std::vector<int32_t>* slots = nullptr) {
  ForwardResult f = slots ? m.forward_slots(r, *slots) : m.forward(r);
  return {f.logits, f.processed, f.exit_layer};
}

// Request over sequences with the given token lists; logits at every position (all) or the last of each.
ForwardRequest request(const std::vector<std::vector<int32_t>>& seqs, std::vector<Vec>* states, bool all) {
  ForwardRequest r;
  int off = 0;
  for (size_t s = 0; s < seqs.size(); s++) {
    r.tokens.insert(r.tokens.end(), seqs[s].begin(), seqs[s].end());
    r.lengths.push_back((int)seqs[s].size());
    if (states) r.states.push_back((*states)[s].data());
    for (int i = 0; i < (int)seqs[s].size(); i++)
      if (all || i + 1 == (int)seqs[s].size()) r.want.push_back(off + i);
    off += (int)seqs[s].size();
  }
  return r;
}

double max_state_err(const std::vector<Vec>& dev, const std::vector<Vec>& cpu) {
  double e = 0;
  for (size_t s = 0; s < cpu.size(); s++) e = std::max(e, rel(dev[s], cpu[s]));
  return e;
}

std::vector<std::vector<int32_t>> random_tokens(std::mt19937& rng, const std::vector<int>& lens, int vocab) {
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  std::vector<std::vector<int32_t>> out;
  for (int n : lens) {
    out.emplace_back(n);
    for (auto& t : out.back()) t = tok(rng);
  }
  return out;
}

const char* kCriteria[] = {"simba", "local", "norm", "uniform", "random"};

}  // namespace

double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  if (!std::isfinite(num)) return INFINITY;
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

template <typename M>
static void load_into(M& m, const ModelSpec& spec) {
  if (spec.loaded)
    for (const EngineTensor& t : spec.loaded->tensors) m.set_tensor(t.name, t.layer, t.data.data(), t.data.size());
  else m.randomize(spec.seed);
  m.finalize();
}

std::unique_ptr<Model> make_cpu_model(const ModelSpec& spec, bool bf16) {
  auto m = std::make_unique<Model>(spec.cfg, bf16);
  load_into(*m, spec);
  return m;
}

std::unique_ptr<CudaModel> make_cuda_model(const ModelSpec& spec, bool bf16) {
  auto m = std::make_unique<CudaModel>(spec.cfg, bf16);
  load_into(*m, spec);
  return m;
}

void check_kernels(Report& rep, const simba_backend_v1_t& b, const Sizes& sz, uint64_t seed) {
  std::mt19937 rng((uint32_t)seed);
  for (bool bf16 : {false, true}) {
    if (sz.quick) {
      for (auto [M, N, K] : {std::array<int, 3>{1, 96, 64}, {9, 70, 50}, {130, 65, 200}})
        gemm_case(rep, b, rng, M, N, K, bf16);
    } else {
      for (auto [M, N, K] :
           {std::array<int, 3>{1, 3072, 768}, {7, 1536, 48}, {256, 1536, 768}, {1000, 768, 1536}, {64, 50280, 768}})
        gemm_case(rep, b, rng, M, N, K, bf16);
    }
  }
  rmsnorm_case(rep, b, rng, sz.quick ? 7 : 300, sz.quick ? 96 : 768);
  const int E = sz.quick ? 37 : 1536;
  for (int T : sz.quick ? std::vector<int>{1, 5, 40} : std::vector<int>{1, 5, 700}) conv_case(rep, b, rng, T, E, 4);
  for (int T : sz.quick ? std::vector<int>{1, 3, 150} : std::vector<int>{1, 3, 64, 700})
    scan_case(rep, b, rng, T, E, 16);
  for (bool local : {false, true})
    for (bool sum : {false, true}) score_case(rep, b, rng, sz.quick ? 40 : 700, E, 16, local, sum);
  check_ssd_kernels(rep, b, sz, rng);
}

void check_model(Report& rep, const ModelSpec& spec, Model& cpu, CudaModel& dev, const Sizes& sz) {
  const ModelConfig& c = cpu.config();
  const bool bf16 = cpu.bf16();
  const double tol = bf16 ? 2e-2 : 1e-4;
  const std::string sec = spec.label + (bf16 ? " bf16" : " f32");
  const size_t SF = cpu.state_floats();
  std::mt19937 rng((uint32_t)spec.seed * 7919u + (bf16 ? 1 : 0));
  const bool big = (size_t)c.vocab * c.d > 20000000;  // 1.4b-class: fewer, shorter sequences
  // Mamba-2: one prompt ends inside the device's second 64-token chunk, one exactly on a chunk's end.
  const bool m2 = c.family == kMamba2;
  const std::vector<int> lens = sz.quick ? (m2 ? std::vector<int>{9, 70, 1, 64} : std::vector<int>{9, 40, 1})
                                : big    ? std::vector<int>{13, 256, 1}
                                         : std::vector<int>{13, 333, 1, 64};
  auto prompts = random_tokens(rng, lens, c.vocab);
  const size_t total = std::accumulate(lens.begin(), lens.end(), (size_t)0);
  const bool all = total * (size_t)c.vocab <= ((size_t)16 << 20);  // logits of every position when they fit in 64 MiB

  // ---- dense prefill, then decode steps continuing from its states
  std::vector<Vec> st_cpu(lens.size(), Vec(SF, 0.f)), st_dev = st_cpu;
  {
    Out a = run(cpu, request(prompts, &st_cpu, all)), d = run(dev, request(prompts, &st_dev, all));
    rep.add(sec,
            std::string("prefill logits (") + (all ? "all" : "last") + " positions, T=" + std::to_string(total) + ")",
            rel(d.logits, a.logits), tol);
    rep.add(sec, "prefill states", max_state_err(st_dev, st_cpu), tol);
  }
  {
    double el = 0;
    const int steps = sz.quick ? 2 : 4;
    for (int step = 0; step < steps; step++) {
      auto toks = random_tokens(rng, std::vector<int>(lens.size(), 1), c.vocab);
      Out a = run(cpu, request(toks, &st_cpu, false)), d = run(dev, request(toks, &st_dev, false));
      el = std::max(el, rel(d.logits, a.logits));
    }
    rep.add(sec, "decode logits after prefill (" + std::to_string(steps) + " steps)", el, tol);
    rep.add(sec, "decode states", max_state_err(st_dev, st_cpu), tol);
  }

  // ---- Simba-pruned prefill: kept sets (exit layers), processed counts, logits
  const int ncrit = spec.simba_all_criteria ? SIMBA_CRITERION_COUNT : 1;
  for (int crit = 0; crit < ncrit; crit++)
    for (int variant = 0; variant < 2; variant++) {
      std::vector<Vec> s1(lens.size(), Vec(SF, 0.f)), s2 = s1;
      ForwardRequest r1 = request(prompts, &s1, all), r2 = request(prompts, &s2, all);
      for (ForwardRequest* r : {&r1, &r2}) {
        r->simba.enabled = true;
        r->simba.criterion = crit;
        r->simba.reduce_sum = variant == 1;
        r->simba.protect_first = variant == 1 ? 2 : 0;
        r->simba.protect_last = variant == 1 ? 3 : 0;
        r->simba.seed = 99;
        for (int T : lens)
          for (int l = 0; l < c.L; l++)
            r->simba.keep.push_back(std::max(1, (int)std::ceil(T * (1.0 - 0.8 * (l + 1) / c.L))));
      }
      Out a = run(cpu, r1), d = run(dev, r2);
      const std::string tag = std::string("simba ") + kCriteria[crit] + (variant ? " sum+protect" : " max");
      size_t differ = 0;
      for (size_t i = 0; i < a.exit.size(); i++) differ += a.exit[i] != (i < d.exit.size() ? d.exit[i] : -1);
      // f32: the same kept sets exactly. bf16: the engines round activations differently, so a
      // near-tied score may swap; at most 1% of the tokens may exit at another layer.
      const double allowed = bf16 ? 0.01 * a.exit.size() : 0;
      rep.add(sec, tag + ": tokens with another exit layer", (double)differ, allowed,
              std::to_string(differ) + " of " + std::to_string(a.exit.size()));
      if (!bf16) rep.add_bool(sec, tag + ": processed counts", a.processed == d.processed);
      rep.add(sec, tag + ": logits", rel(d.logits, a.logits), differ ? std::max(tol, 5e-2) : tol,
              differ ? "kept sets differ: loose limit" : "");
    }

  // ---- batched decode on device-resident slots vs the CPU with host states
  if (!dev.has_device_states()) {
    rep.add_bool(sec, "device-resident states", false, "library predates state slots");
    return;
  }
  const int B = sz.emulate ? 4 : sz.quick ? 8 : 32, steps = sz.quick ? 3 : 6;
  std::vector<int> plens(B);
  for (int i = 0; i < B; i++) plens[i] = 1 + (i * 7) % (sz.quick ? 11 : 29);
  auto bprompts = random_tokens(rng, plens, c.vocab);
  std::vector<Vec> hs(B, Vec(SF, 0.f));
  std::vector<int32_t> slots(B);
  // Allocate one extra slot and free it first, so the pool holds a hole that gets reused.
  const int spare = dev.alloc_state();
  for (int i = 0; i < B; i++) slots[i] = dev.alloc_state();
  dev.free_state(spare);
  {
    const int again = dev.alloc_state();
    Vec z(SF, 1.f);
    dev.read_state(again, z.data());
    rep.add_bool(sec, "slot reuse: a re-allocated slot reads back zeros",
                 std::all_of(z.begin(), z.end(), [](float v) { return v == 0.f; }));
    dev.free_state(again);
  }
  double el = 0;
  {
    Out a = run(cpu, request(bprompts, &hs, false)), d = run(dev, request(bprompts, nullptr, false), &slots);
    el = rel(d.logits, a.logits);
  }
  Vec snap(SF), snap_cpu, other_before(SF), other_after(SF);
  std::vector<int32_t> last_toks;
  Out last_dev;
  for (int step = 0; step < steps; step++) {
    auto toks = random_tokens(rng, std::vector<int>(B, 1), c.vocab);
    if (step == steps - 1) {  // snapshot sequence 0 (device) before the last step
      dev.read_state(slots[0], snap.data());
      snap_cpu = hs[0];
      last_toks = toks[0];
    }
    Out a = run(cpu, request(toks, &hs, false));
    Out d = run(dev, request(toks, nullptr, false), &slots);
    el = std::max(el, rel(d.logits, a.logits));
    if (step == steps - 1) last_dev = d;
  }
  rep.add(sec,
          "batched decode B=" + std::to_string(B) + " on slots: logits (prefill + " + std::to_string(steps) + " steps)",
          el, tol);
  std::vector<Vec> ds(B, Vec(SF));
  for (int i = 0; i < B; i++) dev.read_state(slots[i], ds[i].data());
  rep.add(sec, "batched decode: slot states (read back one by one)", max_state_err(ds, hs), tol);
  rep.add(sec, "snapshot of slot 0 = CPU state before the last step", rel(snap, snap_cpu), tol);
  // Restore sequence 0 and replay its last step alone: same logits as in the batch; slot 1 untouched.
  dev.read_state(slots[1], other_before.data());
  dev.write_state(slots[0], snap.data());
  const std::vector<int32_t> slot0{slots[0]};
  Out replay = run(dev, request({last_toks}, nullptr, false), &slot0);
  dev.read_state(slots[1], other_after.data());
  Vec batch0(last_dev.logits.begin(), last_dev.logits.begin() + c.vocab);
  rep.add(sec, "restore slot 0 + replay alone = its batched logits", rel(replay.logits, batch0), tol);
  rep.add_bool(sec, "restore touches no other slot", other_before == other_after);
  for (int32_t s : slots) dev.free_state(s);
}

}  // namespace tools
}  // namespace simba
