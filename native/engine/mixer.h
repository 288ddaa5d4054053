// mixer.h — the token mixer of a layer: the one part of the CPU forward pass that differs between
// Mamba families. A layer is
//   h += mixer(rmsnorm(h) * norm)                                        (engine/model.cc)
// and the mixer runs the steps of common/mixer_steps.h (project, conv, scan, gate, out; score for
// Simba's scan-based criteria, called by engine/prune.cc). Falcon-Mamba is Mamba-1's mixer with
// its norms switched on (ModelConfig::mixer_rms_eps); a family with other steps (Mamba-2) is
// another implementation of this interface in its own file, picked by make_mixer (model.h); the
// forward pass and the pruning stay as they are.
//
// Glossary: d = dModel, E = dInner, N = dState, R = dtRank, K = dConv, L = nLayer, V = vocab.
#pragma once
#include <cstddef>
#include <string>

#include "common/mixer_steps.h"
#include "cpu/kernels.h"

namespace simba {

// One layer of one forward, as every step sees it.
struct MixerIO {
  int layer;
  int M;                      // rows alive: rows [0, M) of the activations
  const float* xn;            // [M, d] the normalized input
  float* out;                 // [M, d] the mixer output (written by out())
  const cpu::SeqSlice* seqs;  // per sequence: its rows and this layer's states (bind_states)
  int nseq;
};

class Mixer : public MixerSteps<MixerIO> {
 public:
  // Scratch floats per activation row that the steps pass between them.
  virtual size_t floats_per_row() const = 0;
  // Takes the step buffers of a forward of up to `rows` rows from p: floats_per_row() * rows floats.
  virtual void bind_scratch(float* p, size_t rows) = 0;
  // Points each sequence's state fields at its state of this layer (states[s]: the whole state).
  virtual void bind_states(int layer, float* const* states, cpu::SeqSlice* seqs, int nseq) const = 0;
  // A tensor of layer `layer` was stored: derive what the mixer keeps beside the weights.
  virtual void tensor_stored(const std::string& name, int layer) = 0;
};

}  // namespace simba
