// model.h — a Mamba-1 model in native memory and its forward pass on the CPU, with Simba token
// pruning between layers. One forward() serves prefill (many tokens per sequence), decode (one
// token per sequence) and continued prefill: every sequence continues from its recurrent state.
//
// Glossary: d = dModel, E = dInner, N = dState, R = dtRank, K = dConv, L = nLayer, V = vocab.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "engine/tensor_table.h"

namespace simba {

// 64-byte aligned, zero-initialised storage.
class AlignedBuf {
 public:
  AlignedBuf() = default;
  explicit AlignedBuf(size_t bytes);
  void* data() const { return p_.get(); }
  size_t bytes() const { return bytes_; }
 private:
  struct Free { void operator()(void* p) const; };
  std::unique_ptr<void, Free> p_;
  size_t bytes_ = 0;
};

// A linear layer's weight, packed for the GEMM (cpu::PackedWeight view + its storage).
struct Linear {
  cpu::PackedWeight w;
  AlignedBuf store;
  std::vector<float> bias;  // empty when absent
};

// W [N, K] row-major -> lin.w packed (f32 or bf16, round to nearest even).
void pack_linear(Linear& lin, const float* W, int N, int K, bool bf16);

// The CPU engine's weights: matrices packed for the GEMM, vectors in plain host memory
// (tensor_table.h says what each holds and in which layout).
using Layer = LayerWeights<Linear, std::vector<float>>;
using Weights = ModelWeights<Linear, std::vector<float>>;

enum class Criterion { Simba = 0, Local = 1, Norm = 2, Uniform = 3, Random = 4 };

struct SimbaOptions {
  bool enabled = false;
  std::vector<int> keep;  // [nseq * L]: tokens kept after layer l of sequence s at keep[s*L + l]
  Criterion criterion = Criterion::Simba;
  bool reduce_sum = false;
  int protect_first = 0, protect_last = 0;
  uint64_t seed = 0;
};

struct ForwardRequest {
  std::vector<int32_t> tokens;  // all sequences' new tokens, concatenated
  std::vector<int> lengths;     // tokens per sequence (>= 1)
  std::vector<float*> states;   // per sequence: state_floats() floats, read and updated in place
  // Which positions get logits: global indices into tokens (sequence offset + position).
  std::vector<int> want;
  SimbaOptions simba;
};

struct ForwardResult {
  std::vector<float> logits;     // [want.size(), V]
  std::vector<int> processed;    // [nseq * L]: tokens each layer processed, per sequence
  std::vector<int32_t> exit_layer;  // [tokens]: number of layers the token went through (L = all)
};

class Model {
 public:
  Model(const ModelConfig& cfg, bool bf16);
  const ModelConfig& config() const { return cfg_; }
  bool bf16() const { return bf16_; }

  // Upload one tensor (f32, row-major, checkpoint shape; names and shapes: tensor_table.h).
  // Throws a simba::Error (E_WEIGHTS, E_SHAPE, E_ARG) naming the tensor on a bad name, layer or size.
  void set_tensor(const std::string& name, int layer, const float* data, size_t count);
  // Fill every tensor with random, sanely scaled values (benchmarks without checkpoints).
  void randomize(uint64_t seed);
  // Throws E_WEIGHTS unless every required tensor has been set.
  void finalize() { loader_.finalize(); }
  bool ready() const { return loader_.ready(); }

  size_t state_floats() const { return simba::state_floats(cfg_); }
  size_t layer_state_floats() const { return simba::layer_state_floats(cfg_); }
  size_t param_count() const { return simba::param_count(cfg_); }
  size_t weight_bytes() const;

  ForwardResult forward(const ForwardRequest& req);

 private:
  struct Store;  // how set_tensor stores (model.cc)

  ModelConfig cfg_;
  bool bf16_;
  WeightLoader loader_;
  Weights w_;  // the embedding rows are read from its packed layout, and it is the tied head
  std::mutex mu_;  // one forward at a time (scratch, thread pool)
  // Activation scratch, reused across calls (grow-only, uninitialised: every buffer carved from it
  // is written before it is read).
  std::unique_ptr<float[]> scratch_;
  size_t scratch_floats_ = 0;
  float* scratch(size_t floats);
};

}  // namespace simba
