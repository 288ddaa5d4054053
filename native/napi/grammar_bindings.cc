// grammar_bindings.cc — GrammarVocab, Grammar and GrammarMatcher (see grammar_bindings.h). The
// objects carry N-API type tags, so a forward call's sampling argument can tell a GrammarMatcher
// from any other object before unwrapping it.
#include "napi/grammar_bindings.h"

#include <chrono>
#include <string>
#include <vector>

#include "napi/napi_errors.h"

namespace simba {

namespace {

using constrain::GrammarEngine;
using constrain::MatchPosition;
using constrain::TokenTrie;

const napi_type_tag kVocabTag = {0x73696d6261766f63ull, 0x6162000000000001ull};
const napi_type_tag kGrammarTag = {0x73696d6261677261ull, 0x6d6d000000000002ull};
const napi_type_tag kMatcherTag = {0x73696d62616d6174ull, 0x6368000000000003ull};

template <typename W>
W* Unwrapped(const Napi::Value& v, const napi_type_tag& tag, const std::string& what, const char* cls) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&tag)) throw ArgError(v.Env(), what + " must be a " + cls);
  return Napi::ObjectWrap<W>::Unwrap(v.As<Napi::Object>());
}

// new GrammarVocab(bytes: Uint8Array, offsets: Int32Array [V + 1], eos: number (-1: none))
class VocabWrap : public Napi::ObjectWrap<VocabWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "GrammarVocab", {InstanceMethod("size", &VocabWrap::Size)});
  }
  explicit VocabWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VocabWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[2].IsNumber())
      throw ArgError(env, "GrammarVocab(bytes: Uint8Array, offsets: Int32Array, eos: number)");
    auto bytes = info[0].As<Napi::Uint8Array>();
    auto off = info[1].As<Napi::Int32Array>();
    const size_t V = off.ElementLength() ? off.ElementLength() - 1 : 0;
    if (V == 0 || V > (1u << 24)) throw ArgError(env, "GrammarVocab: offsets must hold V + 1 values, 1 <= V <= 2^24");
    if (off[0] != 0 || (size_t)off[V] != bytes.ElementLength())
      throw ArgError(env, "GrammarVocab: offsets must run from 0 to the length of bytes");
    for (size_t t = 0; t < V; t++)
      if (off[t + 1] < off[t] || off[t + 1] - off[t] > 4096)
        throw ArgError(env, "GrammarVocab: offsets must be non-decreasing, tokens at most 4096 bytes");
    const double eos = info[2].As<Napi::Number>().DoubleValue();
    if (eos != (double)(int32_t)eos || eos < -1 || eos >= (double)V)
      throw ArgError(env, "GrammarVocab: eos must be -1 or a token id");
    try {
      trie = std::make_shared<const TokenTrie>(bytes.Data(), off.Data(), (int32_t)V, (int32_t)eos);
    } catch (const std::exception& e) { throw NativeError(env, e); }
    info.This().As<Napi::Object>().TypeTag(&kVocabTag);
  }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), trie->vocab); }
  std::shared_ptr<const TokenTrie> trie;
};

// new Grammar(gbnf: string, vocab: GrammarVocab): E_ARG naming line:column for bad GBNF.
class GrammarWrap : public Napi::ObjectWrap<GrammarWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Grammar",
        {InstanceMethod("stats", &GrammarWrap::Stats), InstanceMethod("clearCache", &GrammarWrap::Clear)});
  }
  explicit GrammarWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GrammarWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString()) throw ArgError(env, "Grammar(gbnf: string, vocab: GrammarVocab)");
    auto* vocab = Unwrapped<VocabWrap>(info[1], kVocabTag, "Grammar: vocab", "GrammarVocab");
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    try {
      engine = std::make_shared<GrammarEngine>(text, vocab->trie);
    } catch (const std::exception& e) { throw NativeError(env, e); }
    info.This().As<Napi::Object>().TypeTag(&kGrammarTag);
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    const constrain::EngineStats s = engine->stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("states", (double)s.states);
    o.Set("cachedMasks", (double)s.cached_masks);
    o.Set("maskBytes", (double)s.mask_bytes);
    o.Set("masksComputed", (double)s.masks_computed);
    o.Set("masksCached", (double)s.masks_cached);
    return o;
  }
  Napi::Value Clear(const Napi::CallbackInfo& info) {
    engine->clear_cache();
    return info.Env().Undefined();
  }
  std::shared_ptr<GrammarEngine> engine;
};

// new GrammarMatcher(grammar: Grammar) (at the start) or new GrammarMatcher(matcher) (a copy).
class MatcherWrap : public Napi::ObjectWrap<MatcherWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "GrammarMatcher",
        {InstanceMethod("accept", &MatcherWrap::Accept), InstanceMethod("complete", &MatcherWrap::Complete),
         InstanceMethod("finished", &MatcherWrap::Finished), InstanceMethod("allowed", &MatcherWrap::Allowed),
         InstanceMethod("maskMs", &MatcherWrap::MaskMs)});
  }
  explicit MatcherWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MatcherWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() >= 1 && info[0].IsObject() && info[0].As<Napi::Object>().CheckTypeTag(&kMatcherTag)) {
      const MatcherWrap* m = Napi::ObjectWrap<MatcherWrap>::Unwrap(info[0].As<Napi::Object>());
      engine = m->engine;
      position = m->position;
    } else {
      engine = Unwrapped<GrammarWrap>(info.Length() ? info[0] : env.Undefined(), kGrammarTag, "GrammarMatcher: grammar",
                                      "Grammar or a GrammarMatcher")
                   ->engine;
    }
    info.This().As<Napi::Object>().TypeTag(&kMatcherTag);
  }

  // accept(token) -> false (unchanged) when the grammar does not allow the token here
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throw ArgError(env, "accept(token: number)");
    const double t = info[0].As<Napi::Number>().DoubleValue();
    if (t != (double)(int32_t)t) return Napi::Boolean::New(env, false);
    return Guarded(env, [&] { return engine->accept(position, (int32_t)t); });
  }
  Napi::Value Complete(const Napi::CallbackInfo& info) {
    return Guarded(info.Env(), [&] { return engine->complete(position); });
  }
  Napi::Value Finished(const Napi::CallbackInfo& info) {
    return Guarded(info.Env(), [&] { return engine->finished(position); });
  }
  // allowed(uncached = false) -> Int32Array of the allowed token ids, ascending
  Napi::Value Allowed(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint64_t> bits(engine->mask_words());
    Run(env, info.Length() > 0 && info[0].ToBoolean(), bits.data());
    std::vector<int32_t> ids;
    for (size_t w = 0; w < bits.size(); w++)
      for (uint64_t b = bits[w]; b; b &= b - 1) ids.push_back((int32_t)(w * 64 + __builtin_ctzll(b)));
    auto out = Napi::Int32Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) out[i] = ids[i];
    return out;
  }
  // maskMs(reps, uncached) -> milliseconds per mask (the bench)
  Napi::Value MaskMs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int reps = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
    if (reps < 1 || reps > 1000000) throw ArgError(env, "maskMs(reps: 1..1e6, uncached: boolean)");
    const bool uncached = info.Length() > 1 && info[1].ToBoolean();
    std::vector<uint64_t> bits(engine->mask_words());
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; i++) Run(env, uncached, bits.data());
    return Napi::Number::New(
        env, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps);
  }

  std::shared_ptr<GrammarEngine> engine;
  MatchPosition position;

 private:
  void Run(Napi::Env env, bool uncached, uint64_t* bits) {
    try {
      if (uncached) engine->mask_uncached(position, bits);
      else engine->mask(position, bits);
    } catch (const std::exception& e) { throw NativeError(env, e); }
  }
  template <typename F>
  Napi::Value Guarded(Napi::Env env, F f) {
    try {
      return Napi::Boolean::New(env, f());
    } catch (const std::exception& e) { throw NativeError(env, e); }
  }
};

}  // namespace

void ReadMatcher(const Napi::Value& v, const std::string& what, std::shared_ptr<GrammarEngine>& engine,
                 MatchPosition& position) {
  const MatcherWrap* m = Unwrapped<MatcherWrap>(v, kMatcherTag, what, "GrammarMatcher");
  engine = m->engine;
  position = m->position;
}

void register_grammar_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("GrammarVocab", VocabWrap::Define(env));
  exports.Set("Grammar", GrammarWrap::Define(env));
  exports.Set("GrammarMatcher", MatcherWrap::Define(env));
}

}  // namespace simba
