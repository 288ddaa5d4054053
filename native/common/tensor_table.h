// tensor_table.h — the one description of a model's weights that the CPU engine (engine/model.cc), the CUDA
// engine (cuda/model_cuda.cc) and, through the addon, the TypeScript loader share: per tensor its
// name, its shape from the config, whether the config has it, and how it is stored (its layout
// transform). Loading is written here once — name / layer / size checks, the transform, the
// required-tensor check and the deterministic random weights — and each engine only stores: it
// supplies three functions that put a matrix, a bias or a vector where its forward pass reads it.
// (The forward-request checks both engines share are in request_check.h.)
// Header-only and free of both engines' types: the CUDA library is built separately.
//
// Glossary: d = dModel, E = dInner, N = dState, R = dtRank, K = dConv, L = nLayer, V = vocab;
// Mamba-2: H heads of P = E / H channels, G groups of B and C (head h reads group h / (H / G)),
// CH = E + 2 G N conv channels (x, B and C convolved together).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/backend_api.h"
#include "common/errors.h"
#include "common/shape_limits.h"

namespace simba {

// The model families by their mixer (simba_config_t.family). Falcon-Mamba is kMamba1 with
// ModelConfig::mixer_rms_eps > 0 (the same tensors and steps, plus three norms).
enum Family : int { kMamba1 = 0, kMamba2 = 1 };

// Shapes of a model. Both engines hold one (the CUDA library receives it as simba_config_t).
struct ModelConfig {
  int vocab = 0, d = 0, L = 0, E = 0, N = 0, R = 0, K = 0;
  bool conv_bias = true, proj_bias = false, tie = true;
  float eps = 1e-5f;
  // Falcon-Mamba: > 0 is the epsilon of the weightless RMS norms the mixer applies to dt_low, B and C
  // (each slice of x_proj's output on its own); 0 is Mamba-1, which has none. Same tensors either way.
  float mixer_rms_eps = 0.f;
  // Mamba-2 (family kMamba2; R is 0: dt comes from in_proj, one per head): H heads, G groups of B
  // and C, dt clamped to [dt_min, dt_max] after the softplus (dt_max may be +infinity). The eps
  // above is also the gated norm's. All 0 for Mamba-1.
  int family = kMamba1;
  int H = 0, G = 0;
  float dt_min = 0.f, dt_max = 0.f;
};

// Mamba-2's derived sizes: channels per head, conv channels, in_proj rows [z | x | B | C | dt].
inline int head_dim(const ModelConfig& c) { return c.H > 0 ? c.E / c.H : 0; }
inline int conv_channels(const ModelConfig& c) { return c.family == kMamba2 ? c.E + 2 * c.G * c.N : c.E; }
inline int in_proj_rows(const ModelConfig& c) { return c.family == kMamba2 ? 2 * c.E + 2 * c.G * c.N + c.H : 2 * c.E; }

inline ModelConfig from_abi(const simba_config_t& c) {
  return {.vocab = c.vocab,
          .d = c.d,
          .L = c.L,
          .E = c.E,
          .N = c.N,
          .R = c.R,
          .K = c.K,
          .conv_bias = c.conv_bias != 0,
          .proj_bias = c.proj_bias != 0,
          .tie = c.tie != 0,
          .eps = c.eps,
          .mixer_rms_eps = c.mixer_rms_eps,
          .family = c.family,
          .H = c.H,
          .G = c.G,
          .dt_min = c.dt_min,
          .dt_max = c.dt_max};
}
inline simba_config_t to_abi(const ModelConfig& c) {
  return {.vocab = c.vocab,
          .d = c.d,
          .L = c.L,
          .E = c.E,
          .N = c.N,
          .R = c.R,
          .K = c.K,
          .conv_bias = c.conv_bias,
          .proj_bias = c.proj_bias,
          .tie = c.tie,
          .eps = c.eps,
          .mixer_rms_eps = c.mixer_rms_eps,
          .family = c.family,
          .H = c.H,
          .G = c.G,
          .dt_min = c.dt_min,
          .dt_max = c.dt_max};
}

// Throws E_CONFIG naming the first size the engines cannot run.
inline void check_config(const ModelConfig& c) {
  auto positive = [](int v, const char* what) {
    if (v <= 0)
      fail(SIMBA_E_CONFIG, std::string("config: ") + what + " must be a positive integer, got " + std::to_string(v));
  };
  auto config_error = [](const std::string& what) { fail(SIMBA_E_CONFIG, "config: " + what); };
  if (c.family != kMamba1 && c.family != kMamba2)
    config_error("family must be 0 (Mamba-1) or 1 (Mamba-2), got " + std::to_string(c.family));
  positive(c.vocab, "vocabSize");
  positive(c.d, "dModel");
  positive(c.L, "nLayer");
  positive(c.E, "dInner");
  positive(c.N, "dState");
  positive(c.K, "dConv");
  if (c.family == kMamba1) {
    positive(c.R, "dtRank");
    if (c.H != 0 || c.G != 0) config_error("nHeads and nGroups are Mamba-2's (0 for Mamba-1)");
  } else {
    if (c.R != 0) config_error("dtRank is Mamba-1's (0 for Mamba-2: dt comes from in_proj, one per head)");
    positive(c.H, "nHeads");
    positive(c.G, "nGroups");
    if (c.E % c.H != 0)
      config_error("dInner " + std::to_string(c.E) + " is not a multiple of nHeads " + std::to_string(c.H));
    if (c.H % c.G != 0)
      config_error("nHeads " + std::to_string(c.H) + " do not split into nGroups " + std::to_string(c.G));
    if (!(c.dt_min >= 0) || !std::isfinite(c.dt_min) || !(c.dt_max >= c.dt_min))
      config_error("dtLimit must be [low, high] with 0 <= low <= high (high may be Infinity)");
    if (c.mixer_rms_eps != 0) config_error("mixerRmsEps is Falcon-Mamba's (0 for Mamba-2)");
    // in_proj's rows and the conv channels stay 32-bit
    if ((int64_t)2 * c.E + 2 * (int64_t)c.G * c.N + c.H > (int64_t)1 << 30)
      config_error("in_proj would have more than 2^30 rows");
  }
  if (c.K > kMaxConv)
    fail(SIMBA_E_CONFIG,
         "config: dConv " + std::to_string(c.K) + " is larger than the supported " + std::to_string(kMaxConv));
  if (c.N > kMaxState)
    fail(SIMBA_E_CONFIG,
         "config: dState " + std::to_string(c.N) + " is larger than the supported " + std::to_string(kMaxState));
  if (!(c.eps > 0) || !std::isfinite(c.eps)) fail(SIMBA_E_CONFIG, "config: eps must be a positive number");
  if (!(c.mixer_rms_eps >= 0) || !std::isfinite(c.mixer_rms_eps))
    fail(SIMBA_E_CONFIG, "config: mixerRmsEps must be 0 (Mamba-1) or a positive number (Falcon-Mamba), got " +
                             std::to_string(c.mixer_rms_eps));
}

// Floats of one sequence's recurrent state: per layer the conv state [CH, K-1] (CH = E for Mamba-1)
// then the SSM state: [E, N] for Mamba-1, [H, P, N] (the same E N floats) for Mamba-2.
inline size_t layer_state_floats(const ModelConfig& c) {
  return (size_t)conv_channels(c) * (c.K - 1) + (size_t)c.E * c.N;
}
inline size_t state_floats(const ModelConfig& c) { return (size_t)c.L * layer_state_floats(c); }

// ---------------------------------------------------------------- the table

// How a checkpoint tensor [rows, cols] (row-major) becomes what the engines store.
enum class Layout {
  kPlain,             // as given
  kTransposed,        // [cols][rows]: conv_w [E, K] -> tap-major wT [K][E]
  kNegExpTransposed,  // [cols][rows] of -exp(x): A_log [E, N] -> A^T [N][E], A = -exp(A_log)
  kNegExp,            // -exp(x) in place: Mamba-2's A_log [H] -> A
};

inline const char* layout_name(Layout l) {
  return l == Layout::kPlain        ? "plain"
         : l == Layout::kTransposed ? "transposed"
         : l == Layout::kNegExp     ? "neg_exp"
                                    : "neg_exp_transposed";
}

// out = layout(x), x [rows, cols] row-major (a vector: cols = 1).
inline void apply_layout(Layout l, const float* x, int rows, int cols, float* out) {
  if (l == Layout::kNegExp) {
    for (size_t i = 0; i < (size_t)rows * (cols ? cols : 1); i++) out[i] = -std::exp(x[i]);
    return;
  }
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < cols; k++) {
      const float v = x[(size_t)r * cols + k];
      if (l == Layout::kPlain) out[(size_t)r * cols + k] = v;
      else out[(size_t)k * rows + r] = l == Layout::kTransposed ? v : -std::exp(v);
    }
}

// Every tensor a model of either family can have: the globals, then the per-layer ones (Mamba-1's
// in checkpoint order, then the two only Mamba-2 has).
enum class TensorId {
  kEmbedding,
  kNormF,
  kLmHead,
  kNorm,
  kInProj,
  kInProjBias,
  kConvW,
  kConvB,
  kXProj,
  kDtProjW,
  kDtProjB,
  kALog,
  kD,
  kOutProj,
  kOutProjBias,
  kDtBias,    // Mamba-2: dt's bias per head (dt = softplus(in_proj's dt + dt_bias))
  kGateNorm,  // Mamba-2: the gated RMSNorm's weight
};
constexpr int kNumGlobalTensors = 3, kNumLayerTensors = 14;

inline const char* tensor_name(TensorId id) {
  static const char* const names[] = {
      "embedding", "norm_f",    "lm_head", "norm", "in_proj",  "in_proj_bias",  "conv_w",  "conv_b",   "x_proj",
      "dt_proj_w", "dt_proj_b", "A_log",   "D",    "out_proj", "out_proj_bias", "dt_bias", "gate_norm"};
  return names[(int)id];
}

// One tensor of one config.
struct TensorSpec {
  TensorId id;
  int layer;       // -1 for the globals
  int rows, cols;  // checkpoint shape [rows, cols]; a vector [rows] has cols = 0
  bool required;   // whether the config has this tensor (false: giving it is an error)
  Layout layout;

  const char* name() const { return tensor_name(id); }
  size_t count() const { return (size_t)rows * (cols ? cols : 1); }
  std::string shape() const {
    return "[" + std::to_string(rows) + (cols ? ", " + std::to_string(cols) : std::string()) + "]";
  }
  std::string label() const {  // "tensor 'x_proj' of layer 3"
    return std::string("tensor '") + name() + "'" + (layer >= 0 ? " of layer " + std::to_string(layer) : std::string());
  }
};

// The spec of tensor id (of layer `layer` for a per-layer tensor) under config c.
inline TensorSpec tensor_spec(const ModelConfig& c, TensorId id, int layer) {
  const int E = c.E, N = c.N, R = c.R, K = c.K, d = c.d;
  auto spec = [&](int rows, int cols, bool required = true, Layout layout = Layout::kPlain) {
    return TensorSpec{.id = id, .layer = layer, .rows = rows, .cols = cols, .required = required, .layout = layout};
  };
  if (c.family == kMamba2) {
    const int CH = conv_channels(c);
    switch (id) {
      case TensorId::kInProj: return spec(in_proj_rows(c), d);
      case TensorId::kInProjBias: return spec(in_proj_rows(c), 0, c.proj_bias);
      case TensorId::kConvW: return spec(CH, K, true, Layout::kTransposed);
      case TensorId::kConvB: return spec(CH, 0, c.conv_bias);
      case TensorId::kXProj: return spec(0, 0, false);
      case TensorId::kDtProjW: return spec(0, 0, false);
      case TensorId::kDtProjB: return spec(0, 0, false);
      case TensorId::kALog: return spec(c.H, 0, true, Layout::kNegExp);
      case TensorId::kD: return spec(c.H, 0);
      case TensorId::kDtBias: return spec(c.H, 0);
      case TensorId::kGateNorm: return spec(E, 0);
      default: break;  // the globals, norm and out_proj: as Mamba-1's
    }
  }
  switch (id) {
    case TensorId::kEmbedding: return spec(c.vocab, d);
    case TensorId::kNormF: return spec(d, 0);
    case TensorId::kLmHead: return spec(c.vocab, d, !c.tie);
    case TensorId::kNorm: return spec(d, 0);
    case TensorId::kInProj: return spec(2 * E, d);
    case TensorId::kInProjBias: return spec(2 * E, 0, c.proj_bias);
    case TensorId::kConvW: return spec(E, K, true, Layout::kTransposed);
    case TensorId::kConvB: return spec(E, 0, c.conv_bias);
    case TensorId::kXProj: return spec(R + 2 * N, E);
    case TensorId::kDtProjW: return spec(E, R);
    case TensorId::kDtProjB: return spec(E, 0);
    case TensorId::kALog: return spec(E, N, true, Layout::kNegExpTransposed);
    case TensorId::kD: return spec(E, 0);
    case TensorId::kOutProj: return spec(d, E);
    case TensorId::kOutProjBias: return spec(d, 0, c.proj_bias);
    case TensorId::kDtBias: return spec(0, 0, false);
    case TensorId::kGateNorm: return spec(0, 0, false);
  }
  fail(SIMBA_E_NATIVE, "tensor_spec: unknown tensor id");
}

// Position of a tensor in tensor_table(): embedding, layer 0 .. L-1 (norm .. out_proj_bias), norm_f, lm_head.
inline size_t table_index(const ModelConfig& c, TensorId id, int layer) {
  if (id == TensorId::kEmbedding) return 0;
  if (id == TensorId::kNormF) return 1 + (size_t)c.L * kNumLayerTensors;
  if (id == TensorId::kLmHead) return 2 + (size_t)c.L * kNumLayerTensors;
  return 1 + (size_t)layer * kNumLayerTensors + ((int)id - kNumGlobalTensors);
}

// Every tensor of config c, in table_index() order (the order checkpoints are read in), including
// those the config does not have (required false).
inline std::vector<TensorSpec> tensor_table(const ModelConfig& c) {
  std::vector<TensorSpec> t;
  t.reserve(kNumGlobalTensors + (size_t)c.L * kNumLayerTensors);
  t.push_back(tensor_spec(c, TensorId::kEmbedding, -1));
  for (int l = 0; l < c.L; l++)
    for (int i = 0; i < kNumLayerTensors; i++) t.push_back(tensor_spec(c, (TensorId)(kNumGlobalTensors + i), l));
  t.push_back(tensor_spec(c, TensorId::kNormF, -1));
  t.push_back(tensor_spec(c, TensorId::kLmHead, -1));
  return t;
}

// Weights of a config: the sum of its tensors' sizes.
inline size_t param_count(const ModelConfig& c) {
  size_t n = 0;
  for (const TensorSpec& t : tensor_table(c))
    if (t.required) n += t.count();
  return n;
}

// ---------------------------------------------------------------- storage and loading

// Where an engine keeps the weights, generic in its storage types: Mat a linear layer's weight with
// its bias (CPU: packed panels; CUDA: device memory), Vec a vector or a transformed matrix.
template <typename Mat, typename Vec>
struct LayerWeights {
  Vec norm;      // [d]
  Mat in_proj;   // [2E, d], bias [2E] when the config has projection biases
  Vec conv_wT;   // [K][E] conv taps, tap-major
  Vec conv_b;    // [E] (empty when absent)
  Mat x_proj;    // [R+2N, E]
  Mat dt_proj;   // [E, R], bias [E]
  Vec AT;        // [N][E], A = -exp(A_log)
  Vec D;         // [E]
  Mat out_proj;  // [d, E], bias [d] when the config has projection biases
  // Mamba-2 (where in_proj is [2E+2GN+H, d], conv_wT [K][CH], conv_b [CH], AT holds A [H], D is [H],
  // and x_proj, dt_proj stay empty):
  Vec dt_bias;    // [H]
  Vec gate_norm;  // [E]
};

template <typename Mat, typename Vec>
struct ModelWeights {
  Mat embed;   // [V, d]: also the head when tied
  Mat head;    // [V, d] when untied
  Vec norm_f;  // [d]
  std::vector<LayerWeights<Mat, Vec>> layers;
};

// Loading bookkeeping of one model: which tensors were set, and whether the model is final.
// An engine's set_tensor is `loader.set(weights, name, layer, data, count, store)`, where store has
//   matrix(Mat&, const float* W, const TensorSpec&)   W [rows, cols] row-major
//   bias(Mat&, const float* b, const TensorSpec&)     b [rows]
//   vector(Vec&, const float* v, const TensorSpec&)   v: count() floats in the stored layout
class WeightLoader {
 public:
  explicit WeightLoader(const ModelConfig& c) : c_(c) {
    check_config(c);
    table_ = tensor_table(c);
    have_.assign(table_.size(), 0);
  }
  const ModelConfig& config() const { return c_; }
  bool ready() const { return ready_; }

  // The spec of tensor (name, layer) after checking that this model takes it with `count` values.
  // Throws E_WEIGHTS (unknown name, layer out of range, a tensor the config does not have),
  // E_SHAPE (wrong number of values) or E_ARG (the model is already finalized).
  const TensorSpec& check(const std::string& name, int layer, size_t count) const {
    if (ready_) fail(SIMBA_E_ARG, "model is finalized; tensors can no longer be set");
    if (layer >= c_.L)
      fail(SIMBA_E_WEIGHTS, "tensor '" + name + "': layer " + std::to_string(layer) + " out of range (model has " +
                                std::to_string(c_.L) + ")");
    const bool global = layer < 0;
    int id = -1;
    for (int i = global ? 0 : kNumGlobalTensors;
         i < (global ? kNumGlobalTensors : kNumGlobalTensors + kNumLayerTensors); i++)
      if (name == tensor_name((TensorId)i)) id = i;
    if (id < 0)
      fail(SIMBA_E_WEIGHTS, std::string(global ? "unknown global tensor '" : "unknown layer tensor '") + name + "'");
    const TensorSpec& t = table_[table_index(c_, (TensorId)id, layer)];
    if (!t.required) fail(SIMBA_E_WEIGHTS, t.label() + " given but " + absent_reason(c_, t.id));
    if (count != t.count())
      fail(SIMBA_E_SHAPE, t.label() + ": expected " + t.shape() + " = " + std::to_string(t.count()) + " values, got " +
                              std::to_string(count));
    return t;
  }

  // Checks (as check()), converts x to the stored layout and hands it to the engine's store.
  template <typename Mat, typename Vec, typename Store>
  void set(ModelWeights<Mat, Vec>& w, const std::string& name, int layer, const float* x, size_t count, Store&& store) {
    const TensorSpec& t = check(name, layer, count);
    const float* v = x;
    if (t.layout != Layout::kPlain) {
      tmp_.resize(t.count());
      apply_layout(t.layout, x, t.rows, t.cols, tmp_.data());
      v = tmp_.data();
    }
    LayerWeights<Mat, Vec>* l = t.layer >= 0 ? &w.layers[t.layer] : nullptr;
    switch (t.id) {
      case TensorId::kEmbedding: store.matrix(w.embed, v, t); break;
      case TensorId::kNormF: store.vector(w.norm_f, v, t); break;
      case TensorId::kLmHead: store.matrix(w.head, v, t); break;
      case TensorId::kNorm: store.vector(l->norm, v, t); break;
      case TensorId::kInProj: store.matrix(l->in_proj, v, t); break;
      case TensorId::kInProjBias: store.bias(l->in_proj, v, t); break;
      case TensorId::kConvW: store.vector(l->conv_wT, v, t); break;
      case TensorId::kConvB: store.vector(l->conv_b, v, t); break;
      case TensorId::kXProj: store.matrix(l->x_proj, v, t); break;
      case TensorId::kDtProjW: store.matrix(l->dt_proj, v, t); break;
      case TensorId::kDtProjB: store.bias(l->dt_proj, v, t); break;
      case TensorId::kALog: store.vector(l->AT, v, t); break;
      case TensorId::kD: store.vector(l->D, v, t); break;
      case TensorId::kOutProj: store.matrix(l->out_proj, v, t); break;
      case TensorId::kOutProjBias: store.bias(l->out_proj, v, t); break;
      case TensorId::kDtBias: store.vector(l->dt_bias, v, t); break;
      case TensorId::kGateNorm: store.vector(l->gate_norm, v, t); break;
    }
    have_[&t - table_.data()] = 1;
  }

  // Throws E_WEIGHTS naming the first required tensor (table order) that was not set; else the
  // model is final: no more set(), and forward() may run.
  void finalize() {
    for (size_t i = 0; i < table_.size(); i++)
      if (table_[i].required && !have_[i])
        fail(SIMBA_E_WEIGHTS, "missing " + table_[i].label() +
                                  (table_[i].id == TensorId::kLmHead ? " (the config has an untied head)" : ""));
    ready_ = true;
  }

  // Throws E_WEIGHTS unless finalize() succeeded.
  void require_ready() const {
    if (!ready_) fail(SIMBA_E_WEIGHTS, "model is not finalized (weights incomplete)");
  }

 private:
  static const char* absent_reason(const ModelConfig& c, TensorId id) {
    if (c.family == kMamba2 && (id == TensorId::kXProj || id == TensorId::kDtProjW || id == TensorId::kDtProjB))
      return "Mamba-2 has no x_proj or dt_proj (B, C and dt come from in_proj)";
    if (c.family != kMamba2 && (id == TensorId::kDtBias || id == TensorId::kGateNorm))
      return "only Mamba-2 has dt_bias and gate_norm";
    if (id == TensorId::kLmHead) return "the config ties the head to the embedding";
    if (id == TensorId::kConvB) return "the config has no conv bias";
    return "the config has no projection biases (use_bias false)";
  }

  ModelConfig c_;
  std::vector<TensorSpec> table_;
  std::vector<char> have_;  // by table index
  std::vector<float> tmp_;  // a transformed tensor on its way to the engine
  bool ready_ = false;
};

// Bytes of an engine's matrices (the bulk of its weights); bytes(mat) is one matrix's storage.
template <typename Mat, typename Vec, typename Bytes>
size_t matrix_bytes(const ModelWeights<Mat, Vec>& w, Bytes&& bytes) {
  size_t b = bytes(w.embed) + bytes(w.head);
  for (const auto& l : w.layers) b += bytes(l.in_proj) + bytes(l.x_proj) + bytes(l.dt_proj) + bytes(l.out_proj);
  return b;
}

// ---------------------------------------------------------------- random weights

// Deterministic random weights with the scales of a trained Mamba: uniform noise of the stated
// standard deviations (means 0, norms around 1), softplus(dt bias) log-uniform in [0.001, 0.1],
// A_log[e, n] = log(n + 1) (the S4D-real init), D = 1. Calls emit(name, layer, data, count) for every
// tensor the config has, in a fixed order; layer is -1 for the globals. The same seed gives the
// same weights on every engine.
template <typename Emit>
void random_weights(const ModelConfig& c, uint64_t seed, Emit&& emit) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  auto uni = [&]() {  // xorshift64*, uniform in [-1, 1)
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (float)((s * 2685821657736338717ull) >> 40) * (2.0f / 16777216.0f) - 1.0f;
  };
  std::vector<float> tmp;
  TensorSpec t{};
  auto fill = [&](TensorId id, int layer, float mean, float sd) {
    t = tensor_spec(c, id, layer);
    tmp.resize(t.count());
    for (auto& x : tmp) x = mean + sd * 1.7320508f * uni();
  };
  auto put = [&]() { emit(std::string(t.name()), t.layer, tmp.data(), tmp.size()); };
  auto rand = [&](TensorId id, int layer, float mean, float sd) {
    fill(id, layer, mean, sd);
    put();
  };
  rand(TensorId::kEmbedding, -1, 0.f, 0.02f);
  if (!c.tie) rand(TensorId::kLmHead, -1, 0.f, 0.02f);
  rand(TensorId::kNormF, -1, 1.f, 0.05f);
  // softplus(bias) log-uniform in [0.001, 0.1], the dt init of both families
  auto dt_bias = [&](TensorId id, int layer) {
    t = tensor_spec(c, id, layer);
    tmp.resize(t.count());
    for (auto& x : tmp) {
      float dt = std::exp(std::log(0.001f) + (uni() * 0.5f + 0.5f) * (std::log(0.1f) - std::log(0.001f)));
      x = dt + std::log(-std::expm1(-dt));
    }
    put();
  };
  if (c.family == kMamba2) {
    // Mamba-2's init: A_h uniform in [1, 16] (A_log = log A_h), D = 1, the gated norm's weight near 1.
    for (int l = 0; l < c.L; l++) {
      rand(TensorId::kNorm, l, 1.f, 0.05f);
      rand(TensorId::kInProj, l, 0.f, 1.f / std::sqrt((float)c.d));
      rand(TensorId::kConvW, l, 0.f, 1.f / std::sqrt((float)c.K));
      if (c.conv_bias) rand(TensorId::kConvB, l, 0.f, 0.1f);
      dt_bias(TensorId::kDtBias, l);
      t = tensor_spec(c, TensorId::kALog, l);
      tmp.resize(t.count());
      for (auto& x : tmp) x = std::log(8.5f + 7.5f * uni());
      put();
      rand(TensorId::kD, l, 1.f, 0.f);
      rand(TensorId::kGateNorm, l, 1.f, 0.05f);
      rand(TensorId::kOutProj, l, 0.f, 1.f / std::sqrt((float)c.E) / std::sqrt(2.f * c.L));
      if (c.proj_bias) {
        rand(TensorId::kInProjBias, l, 0.f, 0.01f);
        rand(TensorId::kOutProjBias, l, 0.f, 0.01f);
      }
    }
    return;
  }
  for (int l = 0; l < c.L; l++) {
    rand(TensorId::kNorm, l, 1.f, 0.05f);
    rand(TensorId::kInProj, l, 0.f, 1.f / std::sqrt((float)c.d));
    rand(TensorId::kConvW, l, 0.f, 1.f / std::sqrt((float)c.K));
    if (c.conv_bias) rand(TensorId::kConvB, l, 0.f, 0.1f);
    rand(TensorId::kXProj, l, 0.f, 1.f / std::sqrt((float)c.E));
    rand(TensorId::kDtProjW, l, 0.f, 1.f / std::sqrt((float)c.R));
    dt_bias(TensorId::kDtProjB, l);
    t = tensor_spec(c, TensorId::kALog, l);
    tmp.resize(t.count());
    for (int e = 0; e < c.E; e++)
      for (int n = 0; n < c.N; n++) tmp[(size_t)e * c.N + n] = std::log((float)(n + 1));
    put();
    rand(TensorId::kD, l, 1.f, 0.f);
    rand(TensorId::kOutProj, l, 0.f, 1.f / std::sqrt((float)c.E) / std::sqrt(2.f * c.L));
    if (c.proj_bias) {
      rand(TensorId::kInProjBias, l, 0.f, 0.01f);
      rand(TensorId::kOutProjBias, l, 0.f, 0.01f);
    }
  }
}

// Fills an engine (CPU Model or CUDA DeviceModel) with random_weights(seed) through its set_tensor.
template <typename Engine>
void randomize_engine(Engine& m, const ModelConfig& c, uint64_t seed) {
  random_weights(
      c, seed, [&m](const std::string& name, int layer, const float* x, size_t n) { m.set_tensor(name, layer, x, n); });
}

}  // namespace simba
