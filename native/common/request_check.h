// request_check.h — the validation of a forward request that the CPU engine (engine/model.cc), the
// CUDA engine (cuda/model_cuda.cc) and the addon's CudaModel (engine/cuda_loader.cc, before the C ABI)
// share, written once: the sequence layout, one state per sequence, token ids in the vocabulary,
// wanted positions, Simba keep counts and criterion. The addon passes the Simba options through
// unchecked: this is their one native check. Each engine adds only its own limits (the CUDA grid sizes).
// Header-only and free of both engines' types: the CUDA library is built separately.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/errors.h"
#include "common/tensor_table.h"

namespace simba {

// A forward request as both engines receive it (CPU: ForwardRequest's vectors; CUDA: simba_forward_t).
struct RequestView {
  const int32_t* tokens;
  size_t n_tokens;  // all sequences' tokens, concatenated
  const int32_t* lengths;
  size_t n_seq;  // tokens per sequence
  float* const* states;
  size_t n_states;  // one per sequence
  const int32_t* want;
  size_t n_want;  // global token indices that get logits
  bool simba;     // Simba pruning on: keep counts and criterion below
  size_t n_keep;  // keep counts given (n_seq * L expected)
  int criterion;  // a simba_criterion_t (backend_api.h), as given
};

// Throws unless the request fits config c: E_ARG for the sequence layout, states, wanted positions,
// keep counts and criterion; E_TOKEN for a token id outside the vocabulary.
inline void check_request(const ModelConfig& c, const RequestView& r) {
  if (r.n_seq == 0 || !r.lengths) fail(SIMBA_E_ARG, "no sequences given");
  if (r.n_states != r.n_seq || !r.states) fail(SIMBA_E_ARG, "one state per sequence is required");
  size_t total = 0;
  for (size_t s = 0; s < r.n_seq; s++) {
    if (r.lengths[s] < 1) fail(SIMBA_E_ARG, "every sequence needs at least one token (got an empty one)");
    if (!r.states[s]) fail(SIMBA_E_ARG, "one state per sequence is required");
    total += r.lengths[s];
  }
  if (total != r.n_tokens) fail(SIMBA_E_ARG, "token count does not match the sequence lengths");
  for (size_t i = 0; i < r.n_tokens; i++)
    if (r.tokens[i] < 0 || r.tokens[i] >= c.vocab)
      fail(SIMBA_E_TOKEN, "token id " + std::to_string(r.tokens[i]) + " at index " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(c.vocab) + ")");
  for (size_t i = 0; i < r.n_want; i++)
    if (r.want[i] < 0 || (size_t)r.want[i] >= total)
      fail(SIMBA_E_ARG,
           "logits position " + std::to_string(r.want[i]) + " is outside the " + std::to_string(total) + " tokens");
  if (!r.simba) return;
  if (r.n_keep != r.n_seq * c.L)
    fail(SIMBA_E_ARG, "simba keep counts: expected " + std::to_string(r.n_seq * c.L) + " (sequences x layers)");
  if (r.criterion < 0 || r.criterion >= SIMBA_CRITERION_COUNT)
    fail(SIMBA_E_ARG, "simba.criterion " + std::to_string(r.criterion) + " is not a criterion (0 to " +
                          std::to_string(SIMBA_CRITERION_COUNT - 1) + ": simba, local, norm, uniform, random)");
}

// A checked criterion (check_request) as the enum.
inline simba_criterion_t criterion_of(int checked) { return static_cast<simba_criterion_t>(checked); }

// Whether the criterion scores tokens from the selective scan's inputs (dt, B, C, x), which the
// engines then keep for the score, rather than from the mixer output or positions alone.
inline bool criterion_uses_scan(simba_criterion_t c) {
  return c == SIMBA_CRITERION_SIMBA || c == SIMBA_CRITERION_LOCAL;
}

}  // namespace simba
