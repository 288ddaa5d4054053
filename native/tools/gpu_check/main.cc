// main.cc — simba_gpu_check: proves the CUDA backend in one call on a bare GPU machine (no Node).
// Loads libsimba_cuda.so through the addon's loader (engine/cuda_loader.h), compares it with the CPU
// engine (kernels, whole models dense and Simba-pruned, prefill then decode, batched decode on
// device-resident state slots), prints the comparison table and then the timings.
//
//   simba_gpu_check [--emulate] [--quick] [--no-timing | --timing] [--models LIST] [--model-dir DIR] [--lib PATH]
//     --emulate     load libsimba_cuda_emu.so (the backend compiled as host code, native/cuda/emu/)
//                   from next to this program: runs anywhere, no GPU; implies --no-timing
//     --quick       small inputs and few steps (CI)
//     --timing      timings on every model, also under --emulate (tests the timing code; numbers mean nothing)
//     --models      comma list of brown-mamba-s, mamba-130m, mamba-1.4b, mamba2-130m, tiny, tiny-falcon,
//                   tiny-mamba2 (default: brown-mamba-s,tiny-falcon,tiny-mamba2,mamba-130m,mamba2-130m
//                   [,mamba-1.4b without --quick]; --emulate: tiny,tiny-falcon,tiny-mamba2,brown-mamba-s)
//     --model-dir   the brown-mamba-s folder (default models/brown-mamba-s, from the repo root)
//     --lib         the backend library to load (sets SIMBA_CUDA_LIB)
// Exit status: 0 every comparison within its limit, 1 some failed, 2 could not run.
#include <unistd.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include "cpu/dispatch.h"
#include "tools/gpu_check/checks.h"

namespace simba {
namespace tools {

// ---------------------------------------------------------------- the table

void Report::add(const std::string& section, const std::string& name, double err, double limit,
                 const std::string& note) {
  Row r{section, name, err, limit, err <= limit, note};
  rows_.push_back(r);
  std::fprintf(stderr, "  %-4s %-22s %-62s %.2e (limit %.0e)\n", r.pass ? "ok" : "FAIL", section.c_str(), name.c_str(),
               err, limit);
}

void Report::add_bool(const std::string& section, const std::string& name, bool ok, const std::string& note) {
  rows_.push_back(Row{section, name, ok ? 0.0 : 1.0, -1, ok, note});
  std::fprintf(stderr, "  %-4s %-22s %s\n", ok ? "ok" : "FAIL", section.c_str(), name.c_str());
}

void Report::add_timing(const std::string& section, const std::string& name, double value, const std::string& unit,
                        const std::string& note) {
  timings_.push_back(Timing{section, name, value, unit, note});
  std::fprintf(stderr, "  time %-22s %-50s %.4g %s\n", section.c_str(), name.c_str(), value, unit.c_str());
}

int Report::failures() const {
  int n = 0;
  for (const Row& r : rows_) n += !r.pass;
  return n;
}

int Report::print() const {
  std::printf(
      "\n| section | check | rel. error (device vs CPU) | limit | result | note |\n|---|---|---|---|---|---|\n");
  for (const Row& r : rows_) {
    if (r.limit < 0)
      std::printf("| %s | %s | - | yes/no | %s | %s |\n", r.section.c_str(), r.name.c_str(), r.pass ? "ok" : "FAIL",
                  r.note.c_str());
    else
      std::printf("| %s | %s | %.2e | %.0e | %s | %s |\n", r.section.c_str(), r.name.c_str(), r.err, r.limit,
                  r.pass ? "ok" : "FAIL", r.note.c_str());
  }
  if (!timings_.empty()) {
    std::printf("\n| section | timing | value | unit | note |\n|---|---|---|---|---|\n");
    for (const Timing& t : timings_)
      std::printf("| %s | %s | %.4g | %s | %s |\n", t.section.c_str(), t.name.c_str(), t.value, t.unit.c_str(),
                  t.note.c_str());
  }
  const int f = failures();
  std::printf("\n%zu comparisons, %d failed\n", rows_.size(), f);
  return f;
}

// ---------------------------------------------------------------- shapes

ModelConfig shape(const std::string& name) {
  ModelConfig c;
  if (name == "tiny") {  // the emulation's model (native/cuda/emu/emu_test.cc "base")
    c.vocab = 61;
    c.d = 24;
    c.L = 3;
    c.E = 48;
    c.N = 16;
    c.R = 2;
    c.K = 4;
    return c;
  }
  // Falcon-Mamba: tiny's shape, untied, norms of dt, B, C inside the mixer; their epsilon is far from
  // the block norms' (1e-5), so a backend that used the wrong one fails the comparison.
  if (name == "tiny-falcon") {
    c = shape("tiny");
    c.R = 6;
    c.tie = false;
    c.mixer_rms_eps = 0.05f;
    return c;
  }
  // Mamba-2: G > 1, head_dim 12 != d_state 8, untied, dt clamped to [0.002, 0.08] (inside the range a
  // random model's dt takes, so some tokens clamp).
  if (name == "tiny-mamba2") {
    c = shape("tiny");
    c.R = 0;
    c.N = 8;
    c.tie = false;
    c.family = kMamba2;
    c.H = 4;
    c.G = 2;
    c.dt_min = 0.002f;
    c.dt_max = 0.08f;
    return c;
  }
  if (name == "mamba2-130m") {  // state-spaces/mamba2-130m
    c.vocab = 50288;
    c.d = 768;
    c.L = 24;
    c.E = 1536;
    c.N = 128;
    c.K = 4;
    c.family = kMamba2;
    c.H = 24;
    c.G = 1;
    c.dt_max = INFINITY;
    return c;
  }
  const int d = name == "mamba-130m" ? 768 : name == "mamba-1.4b" ? 2048 : 0;
  const int L = name == "mamba-130m" ? 24 : 48;
  if (!d)
    throw std::invalid_argument("unknown model '" + name +
                                "' (known: brown-mamba-s, mamba-130m, mamba-1.4b, mamba2-130m, tiny, tiny-falcon, "
                                "tiny-mamba2)");
  c.vocab = 50280;
  c.d = d;
  c.L = L;
  c.E = 2 * d;
  c.N = 16;
  c.R = (d + 15) / 16;
  c.K = 4;
  return c;
}

// The small random models (tiny, tiny-falcon, tiny-mamba2): every criterion, bf16 under emulation, no timings.
bool tiny(const std::string& name) { return name.rfind("tiny", 0) == 0; }

double elapsed_s() {
  static const auto t0 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string exe_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, n);
  return p.substr(0, p.rfind('/'));
}

int run(int argc, char** argv) {
  elapsed_s();
  bool emulate = false, quick = false, timing = true, force_timing = false;
  std::string models, model_dir = "models/brown-mamba-s", lib;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--emulate") emulate = true;
    else if (a == "--quick") quick = true;
    else if (a == "--no-timing") timing = false;
    else if (a == "--timing") force_timing = true;
    else if (a == "--models") models = value();
    else if (a == "--model-dir") model_dir = value();
    else if (a == "--lib") lib = value();
    else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: simba_gpu_check [--emulate] [--quick] [--no-timing | --timing] [--models LIST] [--model-dir DIR] "
          "[--lib PATH]\n");
      return 0;
    } else throw std::invalid_argument("unknown argument '" + a + "' (see --help)");
  }
  if (emulate) {
    timing = force_timing;
    if (lib.empty()) lib = exe_dir() + "/libsimba_cuda_emu.so";
    if (models.empty()) models = "tiny,tiny-falcon,tiny-mamba2,brown-mamba-s";
  }
  if (models.empty())
    models = quick ? "brown-mamba-s,tiny-falcon,tiny-mamba2,mamba-130m,mamba2-130m"
                   : "brown-mamba-s,tiny-falcon,tiny-mamba2,mamba-130m,mamba2-130m,mamba-1.4b";
  if (!lib.empty()) setenv("SIMBA_CUDA_LIB", lib.c_str(), 1);
  else if (!std::getenv("SIMBA_CUDA_LIB")) setenv("SIMBA_CUDA_LIB", (exe_dir() + "/libsimba_cuda.so").c_str(), 1);

  const CudaStatus& st = cuda_status();
  std::fprintf(stderr, "simba_gpu_check: CPU kernels %s; backend %s\n", cpu::active().name,
               st.available ? (st.library + " (" + st.device + ")").c_str() : "unavailable");
  if (!st.available) {
    std::fprintf(stderr, "simba_gpu_check: %s\n", st.reason.c_str());
    return 2;
  }
  const simba_backend_v1_t& b = cuda_backend();
  Sizes sz{quick || emulate, emulate};
  Report rep;
  std::fprintf(stderr, "simba_gpu_check: kernels\n");
  check_kernels(rep, b, sz, 12345);
  if (timing) time_scan(rep, b, sz);

  std::stringstream list(models);
  std::string name;
  LoadedModel brown;
  while (std::getline(list, name, ',')) {
    ModelSpec spec;
    spec.label = name;
    if (name == "brown-mamba-s") {
      brown = load_model_dir(model_dir);
      spec.cfg = brown.cfg;
      spec.loaded = &brown;
      spec.simba_all_criteria = !emulate;  // emulation: the tiny model covers every criterion
    } else {
      spec.cfg = shape(name);
      spec.seed = 7;
      spec.simba_all_criteria = tiny(name);
    }
    for (bool bf16 : {false, true}) {
      if (bf16 && emulate && !tiny(name)) continue;  // emulation is slow: bf16 on the tiny models only
      std::fprintf(stderr, "simba_gpu_check: %s %s (at %.1f s)\n", name.c_str(), bf16 ? "bf16" : "f32", elapsed_s());
      auto dev = make_cuda_model(spec, bf16);
      {
        auto cpu = make_cpu_model(spec, bf16);
        check_model(rep, spec, *cpu, *dev, sz);
      }
      // mamba2-130m: f32 timings only (its 19 MB states make the host-state decode contrast slow;
      // keeps the device command near its 8 minutes)
      const bool timed = !tiny(name) && name != "brown-mamba-s" && !(name == "mamba2-130m" && bf16);
      if (timing && (force_timing || timed)) time_model(rep, name, *dev, sz);
    }
  }
  std::printf("simba_gpu_check: %s%s, backend %s (%s)\n", emulate ? "emulation" : "device", quick ? ", quick" : "",
              st.library.c_str(), st.device.c_str());
  return rep.print() ? 1 : 0;
}

}  // namespace tools
}  // namespace simba

int main(int argc, char** argv) {
  setvbuf(stderr, nullptr, _IONBF, 0);
  try {
    return simba::tools::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simba_gpu_check: %s\n", e.what());
    return 2;
  }
}
