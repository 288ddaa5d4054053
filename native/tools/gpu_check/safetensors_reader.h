// safetensors_reader.h — a shipped model folder (config.json + model.safetensors, Hugging Face or
// state-spaces layout) read into engine tensors, for simba_gpu_check (no Node, no TypeScript loader).
// f32 / f16 / bf16 tensors are converted to f32; names map to the engine's (native/common/tensor_table.h)
// as lib/checkpoint/weights.ts maps them; a padded vocabulary gets zero rows.
#pragma once
#include <string>
#include <vector>

#include "engine/model.h"

namespace simba {
namespace tools {

struct EngineTensor {
  std::string name;  // engine name: "embedding", "norm_f", "lm_head", or a per-layer name
  int layer;         // -1 for global tensors
  std::vector<float> data;
};

struct LoadedModel {
  ModelConfig cfg;
  std::vector<EngineTensor> tensors;
  std::string source;  // the folder
};

// Reads dir/config.json and dir/model.safetensors. Throws std::runtime_error naming the file and the problem.
LoadedModel load_model_dir(const std::string& dir);

}  // namespace tools
}  // namespace simba
