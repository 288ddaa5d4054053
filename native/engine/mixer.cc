// mixer.cc — the one place the CPU engine picks a family's mixer (ModelConfig::family).
#include "engine/model.h"

namespace simba {

std::unique_ptr<Mixer> make_mixer(const ModelConfig& c, const Weights& w) {
  return c.family == kMamba2 ? make_mamba2_mixer(c, w) : make_mamba1_mixer(c, w);
}

size_t mixer_floats_per_row(const ModelConfig& c) {
  return c.family == kMamba2 ? mamba2_floats_per_row(c) : mamba1_floats_per_row(c);
}

}  // namespace simba
