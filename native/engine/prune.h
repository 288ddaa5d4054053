// prune.h — Simba token pruning between layers of the CPU forward pass (engine/model.cc). After
// layer l's residual add, sequence s keeps keep[s * L + l] of its tokens; the others exit there,
// their residual stream being their final hidden state. prune_layer runs, step by step:
//   1. drops_tokens   does any sequence keep fewer tokens than it has? (else nothing happens)
//   2. score_rows     a score per row alive: the mixer's scan-based scores ('simba', 'local') or the
//                     L2 norm of the mixer output ('norm'); 'uniform' and 'random' need none
//   3. kept_tokens    per sequence, the tokens that stay: the last one, the protected first / last
//                     ones, then by score ('uniform': evenly strided; 'random': a seeded hash)
//   4. exit_dropped   dropped tokens record their exit layer and, when wanted, their final state
//   5. compact        kept rows move towards the front, in order
// The CUDA engine runs the same steps on the device (cuda/model_cuda.cc).
#pragma once
#include <vector>

#include "engine/mixer.h"
#include "engine/model.h"

namespace simba {

// The rows alive in a forward, and where each token's final hidden state goes.
struct LiveRows {
  std::vector<cpu::SeqSlice> seqs;  // per sequence: rows [row0, row0 + T) of the activations
  std::vector<int> orig;            // per row: its token's index in the request
  int M = 0;                        // rows alive
  std::vector<int> want_slot;       // per token of the request: its row of fin, or -1 (no logits)
  std::vector<float> fin;           // [want, d] final hidden states of the wanted positions
};

// One pruning layer (the steps above): h [M, d] is the residual stream after the layer's add,
// io the layer's mixer batch (io.out its output), score_buf at least M floats. Shrinks rows and
// compacts h; dropped tokens get exit_layer = layer + 1 in res.
void prune_layer(const SimbaOptions& o, int L, Mixer& mixer, const MixerIO& io, float* h, int d, float* score_buf,
                 LiveRows& rows, ForwardResult& res);

}  // namespace simba
