// sampling_bindings.h — native sampling behind the forward call: the per-row parameters read from
// JS, run on the worker thread right after the forward pass, and the result returned to JS (tokens
// and logprobs instead of [rows, V] logits).
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "constrain/grammar_engine.h"
#include "cpu/sampling.h"

namespace simba {

struct SampleBatch {
  std::vector<int> rows;                  // [J]: the logits row each job samples from
  std::vector<cpu::SampleParams> params;  // [J] (pointers into the vectors below)
  std::vector<int32_t> history, bias_ids;
  std::vector<float> bias_vals;
  std::vector<cpu::SampleOut> outs;  // [J]
  // [J] each job's constraint (null: none), its matcher's position and the mask computed from it
  std::vector<std::shared_ptr<constrain::GrammarEngine>> engines;
  std::vector<constrain::MatchPosition> positions;
  std::vector<std::vector<uint64_t>> masks;
  std::vector<std::string> errors;  // [J] why a job's mask could not be made (its token is then -1)
  double ms = 0;                    // time spent sampling
};

// Reads {rows, params, rng, history, historyOffsets, biasIds, biasValues, biasOffsets, matchers?} (see
// bindings.ts NativeSampling); rows must be < nrows; matchers[j]: a GrammarMatcher or null. Throws a JS TypeError /
// RangeError.
std::shared_ptr<SampleBatch> ParseSampleBatch(const Napi::Value& v, size_t nrows);
// Samples every job from logits [nrows, V] (threaded over jobs; constrained jobs' masks first).
void RunSampleBatch(SampleBatch& b, const float* logits, size_t nrows, int V);
// {tokens, logprobs, topN, topIds, topLogprobs, rng, sampleMs, errors?} on o.
void SetSampleResult(Napi::Env env, const SampleBatch& b, Napi::Object o);

}  // namespace simba
