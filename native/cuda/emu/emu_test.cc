// emu_test.cc — runs the CUDA kernels and the whole DeviceModel forward under the host emulation
// (emu.h) and compares them with the CPU engine: each kernel on random inputs, then CPU vs "CUDA"
// models with the same random weights (dense prefill, decode, every Simba criterion with
// protection), checking logits, states, processed counts and exit layers.
// Build and run: native/cuda/emu/run.sh (after `npm run build:native`, whose CPU objects it links).
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../../cpu/dispatch.h"
#include "../../engine/model.h"
#include "../kernels.cuh"
#include "../model_cuda.h"

using namespace simba;
namespace cu = simba::cuda;

static int failures = 0, checks = 0;
static std::mt19937 rng(12345);

static std::vector<float> rnd(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}
static double rel(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += (double)(a[i] - b[i]) * (a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}
static void expect(bool ok, const std::string& what) {
  checks++;
  if (!ok) {
    failures++;
    std::printf("FAIL %s\n", what.c_str());
  }
}
static void expect_rel(const std::vector<float>& a, const std::vector<float>& b, double tol, const std::string& what) {
  double e = rel(a.data(), b.data(), a.size());
  checks++;
  if (!(e <= tol) || a.size() != b.size()) {
    failures++;
    std::printf("FAIL %s: rel err %.3g > %.1g\n", what.c_str(), e, tol);
  } else std::printf("ok   %-60s rel err %.2g\n", what.c_str(), e);
}

// Device buffers are host memory under emulation.
template <typename T>
static T* dev(const std::vector<T>& v) {
  void* p;
  cudaMalloc(&p, v.size() * sizeof(T) + 16);
  std::memcpy(p, v.data(), v.size() * sizeof(T));
  return (T*)p;
}
static cu::SeqInfo* one_seq(int T) { return dev(std::vector<cu::SeqInfo>{{.row0 = 0, .T = T, .k = T, .nrow0 = 0}}); }

static void test_gemm(int M, int N, int K, bool bf16, int lda_pad = 0) {
  const int lda = K + lda_pad;
  auto A = rnd((size_t)M * lda), W = rnd((size_t)N * K), bias = rnd(N);
  Linear lin;
  pack_linear(lin, W.data(), N, K, bf16);
  std::vector<float> ref((size_t)M * N), got((size_t)M * N);
  cpu::gemm(A.data(), lda, lin.w, bias.data(), ref.data(), N, M);
  cu::DevLinear dl;
  dl.N = N;
  dl.K = K;
  dl.bf16 = bf16;
  if (bf16) {
    std::vector<uint16_t> h(W.size());
    for (size_t i = 0; i < h.size(); i++) h[i] = cu::to_bf16_bits(W[i]);
    dl.w = dev(h);
  } else dl.w = dev(W);
  dl.bias = dev(bias);
  float* C = dev(got);
  cu::gemm(dev(A), lda, dl, C, N, M, nullptr);
  std::memcpy(got.data(), C, got.size() * 4);
  char name[96];
  std::snprintf(name, sizeof name, "gemm %s M=%d N=%d K=%d lda=%d", bf16 ? "bf16" : "f32", M, N, K, lda);
  expect_rel(got, ref, bf16 ? 2e-2 : 1e-5, name);
}

static void test_scan(int T, int E, int N) {
  auto x = rnd((size_t)T * E), dt = rnd((size_t)T * E, -4, 1), alog = rnd((size_t)E * N, -1, 1), B = rnd((size_t)T * N),
       C = rnd((size_t)T * N), D = rnd(E), z = rnd((size_t)T * E, -3, 3), st = rnd((size_t)E * N);
  std::vector<float> AT((size_t)N * E);
  apply_layout(Layout::kNegExpTransposed, alog.data(), E, N, AT.data());
  std::vector<float> A((size_t)E * N);  // the same A in the state's [E][N] layout (the decode scan's)
  apply_layout(Layout::kTransposed, AT.data(), N, E, A.data());
  // CPU
  auto dtc = dt, stc = st;
  std::vector<float> yc((size_t)T * E);
  cpu::SeqSlice sq{.row0 = 0, .T = T, .conv = nullptr, .ssm = stc.data()};
  cpu::scan({.x = x.data(),
             .ldx = E,
             .dt = dtc.data(),
             .lddt = E,
             .B = B.data(),
             .C = C.data(),
             .ldbc = N,
             .z = z.data(),
             .ldz = E,
             .AT = AT.data(),
             .A = A.data(),
             .D = D.data(),
             .y = yc.data(),
             .ldy = E,
             .E = E,
             .N = N,
             .seqs = &sq,
             .nseq = 1});
  // emulated device
  float *ddt = dev(dt), *dst = dev(st), *dy = dev(yc);
  cu::selective_scan({.x = dev(x),
                      .ldx = E,
                      .dt = ddt,
                      .lddt = E,
                      .B = dev(B),
                      .C = dev(C),
                      .ldbc = N,
                      .z = dev(z),
                      .ldz = E,
                      .AT = dev(AT),
                      .D = dev(D),
                      .y = dy,
                      .ldy = E,
                      .E = E,
                      .N = N,
                      .write_dt = true,
                      .ssm = {.base = dst, .stride = (size_t)E * N},
                      .seqs = one_seq(T),
                      .nseq = 1,
                      .maxT = T},
                     nullptr);
  std::vector<float> y(dy, dy + (size_t)T * E), dto(ddt, ddt + (size_t)T * E), so(dst, dst + (size_t)E * N);
  char name[96];
  std::snprintf(name, sizeof name, "scan T=%d E=%d N=%d", T, E, N);
  expect_rel(y, yc, 1e-5, std::string(name) + " y");
  expect_rel(dto, dtc, 1e-6, std::string(name) + " dt");
  expect_rel(so, stc, 1e-5, std::string(name) + " state");
}

static void test_score(int T, int E, int N, bool local, bool sum) {
  auto x = rnd((size_t)T * E), dt = rnd((size_t)T * E, 0.001f, 0.5f), alog = rnd((size_t)E * N, -1, 1),
       B = rnd((size_t)T * N), C = rnd((size_t)T * N);
  std::vector<float> AT((size_t)N * E);
  apply_layout(Layout::kNegExpTransposed, alog.data(), E, N, AT.data());
  cpu::SeqSlice sq{.row0 = 0, .T = T, .conv = nullptr, .ssm = nullptr};
  std::vector<float> ref(T), got(T);
  cpu::score({.x = x.data(),
              .ldx = E,
              .dt = dt.data(),
              .lddt = E,
              .B = B.data(),
              .C = C.data(),
              .ldbc = N,
              .AT = AT.data(),
              .E = E,
              .N = N,
              .local = local,
              .reduce_sum = sum,
              .seqs = &sq,
              .nseq = 1,
              .partial = nullptr},
             ref.data(), T);
  const int groups = (E + 31) / 32;
  float* part = dev(std::vector<float>((size_t)groups * T, -1.f));
  float* sc = dev(got);
  cu::simba_score({.x = dev(x),
                   .ldx = E,
                   .dt = dev(dt),
                   .lddt = E,
                   .B = dev(B),
                   .C = dev(C),
                   .ldbc = N,
                   .AT = dev(AT),
                   .E = E,
                   .N = N,
                   .local = local,
                   .reduce_sum = sum,
                   .seqs = one_seq(T),
                   .nseq = 1,
                   .maxT = T,
                   .rows = T,
                   .partial = part,
                   .score = sc},
                  nullptr);
  std::memcpy(got.data(), sc, T * 4);
  char name[96];
  std::snprintf(name, sizeof name, "score %s %s T=%d E=%d N=%d", local ? "local" : "simba", sum ? "sum" : "max", T, E,
                N);
  expect_rel(got, ref, 1e-5, name);
}

static void test_conv(int T, int E, int K, bool bias) {
  auto x = rnd((size_t)T * E), w = rnd((size_t)E * K), b = rnd(E), st = rnd((size_t)E * (K - 1));
  std::vector<float> wT((size_t)K * E);
  apply_layout(Layout::kTransposed, w.data(), E, K, wT.data());
  auto stc = st;
  std::vector<float> oc((size_t)T * E);
  cpu::SeqSlice sq{.row0 = 0, .T = T, .conv = stc.data(), .ssm = nullptr};
  cpu::conv1d({.xin = x.data(),
               .ldx = E,
               .out = oc.data(),
               .ldo = E,
               .wT = wT.data(),
               .bias = bias ? b.data() : nullptr,
               .E = E,
               .K = K,
               .seqs = &sq,
               .nseq = 1});
  float *dout = dev(oc), *dst = dev(st);
  cu::conv1d(dev(x), E, dout, E, dev(wT), bias ? dev(b) : nullptr, E, K, one_seq(T), 1, T,
             cu::StateRef{.base = dst, .stride = (size_t)E * (K - 1)}, nullptr);
  std::vector<float> o(dout, dout + (size_t)T * E), so(dst, dst + (size_t)E * (K - 1));
  char name[96];
  std::snprintf(name, sizeof name, "conv1d T=%d E=%d K=%d", T, E, K);
  expect_rel(o, oc, 1e-6, std::string(name) + " out");
  if (K > 1) expect_rel(so, stc, 0, std::string(name) + " state");
}

static void test_rmsnorm(int rows, int d) {
  auto x = rnd((size_t)rows * d, -3, 3), w = rnd(d), delta = rnd((size_t)rows * d);
  std::vector<float> h(x.size()), yc(x.size());
  for (size_t i = 0; i < h.size(); i++) h[i] = x[i] + delta[i];
  cpu::rmsnorm(h.data(), d, w.data(), yc.data(), d, rows, d, 1e-5f);
  float *dh = dev(x), *dy = dev(yc);
  cu::add_rmsnorm(dh, dev(delta), dev(w), dy, rows, d, 1e-5f, nullptr);
  std::vector<float> y(dy, dy + yc.size()), hh(dh, dh + h.size());
  expect_rel(y, yc, 1e-6, "add_rmsnorm rows=" + std::to_string(rows) + " d=" + std::to_string(d));
  expect_rel(hh, h, 0, "add_rmsnorm residual");
}

// ---------------------------------------------------------------- whole model

struct Run {
  std::vector<float> logits;
  std::vector<int> processed;
  std::vector<int32_t> exit;
};

static Run run_cpu(Model& m, const ForwardRequest& rq) {
  ForwardResult r = m.forward(rq);
  return {r.logits, r.processed, r.exit_layer};
}
static Run run_dev(cu::DeviceModel& m, const ModelConfig& c, const ForwardRequest& rq) {
  const simba_forward_t f{.tokens = rq.tokens.data(),
                          .n_tokens = (int)rq.tokens.size(),
                          .lengths = rq.lengths.data(),
                          .n_seq = (int)rq.lengths.size(),
                          .states = rq.states.data(),
                          .want = rq.want.data(),
                          .n_want = (int)rq.want.size(),
                          .simba_enabled = rq.simba.enabled,
                          .keep = rq.simba.keep.empty() ? nullptr : rq.simba.keep.data(),
                          .criterion = rq.simba.criterion,
                          .reduce_sum = rq.simba.reduce_sum,
                          .protect_first = rq.simba.protect_first,
                          .protect_last = rq.simba.protect_last,
                          .seed = rq.simba.seed};
  Run r;
  r.logits.resize(rq.want.size() * (size_t)c.vocab);
  r.processed.resize(rq.lengths.size() * c.L);
  r.exit.resize(rq.tokens.size());
  simba_result_t res{.logits = r.logits.data(), .processed = r.processed.data(), .exit_layer = r.exit.data()};
  m.forward(f, res);
  return r;
}

static void test_model(const std::string& label, ModelConfig c, bool bf16) {
  Model cpu_m(c, bf16);
  cpu_m.randomize(7);
  cpu_m.finalize();
  cu::DeviceModel dev_m(c, bf16, 0);
  dev_m.randomize(7);
  dev_m.finalize();
  const double tol = bf16 ? 2e-2 : 1e-4;
  const size_t SF = cpu_m.state_floats();
  std::vector<int> lens = {9, 70, 1};
  std::vector<int32_t> toks;
  std::uniform_int_distribution<int> tok(0, c.vocab - 1);
  for (int n : lens)
    for (int i = 0; i < n; i++) toks.push_back(tok(rng));
  // dense prefill, all positions wanted; then a decode step; from states with history.
  std::vector<std::vector<float>> sc_cpu(lens.size(), std::vector<float>(SF, 0.f)), sc_dev = sc_cpu;
  auto req = [&](std::vector<std::vector<float>>& states, const std::vector<int>& L, const std::vector<int32_t>& tk,
                 bool all) {
    ForwardRequest r;
    r.tokens = tk;
    r.lengths = L;
    for (auto& s : states) r.states.push_back(s.data());
    int total = (int)tk.size();
    if (all) {
      r.want.resize(total);
      std::iota(r.want.begin(), r.want.end(), 0);
    } else {
      int off = 0;
      for (int n : L) {
        off += n;
        r.want.push_back(off - 1);
      }
    }
    return r;
  };
  {
    auto a = run_cpu(cpu_m, req(sc_cpu, lens, toks, true));
    auto b = run_dev(dev_m, c, req(sc_dev, lens, toks, true));
    expect_rel(b.logits, a.logits, tol, label + " prefill logits (all positions)");
    for (size_t s = 0; s < lens.size(); s++)
      expect_rel(sc_dev[s], sc_cpu[s], tol, label + " prefill state " + std::to_string(s));
    expect(a.exit == b.exit && a.processed == b.processed, label + " prefill exit/processed");
  }
  {
    std::vector<int> one(lens.size(), 1);
    std::vector<int32_t> tk = {3 % c.vocab, 5 % c.vocab, 11 % c.vocab};
    auto a = run_cpu(cpu_m, req(sc_cpu, one, tk, false));
    auto b = run_dev(dev_m, c, req(sc_dev, one, tk, false));
    expect_rel(b.logits, a.logits, tol, label + " decode logits");
    for (size_t s = 0; s < lens.size(); s++)
      expect_rel(sc_dev[s], sc_cpu[s], tol, label + " decode state " + std::to_string(s));
  }
  // Simba: every criterion, max and sum, with protection; fresh states; all positions wanted.
  for (int crit = 0; crit < SIMBA_CRITERION_COUNT; crit++)
    for (int variant = 0; variant < 2; variant++) {
      std::vector<std::vector<float>> s1(lens.size(), std::vector<float>(SF, 0.f)), s2 = s1;
      ForwardRequest r1 = req(s1, lens, toks, true), r2 = req(s2, lens, toks, true);
      for (ForwardRequest* r : {&r1, &r2}) {
        r->simba.enabled = true;
        r->simba.criterion = crit;
        r->simba.reduce_sum = variant == 1;
        r->simba.protect_first = variant == 1 ? 2 : 0;
        r->simba.protect_last = variant == 1 ? 3 : 0;
        r->simba.seed = 99;
        for (size_t s = 0; s < lens.size(); s++)
          for (int l = 0; l < c.L; l++) {
            int T = lens[s];
            int k = std::max(1, (int)std::ceil(T * (1.0 - 0.8 * (l + 1) / c.L)));
            r->simba.keep.push_back(l == c.L - 1 ? k : k);
          }
      }
      auto a = run_cpu(cpu_m, r1);
      auto b = run_dev(dev_m, c, r2);
      const std::string tag = label + " simba crit=" + std::to_string(crit) + (variant ? " sum+protect" : " max");
      expect(a.processed == b.processed, tag + " processed");
      bool same_exit = a.exit == b.exit;
      expect(same_exit, tag + " exit layers (kept sets)");
      if (!same_exit) {
        std::printf("   cpu exit:");
        for (int v : a.exit) std::printf(" %d", v);
        std::printf("\n");
        std::printf("   dev exit:");
        for (int v : b.exit) std::printf(" %d", v);
        std::printf("\n");
      }
      expect_rel(b.logits, a.logits, tol, tag + " logits");
      for (size_t s = 0; s < lens.size(); s++) expect_rel(s2[s], s1[s], tol, tag + " state " + std::to_string(s));
    }
}

int main(int argc, char** argv) {
  const bool kernels_only = argc > 1 && std::string(argv[1]) == "kernels";
  setvbuf(stdout, nullptr, _IONBF, 0);
  for (bool bf : {false, true}) {
    test_gemm(1, 5, 3, bf);
    test_gemm(3, 40, 64, bf);
    test_gemm(8, 33, 17, bf);
    test_gemm(9, 70, 50, bf);
    test_gemm(130, 65, 200, bf);
    test_gemm(20, 129, 64, bf, 4);
    test_gemm(17, 31, 33, bf, 1);
  }
  test_rmsnorm(3, 37);
  test_rmsnorm(2, 600);
  for (int K : {1, 2, 3, 4})
    for (int T : {1, 5, 40}) test_conv(T, 37, K, K != 3);
  for (int N : {16, 5})
    for (int T : {1, 3, 5, 33, 64, 150}) test_scan(T, 37, N);
  test_scan(70, 64, 24);
  for (bool local : {false, true})
    for (bool sum : {false, true})
      for (int T : {1, 23, 150}) test_score(T, 37, local ? 7 : 16, local, sum);
  test_score(90, 40, 5, false, false);

  if (kernels_only) {
    std::printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
  }
  ModelConfig c;
  c.vocab = 61;
  c.d = 24;
  c.L = 3;
  c.E = 48;
  c.N = 16;
  c.R = 2;
  c.K = 4;
  c.eps = 1e-5f;
  test_model("base", c, false);
  test_model("base bf16", c, true);
  ModelConfig c2 = c;
  c2.d = 23;
  c2.E = 46;
  c2.N = 5;
  c2.K = 2;
  c2.R = 3;
  c2.tie = false;
  c2.proj_bias = true;
  c2.conv_bias = false;
  c2.L = 2;
  test_model("odd", c2, false);
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
