// tensor_table.h — what the CPU engine (model.cc) and the CUDA engine (cuda/model_cuda.cc) share:
// the per-layer tensor names, which of them a config requires, and the deterministic random
// weights (so a CPU model and a CUDA model randomized with the same seed hold the same weights).
// Header-only and free of both engines' types: the CUDA library is built separately.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace simba {

// Largest conv kernel and state size the kernels take (cpu/conv1d.cc, cpu/selective_scan.cc, cuda/).
constexpr int kMaxConv = 8, kMaxState = 256;

// Per-layer tensor names in a fixed order (engines index their "have" flags by it).
inline const char* const kLayerTensors[] = {"norm", "in_proj", "in_proj_bias", "conv_w", "conv_b", "x_proj",
                                            "dt_proj_w", "dt_proj_b", "A_log", "D", "out_proj", "out_proj_bias"};
constexpr int kNumLayerTensors = sizeof(kLayerTensors) / sizeof(kLayerTensors[0]);

inline int layer_tensor_index(const std::string& name) {
  for (int i = 0; i < kNumLayerTensors; i++)
    if (name == kLayerTensors[i]) return i;
  return -1;
}

// Whether a config needs per-layer tensor i (biases only when the config has them).
inline bool layer_tensor_needed(int i, bool conv_bias, bool proj_bias) {
  const std::string n = kLayerTensors[i];
  if (n == "in_proj_bias" || n == "out_proj_bias") return proj_bias;
  if (n == "conv_b") return conv_bias;
  return true;
}

// Throws std::invalid_argument naming the first required per-layer tensor that was not set;
// has(layer, i) says whether tensor kLayerTensors[i] of that layer was.
template <typename Has>
void require_layer_tensors(int L, bool conv_bias, bool proj_bias, Has&& has) {
  for (int li = 0; li < L; li++)
    for (int i = 0; i < kNumLayerTensors; i++)
      if (layer_tensor_needed(i, conv_bias, proj_bias) && !has(li, i))
        throw std::invalid_argument("missing tensor '" + std::string(kLayerTensors[i]) + "' of layer " + std::to_string(li));
}

// Shapes of a model, as plain ints (both engines' configs convert to this).
struct ModelDims {
  int vocab, d, L, E, N, R, K;
  bool conv_bias, proj_bias, tie;
};

// Deterministic random weights with the scales of a trained Mamba (shared/peers/make_random_mamba.py):
// uniform noise with the stated standard deviations. Calls emit(name, layer, data, count) for every
// tensor, in a fixed order; layer is -1 for global tensors.
template <typename Emit>
void random_weights(const ModelDims& c, uint64_t seed, Emit&& emit) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  auto uni = [&]() {  // xorshift64*, uniform in [-1, 1)
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    return (float)((s * 2685821657736338717ull) >> 40) * (2.0f / 16777216.0f) - 1.0f;
  };
  std::vector<float> tmp;
  auto fill = [&](size_t n, float mean, float sd) {
    tmp.resize(n);
    for (auto& x : tmp) x = mean + sd * 1.7320508f * uni();
  };
  auto put = [&](const char* name, int layer) { emit(std::string(name), layer, tmp.data(), tmp.size()); };
  auto linear = [&](const char* name, int layer, int N, int K, float sd) { fill((size_t)N * K, 0.f, sd); put(name, layer); };
  linear("embedding", -1, c.vocab, c.d, 0.02f);
  if (!c.tie) linear("lm_head", -1, c.vocab, c.d, 0.02f);
  fill(c.d, 1.f, 0.05f); put("norm_f", -1);
  for (int l = 0; l < c.L; l++) {
    fill(c.d, 1.f, 0.05f); put("norm", l);
    linear("in_proj", l, 2 * c.E, c.d, 1.f / std::sqrt((float)c.d));
    linear("conv_w", l, c.E, c.K, 1.f / std::sqrt((float)c.K));
    if (c.conv_bias) { fill(c.E, 0.f, 0.1f); put("conv_b", l); }
    linear("x_proj", l, c.R + 2 * c.N, c.E, 1.f / std::sqrt((float)c.E));
    linear("dt_proj_w", l, c.E, c.R, 1.f / std::sqrt((float)c.R));
    tmp.resize(c.E);
    for (auto& x : tmp) {  // softplus(bias) log-uniform in [0.001, 0.1]
      float dt = std::exp(std::log(0.001f) + (uni() * 0.5f + 0.5f) * (std::log(0.1f) - std::log(0.001f)));
      x = dt + std::log(-std::expm1(-dt));
    }
    put("dt_proj_b", l);
    tmp.resize((size_t)c.E * c.N);
    for (int e = 0; e < c.E; e++) for (int n = 0; n < c.N; n++) tmp[(size_t)e * c.N + n] = std::log((float)(n + 1));
    put("A_log", l);
    fill(c.E, 1.f, 0.f); put("D", l);
    linear("out_proj", l, c.d, c.E, 1.f / std::sqrt((float)c.E) / std::sqrt(2.f * c.L));
    if (c.proj_bias) {
      fill(2 * c.E, 0.f, 0.01f); put("in_proj_bias", l);
      fill(c.d, 0.f, 0.01f); put("out_proj_bias", l);
    }
  }
}

}  // namespace simba
