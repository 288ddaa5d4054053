// model.h — a Mamba model in native memory and its forward pass on the CPU, with Simba token
// pruning between layers. One forward() serves prefill (many tokens per sequence), decode (one
// token per sequence) and continued prefill: every sequence continues from its recurrent state.
// A layer is norm, mixer, residual: the mixer (engine/mixer.h) is the family's part (Mamba-1:
// engine/mixer_mamba1.cc, Mamba-2: engine/mixer_mamba2.cc), the pruning between layers is engine/prune.cc.
//
// Glossary: d = dModel, E = dInner, N = dState, R = dtRank, K = dConv, L = nLayer, V = vocab.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/request_check.h"
#include "common/tensor_table.h"
#include "cpu/kernels.h"
#include "engine/mixer.h"

namespace simba {

// 64-byte aligned storage, zero-initialised unless the owner writes every byte itself (zero = false:
// the pages are then first touched by whoever fills them, e.g. the parallel packing).
class AlignedBuf {
 public:
  AlignedBuf() = default;
  explicit AlignedBuf(size_t bytes, bool zero = true);
  void* data() const { return p_.get(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    size_t bytes;
    void operator()(void* p) const;
  };  // bytes: value-initialised (0) when empty
  std::unique_ptr<void, Free> p_;
  size_t bytes_ = 0;
};

// A linear layer's weight, packed for the GEMM (cpu::PackedWeight view + its storage).
struct Linear {
  cpu::PackedWeight w;
  AlignedBuf store;
  AlignedBuf qmeta;         // Q8: scale [npanels*32] floats, then colsum [npanels*32] int32; Q4: the block scales
  std::vector<float> bias;  // empty when absent
};

// W [N, K] row-major -> lin.w packed in the given format (kernels.h): f32 as is, bf16 rounded to
// nearest even, int8 with a symmetric scale per output feature (round to nearest), int4 with a
// half-float scale per output feature and block of 32 k (model.cc quantize_q4_block).
void pack_linear(Linear& lin, const float* W, int N, int K, cpu::WeightFormat format);
// The format a matrix with this id is stored in under the model's format (int4: the embedding and head int8).
cpu::WeightFormat matrix_format(cpu::WeightFormat model, TensorId id);
inline void pack_linear(Linear& lin, const float* W, int N, int K, bool bf16) {
  pack_linear(lin, W, N, K, bf16 ? cpu::WeightFormat::BF16 : cpu::WeightFormat::F32);
}

// The CPU engine's weights: matrices packed for the GEMM, vectors in plain host memory
// (tensor_table.h says what each holds and in which layout).
using Layer = LayerWeights<Linear, std::vector<float>>;
using Weights = ModelWeights<Linear, std::vector<float>>;

// The mixer of the config's family (engine/mixer.cc: Mamba-1 and Falcon-Mamba mixer_mamba1.cc,
// Mamba-2 mixer_mamba2.cc), reading its weights from w, and the scratch floats per activation row it needs.
std::unique_ptr<Mixer> make_mixer(const ModelConfig& c, const Weights& w);
size_t mixer_floats_per_row(const ModelConfig& c);
std::unique_ptr<Mixer> make_mamba1_mixer(const ModelConfig& c, const Weights& w);
size_t mamba1_floats_per_row(const ModelConfig& c);
std::unique_ptr<Mixer> make_mamba2_mixer(const ModelConfig& c, const Weights& w);
size_t mamba2_floats_per_row(const ModelConfig& c);

struct SimbaOptions {
  bool enabled = false;
  std::vector<int> keep;                  // [nseq * L]: tokens kept after layer l of sequence s at keep[s*L + l]
  int criterion = SIMBA_CRITERION_SIMBA;  // a simba_criterion_t as given (check_request checks it)
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
  // The caller's cancel flag (optional): once it holds a non-zero value the forward stops at its
  // next layer with E_ABORTED. The states are then partly updated: a caller that cancels works on
  // copies it drops. Written by another thread, read here atomically.
  int32_t* cancel = nullptr;
};

// Throws E_ABORTED when the request's cancel flag is set.
void check_cancel(const ForwardRequest& req);

// The request as request_check.h checks it.
inline RequestView request_view(const ForwardRequest& r) {
  return {.tokens = r.tokens.data(),
          .n_tokens = r.tokens.size(),
          .lengths = r.lengths.data(),
          .n_seq = r.lengths.size(),
          .states = r.states.data(),
          .n_states = r.states.size(),
          .want = r.want.data(),
          .n_want = r.want.size(),
          .simba = r.simba.enabled,
          .n_keep = r.simba.keep.size(),
          .criterion = r.simba.criterion};
}

struct ForwardResult {
  std::vector<float> logits;        // [want.size(), V]
  std::vector<int> processed;       // [nseq * L]: tokens each layer processed, per sequence
  std::vector<int32_t> exit_layer;  // [tokens]: number of layers the token went through (L = all)
};

// The bytes the CPU engine needs for a config, computed without allocating anything.
struct MemoryPlan {
  size_t weight_bytes;      // the packed matrices: what Model::weight_bytes() reports once loaded
  size_t other_bytes;       // vectors, biases, A in the state's layout
  size_t staging_bytes;     // the largest tensor held in f32 on its way to the engine (load, randomize)
  size_t state_bytes;       // one sequence's recurrent state
  size_t token_bytes;       // activations per token of a forward (the scratch grows with the prompt)
  size_t logits_row_bytes;  // one row of logits
};
MemoryPlan plan_memory(const ModelConfig& c, cpu::WeightFormat format);

// Process-wide counters for leak checks (addon memoryStats()): live Models, bytes in AlignedBufs.
struct NativeMemoryStats {
  int64_t models, aligned_bytes;
};
NativeMemoryStats native_memory_stats();

struct LiveRows;  // the rows alive in a forward (engine/prune.h)

class Model {
 public:
  Model(const ModelConfig& cfg, cpu::WeightFormat format);
  Model(const ModelConfig& cfg, bool bf16) : Model(cfg, bf16 ? cpu::WeightFormat::BF16 : cpu::WeightFormat::F32) {}
  ~Model();
  const ModelConfig& config() const { return cfg_; }
  bool bf16() const { return format_ == cpu::WeightFormat::BF16; }
  cpu::WeightFormat format() const { return format_; }

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
  struct Store;        // how set_tensor stores (model.cc)
  struct Activations;  // one forward's buffers (model.cc)
  struct TrimScratch;  // frees a long prompt's scratch when a forward ends (model.cc)
  Activations carve_activations(size_t rows, bool prune);
  void embed(const std::vector<int32_t>& tokens, float* h) const;
  void final_logits(const float* h, LiveRows& rows, ForwardResult& res) const;

  ModelConfig cfg_;
  cpu::WeightFormat format_;
  WeightLoader loader_;
  Weights w_;                     // the embedding rows are read from its packed layout, and it is the tied head
  std::unique_ptr<Mixer> mixer_;  // reads w_
  std::mutex mu_;                 // one forward at a time (scratch, mixer buffers, thread pool)
  // Activation scratch, reused across calls (grow-only, uninitialised: every buffer carved from it
  // is written before it is read).
  std::unique_ptr<float[]> scratch_;
  size_t scratch_floats_ = 0;
  float* scratch(size_t floats);
};

}  // namespace simba
