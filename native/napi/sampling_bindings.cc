// sampling_bindings.cc — reads the sampling parameters of a forward call, runs cpu::sample_row
// over the jobs on the worker thread, and returns tokens + logprobs. Also exports
// sampleLogits(logits, V, sampling) (synchronous) for the sampling tests.
#include "napi/sampling_bindings.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "cpu/threadpool.h"
#include "napi/grammar_bindings.h"
#include "napi/napi_errors.h"

namespace simba {

namespace {

template <typename A>
A Typed(const Napi::Object& o, const char* key, napi_typedarray_type type, const char* type_name) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw ArgError(o.Env(), std::string("sampling.") + key + " must be a " + type_name);
  return v.As<A>();
}

void CheckLen(Napi::Env env, size_t got, size_t want, const char* key) {
  if (got != want)
    throw ArgError(env, std::string("sampling.") + key + ": expected " + std::to_string(want) + " values, got " +
                            std::to_string(got));
}

// offsets [J+1] into an array of `total` values: non-decreasing, from 0 to total.
void CheckOffsets(Napi::Env env, const Napi::Int32Array& off, size_t J, size_t total, const char* key) {
  CheckLen(env, off.ElementLength(), J + 1, key);
  if (off[0] != 0 || (size_t)off[J] != total)
    throw ArgError(env, std::string("sampling.") + key + " must run from 0 to the array length");
  for (size_t j = 0; j < J; j++)
    if (off[j + 1] < off[j]) throw ArgError(env, std::string("sampling.") + key + " must be non-decreasing");
}

constexpr int kParams = 9;  // temperature, topK, topP, minP, presence, frequency, repetition, logprobs, limit

std::string Num(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  std::string s = std::to_string(x);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// Each of a job's params in its range, or an E_ARG naming the parameter, the range and the value.
void CheckParams(Napi::Env env, const double* q, size_t j) {
  struct Range {
    const char* name;
    double lo, hi;
    bool open_lo, integer;
  };
  static const Range kRanges[kParams] = {{"temperature", 0, HUGE_VAL, false, false},
                                         {"topK", 0, 2147483647.0, false, true},
                                         {"topP", 0, 1, false, false},
                                         {"minP", 0, 1, false, false},
                                         {"presencePenalty", -HUGE_VAL, HUGE_VAL, false, false},
                                         {"frequencyPenalty", -HUGE_VAL, HUGE_VAL, false, false},
                                         {"repetitionPenalty", 0, HUGE_VAL, true, false},
                                         {"logprobs", -1, 1000, false, true},
                                         {"limit", 0, 2147483647.0, false, true}};
  for (int i = 0; i < kParams; i++) {
    const Range& r = kRanges[i];
    const double x = q[i];
    const bool ok =
        std::isfinite(x) && (r.open_lo ? x > r.lo : x >= r.lo) && x <= r.hi && (!r.integer || x == std::floor(x));
    if (!ok)
      throw ArgError(env, "sampling job " + std::to_string(j) + ": " + r.name + " must be " +
                              (r.integer ? "an integer" : "a finite number") +
                              (std::isinf(r.lo) ? "" : std::string(r.open_lo ? " > " : " >= ") + Num(r.lo)) +
                              (std::isinf(r.hi) || r.hi > 1e9 ? "" : " and <= " + Num(r.hi)) + ", got " + Num(x));
  }
}

}  // namespace

std::shared_ptr<SampleBatch> ParseSampleBatch(const Napi::Value& v, size_t nrows) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) throw ArgError(env, "sampling must be an object");
  Napi::Object o = v.As<Napi::Object>();
  auto rows = Typed<Napi::Int32Array>(o, "rows", napi_int32_array, "Int32Array");
  auto params = Typed<Napi::Float64Array>(o, "params", napi_float64_array, "Float64Array");
  auto rng = Typed<Napi::Uint32Array>(o, "rng", napi_uint32_array, "Uint32Array");
  auto hist = Typed<Napi::Int32Array>(o, "history", napi_int32_array, "Int32Array");
  auto hoff = Typed<Napi::Int32Array>(o, "historyOffsets", napi_int32_array, "Int32Array");
  auto bids = Typed<Napi::Int32Array>(o, "biasIds", napi_int32_array, "Int32Array");
  auto bvals = Typed<Napi::Float32Array>(o, "biasValues", napi_float32_array, "Float32Array");
  auto boff = Typed<Napi::Int32Array>(o, "biasOffsets", napi_int32_array, "Int32Array");
  const size_t J = rows.ElementLength();
  CheckLen(env, params.ElementLength(), J * kParams, "params");
  CheckLen(env, rng.ElementLength(), J * 2, "rng");
  CheckLen(env, bvals.ElementLength(), bids.ElementLength(), "biasValues");
  CheckOffsets(env, hoff, J, hist.ElementLength(), "historyOffsets");
  CheckOffsets(env, boff, J, bids.ElementLength(), "biasOffsets");
  auto b = std::make_shared<SampleBatch>();
  b->history.assign(hist.Data(), hist.Data() + hist.ElementLength());
  b->bias_ids.assign(bids.Data(), bids.Data() + bids.ElementLength());
  b->bias_vals.assign(bvals.Data(), bvals.Data() + bvals.ElementLength());
  b->rows.resize(J);
  b->params.resize(J);
  b->outs.resize(J);
  b->engines.resize(J);
  b->positions.resize(J);
  b->masks.resize(J);
  b->errors.resize(J);
  Napi::Value mv = o.Get("matchers");
  if (!mv.IsUndefined()) {
    if (!mv.IsArray() || mv.As<Napi::Array>().Length() != J)
      throw ArgError(env, "sampling.matchers must be an array with one GrammarMatcher or null per job");
    Napi::Array ms = mv.As<Napi::Array>();
    for (uint32_t j = 0; j < J; j++) {
      Napi::Value m = ms.Get(j);
      if (!m.IsNull() && !m.IsUndefined())
        ReadMatcher(m, "sampling.matchers[" + std::to_string(j) + "]", b->engines[j], b->positions[j]);
    }
  }
  for (size_t j = 0; j < J; j++) {
    if (rows[j] < 0 || (size_t)rows[j] >= nrows)
      throw ArgError(env, "sampling.rows[" + std::to_string(j) + "] = " + std::to_string(rows[j]) +
                              " is not one of the " + std::to_string(nrows) + " logits rows");
    b->rows[j] = rows[j];
    const double* q = params.Data() + j * kParams;
    cpu::SampleParams& p = b->params[j];
    p.temperature = (float)q[0];
    p.top_k = (int)q[1];
    p.top_p = (float)q[2];
    p.min_p = (float)q[3];
    p.presence = (float)q[4];
    p.frequency = (float)q[5];
    p.repetition = (float)q[6];
    p.logprobs = (int)q[7];
    p.limit = (int)q[8];
    CheckParams(env, q, j);
    p.rng = (uint64_t)rng[2 * j] | ((uint64_t)rng[2 * j + 1] << 32);
    p.history = b->history.data() + hoff[j];
    p.history_len = hoff[j + 1] - hoff[j];
    for (int32_t i = boff[j]; i < boff[j + 1]; i++)
      if (!std::isfinite(b->bias_vals[i]))
        throw ArgError(env, "sampling job " + std::to_string(j) + ": logit bias of token " +
                                std::to_string(b->bias_ids[i]) + " must be finite, got " + Num(b->bias_vals[i]));
    p.bias_ids = b->bias_ids.data() + boff[j];
    p.bias_vals = b->bias_vals.data() + boff[j];
    p.nbias = boff[j + 1] - boff[j];
  }
  return b;
}

void RunSampleBatch(SampleBatch& b, const float* logits, size_t nrows, int V) {
  (void)nrows;
  auto t0 = std::chrono::steady_clock::now();
  const int J = (int)b.rows.size();
  for (int j = 0; j < J; j++) {
    if (!b.engines[j]) continue;
    b.masks[j].assign(b.engines[j]->mask_words(), 0);
    // a grammar past its limits fails its own job (token -1 and the reason), not the batch
    try {
      b.engines[j]->mask(b.positions[j], b.masks[j].data());
    } catch (const std::exception& e) {
      b.errors[j] = e.what();
      std::fill(b.masks[j].begin(), b.masks[j].end(), 0);
    }
    b.params[j].allow = b.masks[j].data();
    b.params[j].allow_n = b.engines[j]->vocab();
  }
  auto& pool = cpu::ThreadPool::global();
  std::vector<cpu::SampleScratch> scratch(pool.size());
  pool.run_dynamic(J, [&](int tid, int begin, int end) {
    for (int j = begin; j < end; j++)
      cpu::sample_row(logits + (size_t)b.rows[j] * V, V, b.params[j], b.outs[j], scratch[tid]);
  });
  b.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void SetSampleResult(Napi::Env env, const SampleBatch& b, Napi::Object o) {
  const size_t J = b.outs.size();
  size_t topn = 0;
  for (auto& s : b.outs) topn = std::max(topn, s.top_ids.size());
  auto tokens = Napi::Int32Array::New(env, J);
  auto lps = Napi::Float32Array::New(env, J);
  auto tids = Napi::Int32Array::New(env, J * topn);
  auto tlps = Napi::Float32Array::New(env, J * topn);
  auto rng = Napi::Uint32Array::New(env, J * 2);
  for (size_t j = 0; j < J; j++) {
    const cpu::SampleOut& s = b.outs[j];
    tokens[j] = s.token;
    lps[j] = s.logprob;
    for (size_t i = 0; i < topn; i++) {
      tids[j * topn + i] = i < s.top_ids.size() ? s.top_ids[i] : -1;
      tlps[j * topn + i] = i < s.top_ids.size() ? s.top_logprobs[i] : 0.0f;
    }
    rng[2 * j] = (uint32_t)b.params[j].rng;
    rng[2 * j + 1] = (uint32_t)(b.params[j].rng >> 32);
  }
  o.Set("tokens", tokens);
  o.Set("logprobs", lps);
  o.Set("topN", (double)topn);
  o.Set("topIds", tids);
  o.Set("topLogprobs", tlps);
  o.Set("rng", rng);
  o.Set("sampleMs", b.ms);
  bool any_error = false;
  for (const auto& e : b.errors) any_error = any_error || !e.empty();
  if (any_error) {
    auto errs = Napi::Array::New(env, J);
    for (size_t j = 0; j < J; j++)
      errs.Set((uint32_t)j, b.errors[j].empty() ? env.Null() : Napi::String::New(env, b.errors[j]));
    o.Set("errors", errs);
  }
}

namespace {

// sampleLogits(logits: Float32Array [rows * V], V, sampling) -> the sampling result (synchronous)
Napi::Value SampleLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[1].IsNumber())
    throw ArgError(env, "sampleLogits(logits: Float32Array, V, sampling)");
  auto lg = info[0].As<Napi::Float32Array>();
  const int V = info[1].As<Napi::Number>().Int32Value();
  if (V <= 0 || lg.ElementLength() % (size_t)V != 0)
    throw ArgError(env, "sampleLogits: logits length must be a multiple of V");
  const size_t nrows = lg.ElementLength() / V;
  auto b = ParseSampleBatch(info[2], nrows);
  RunSampleBatch(*b, lg.Data(), nrows, V);
  Napi::Object o = Napi::Object::New(env);
  SetSampleResult(env, *b, o);
  return o;
}

}  // namespace

void register_sampling_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("sampleLogits", Napi::Function::New(env, SampleLogits));
}

}  // namespace simba
