// mixer.h — the token mixer of a layer on the device: the CUDA twin of engine/mixer.h, running the
// steps of common/mixer_steps.h in the same order, each enqueued on the forward's stream. A layer of
// DeviceModel's forward is
//   h += mixer(rmsnorm(h) * norm)                                       (cuda/model_cuda.cc)
// Each family is an implementation in its own file (mixer_mamba1.cc, mixer_mamba2.cc), picked by
// make_device_mixer.
#pragma once
#include <cstddef>

#include "../common/mixer_steps.h"
#include "kernels.cuh"

namespace simba {
namespace cuda {

// One layer of one forward, as every step sees it.
struct DevMixerIO {
  int layer;
  int M;                // rows alive: rows [0, M) of the activations
  const float* xn;      // [M, d] the normalized input
  float* out;           // [M, d] the mixer output (written by out())
  const SeqInfo* seqs;  // this layer's sequence table (device)
  int nseq, maxT;       // sequences, and the longest one's rows in this layer
  float* states;        // sequence i's whole state at states + slot(i) * state_floats
  const int* slots;     // device slot table (device-resident states), or null: slot(i) = i
  bool keep_scores;     // a scan-based Simba score of this layer follows: keep what it reads
  cudaStream_t st;
};

class DevMixer : public MixerSteps<DevMixerIO> {
 public:
  // Workspace bytes of the step buffers for a forward of `rows` rows (with score(): scores), and
  // their carving from p.
  virtual size_t scratch_bytes(size_t rows, bool scores) const = 0;
  virtual void bind_scratch(char* p, size_t rows, bool scores) = 0;
};

}  // namespace cuda
}  // namespace simba
