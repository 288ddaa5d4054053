// checks.h — what simba_gpu_check compares and times, and the table it prints.
//
// Every comparison is the relative error ||dev - cpu||_2 / ||cpu||_2 (float64 sums) of the CUDA
// backend (loaded through engine/cuda_loader.h, as the addon loads it) against the CPU engine on the
// same inputs: fresh random kernel inputs, or whole models with the same weights.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/cuda_loader.h"
#include "engine/model.h"
#include "tools/gpu_check/safetensors_reader.h"

namespace simba {
namespace tools {

// One line of the comparison table. limit < 0: a yes/no check (err is 0 or 1, pass = err == 0).
struct Row {
  std::string section, name;
  double err = 0, limit = 0;
  bool pass = true;
  std::string note;
};

class Report {
 public:
  void add(const std::string& section, const std::string& name, double err, double limit, const std::string& note = "");
  void add_bool(const std::string& section, const std::string& name, bool ok, const std::string& note = "");
  void add_timing(const std::string& section, const std::string& name, double value, const std::string& unit,
                  const std::string& note = "");
  // Prints the comparison table, then the timings; returns the number of failed comparisons.
  int print() const;
  int failures() const;

 private:
  struct Timing {
    std::string section, name;
    double value;
    std::string unit, note;
  };
  std::vector<Row> rows_;
  std::vector<Timing> timings_;
};

// How much to run: quick (CI, emulation) uses small inputs and few steps.
struct Sizes {
  bool quick = false;
  bool emulate = false;
};

// A model both engines build: random weights of cfg (seed), or the tensors of a loaded folder.
struct ModelSpec {
  std::string label;
  ModelConfig cfg;
  const LoadedModel* loaded = nullptr;
  uint64_t seed = 1;
  bool simba_all_criteria = false;  // every Simba criterion, not just 'simba' (small models)
};

// Relative error ||a - b|| / ||b|| (||a - b|| when b is all zeros); sizes must match.
double rel_err(const float* a, const float* b, size_t n);

std::unique_ptr<Model> make_cpu_model(const ModelSpec& spec, bool bf16);
std::unique_ptr<CudaModel> make_cuda_model(const ModelSpec& spec, bool bf16);

// Kernels on fresh random inputs: gemm (f32, bf16), rmsnorm, conv1d, selective scan, Simba score;
// Mamba-2's SSD scan (dt included), its Simba score and the gated norm.
void check_kernels(Report& rep, const simba_backend_v1_t& b, const Sizes& sz, uint64_t seed);
// Whole model on both engines: dense prefill (logits, states), decode steps after it, Simba-pruned
// prefill (kept sets, processed counts, logits), batched decode with device-resident state slots
// (logits, states, snapshot / restore of one slot).
void check_model(Report& rep, const ModelSpec& spec, Model& cpu, CudaModel& dev, const Sizes& sz);

// Timings (timing.cc): the scan's bytes/s against a device copy; and on one model: prefill tok/s
// at 8 x 2048 dense and at flops 0.5, decode tok/s at batch 1, 32, 256 (device-resident states).
void time_scan(Report& rep, const simba_backend_v1_t& b, const Sizes& sz);
void time_model(Report& rep, const std::string& label, CudaModel& dev, const Sizes& sz);

}  // namespace tools
}  // namespace simba
