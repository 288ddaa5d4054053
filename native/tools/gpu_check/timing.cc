// timing.cc — the timings of simba_gpu_check (see checks.h). Wall-clock around whole forward calls
// (each returns only when its results are on the host), best of a few runs after a warm-up.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "tools/gpu_check/checks.h"

namespace simba {
namespace tools {

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
double best_of(int runs, F f) {
  f();  // warm-up (workspace growth, first-touch)
  double best = INFINITY;
  for (int i = 0; i < runs; i++) {
    const double t0 = now_s();
    f();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

std::vector<int32_t> random_ids(std::mt19937& rng, size_t n, int vocab) {
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& t : v) t = tok(rng);
  return v;
}

// Keep counts for a relative cost of about `flops` (sum_l n_l / (L T)): n_l = T (1 - s l), s
// solved for the budget, at least one token; keep[l] = n_{l+1}. Returns the exact relative cost.
double keep_plan(int T, int L, double flops, std::vector<int>& keep) {
  const double s = L > 1 ? 2.0 * (1.0 - flops) / (L - 1) : 0;
  std::vector<int> n(L + 1);
  for (int l = 0; l <= L; l++) n[l] = std::max(1, (int)std::ceil(T * std::max(0.0, 1.0 - s * l)));
  n[0] = T;
  keep.assign(n.begin() + 1, n.end());
  double sum = 0;
  for (int l = 0; l < L; l++) sum += n[l];
  return sum / ((double)L * T);
}

}  // namespace

void time_scan(Report& rep, const simba_backend_v1_t& b, const Sizes& sz) {
  const int nseq = sz.quick ? 2 : 8, T = sz.quick ? 256 : 2048, E = 1536, N = 16;
  double ms = 0, bytes = 0, copy_gbs = 0;
  char err[1024] = {0};
  if (b.bench_scan(nseq, T, E, N, sz.quick ? 3 : 20, &ms, &bytes, &copy_gbs, err, sizeof err) != 0)
    throw std::runtime_error(std::string("bench_scan: ") + err);
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  const std::string shape = std::to_string(nseq) + " x " + std::to_string(T) + " tokens, E=1536 N=16";
  rep.add_timing("scan", "selective scan (" + shape + ")", gbs, "GB/s",
                 std::to_string(ms).substr(0, 6) + " ms per scan");
  rep.add_timing("scan", "device-to-device copy (read + write)", copy_gbs, "GB/s");
  rep.add_timing("scan", "scan / copy bandwidth", 100.0 * gbs / copy_gbs, "%");
}

void time_model(Report& rep, const std::string& label, CudaModel& dev, const Sizes& sz) {
  const ModelConfig& c = dev.config();
  const std::string sec = label + (dev.bf16() ? " bf16" : " f32");
  const size_t SF = dev.state_floats();
  std::mt19937 rng(4242);
  const int runs = sz.quick ? 1 : 3;
  // ---- prefill 8 x 2048 from zero states, logits at each sequence's last token: dense and flops 0.5
  const int B = sz.quick ? 2 : 8, T = sz.quick ? 128 : 2048;
  std::vector<std::vector<float>> states(B, std::vector<float>(SF));
  ForwardRequest r;
  r.tokens = random_ids(rng, (size_t)B * T, c.vocab);
  r.lengths.assign(B, T);
  for (int s = 0; s < B; s++) {
    r.states.push_back(states[s].data());
    r.want.push_back(s * T + T - 1);
  }
  auto prefill = [&] {
    for (auto& s : states) std::fill(s.begin(), s.end(), 0.f);
    dev.forward(r);
  };
  const std::string pshape = std::to_string(B) + " x " + std::to_string(T);
  double t = best_of(runs, prefill);
  rep.add_timing(sec, "prefill " + pshape + " dense", (double)B * T / t, "tok/s");
  std::vector<int> keep;
  const double rel = keep_plan(T, c.L, 0.5, keep);
  r.simba.enabled = true;
  r.simba.criterion = SIMBA_CRITERION_SIMBA;
  for (int s = 0; s < B; s++) r.simba.keep.insert(r.simba.keep.end(), keep.begin(), keep.end());
  t = best_of(runs, prefill);
  rep.add_timing(sec, "prefill " + pshape + " simba flops 0.5", (double)B * T / t, "tok/s",
                 "relFlops " + std::to_string(rel).substr(0, 5));

  // ---- decode at batch 1, 32, 256: 16-token prompts, then lockstep steps on device-resident slots
  const int steps = sz.quick ? 4 : 32;
  for (int batch : sz.quick ? std::vector<int>{1, 4} : std::vector<int>{1, 32, 256}) {
    for (bool host : {false, true}) {
      if (host && batch != (sz.quick ? 4 : 256)) continue;  // host-state decode only at the largest batch, for contrast
      if (!host && !dev.has_device_states()) continue;
      std::vector<int32_t> slots;
      std::vector<std::vector<float>> hs(host ? batch : 0, std::vector<float>(SF, 0.f));
      for (int i = 0; !host && i < batch; i++) slots.push_back(dev.alloc_state());
      auto step = [&](int len) {
        ForwardRequest d;
        d.tokens = random_ids(rng, (size_t)batch * len, c.vocab);
        d.lengths.assign(batch, len);
        for (int s = 0; s < batch; s++) {
          d.want.push_back(s * len + len - 1);
          if (host) d.states.push_back(hs[s].data());
        }
        if (host) dev.forward(d);
        else dev.forward_slots(d, slots);
      };
      step(16);  // prompts
      step(1);   // warm-up
      const double t0 = now_s();
      for (int i = 0; i < steps; i++) step(1);
      const double dt = now_s() - t0;
      rep.add_timing(sec,
                     "decode B=" + std::to_string(batch) + (host ? " (host states, for contrast)" : " (device states)"),
                     (double)batch * steps / dt, "tok/s", std::to_string(steps) + " steps");
      for (int32_t s : slots) dev.free_state(s);
    }
  }
}

}  // namespace tools
}  // namespace simba
