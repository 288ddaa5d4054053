// sampling.h — picking the next token from a row of logits, natively, right after the LM head.
//
// One row (V logits of one sequence) and its parameters -> one token (+ its logprob and the top-n
// logprobs). The steps, in order (test/reference/sampling_ref.ts is the float64 reference):
//   1. x = logits[0 .. limit)                      ids >= limit (padded vocabulary) are never picked
//      with an allow mask (a grammar's allowed tokens), only the allowed ids take part in every step
//      below, as if the row held only them (in ascending id order); none allowed: token -1
//   2. x[id] += bias[id]                           logit_bias
//   3. for each id generated c > 0 times:          penalties over the sequence's generated tokens
//        x = x > 0 ? x / repetition : x * repetition
//        x -= c * frequency + presence
//   4. logprobs (when asked) = log_softmax(x)      before temperature and truncation
//   5. temperature 0 (or below 1e-5): argmax(x) (lowest id on ties). Otherwise p = softmax(x / T) and the support
//      is the longest prefix, in the order (x desc, id asc), that satisfies all of
//        top-k (its first k), min-p (p >= min_p * p_max) and top-p (the shortest prefix whose
//        probability, renormalised over the top-k, reaches top_p; top_p 0 keeps the first token);
//      u = next uniform of the sequence's RNG (splitmix64, one draw per sampled token), and the
//      token is the first support id, walked in ascending id order, where the running sum of p
//      exceeds u * (sum of p over the support).
// No full sort: top-k by a bounded heap (blocks that cannot enter it skipped), min-p by a threshold,
// top-p by a histogram of the weights (only the bucket where the mass crosses top_p is sorted); the
// passes over V are vectorised, and the walk goes through block sums of 64 weights.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace simba {
namespace cpu {

struct SampleParams {
  float temperature = 0;  // 0 = greedy
  int top_k = 0;          // 0 = off
  float top_p = 1;        // 1 = off
  float min_p = 0;        // 0 = off
  float presence = 0, frequency = 0, repetition = 1;
  int logprobs = -1;                 // -1: none; n >= 0: the chosen token's logprob and the n most likely
  int limit = 0;                     // sample only ids < limit (0 = all V)
  uint64_t rng = 0;                  // splitmix64 state, advanced by each sampled token
  const int32_t* history = nullptr;  // the sequence's generated tokens (for the penalties)
  int history_len = 0;
  const int32_t* bias_ids = nullptr;  // logit_bias: ids (< V) and values
  const float* bias_vals = nullptr;
  int nbias = 0;
  const uint64_t* allow = nullptr;  // bit id set: id may be picked (a constraint's mask); null: all
  int allow_n = 0;                  // ids the mask covers (ids >= allow_n are not allowed)
};

struct SampleOut {
  int32_t token = -1;
  float logprob = 0;             // of token (when logprobs >= 0)
  std::vector<int32_t> top_ids;  // [logprobs] most likely ids, most likely first
  std::vector<float> top_logprobs;
};

// Working memory reused across rows (one per thread).
struct SampleScratch {
  std::vector<float> x;    // adjusted logits [V]
  std::vector<float> w;    // weights [V rounded up to 64]
  std::vector<float> x2;   // weights of the crossing bucket; block maxima (top-k)
  std::vector<float> sel;  // block maxima, partly ordered
  std::vector<int32_t> idx, ids, hist;
  std::vector<double> wk;        // weights of the top-k set
  std::vector<double> blocks;    // block sums of w [V / 64]
  std::vector<uint16_t> bucket;  // top-p bucket per id [V]
  std::vector<double> mass;      // top-p histograms
  std::vector<std::pair<int32_t, double>> support;
  std::vector<float> cx;     // the allowed ids' adjusted logits (with an allow mask)
  std::vector<int32_t> cid;  // their ids
};

// Samples one token from logits [V]; advances p.rng when it draws.
void sample_row(const float* logits, int V, SampleParams& p, SampleOut& out, SampleScratch& s);

// The next uniform in [0, 1) of a splitmix64 state (advances it).
double splitmix_uniform(uint64_t& state);

}  // namespace cpu
}  // namespace simba
