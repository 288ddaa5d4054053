// grammar_bindings.h — the constraint engine's N-API classes (native/constrain/): GrammarVocab (a
// tokenizer's token trie, built once per model), Grammar (GBNF compiled over a vocabulary) and
// GrammarMatcher (one sequence's position in a grammar). The native sampler reads matchers from a
// forward call's sampling argument (sampling_bindings.cc) through ReadMatcher.
#pragma once
#include <napi.h>

#include <memory>

#include "constrain/grammar_engine.h"

namespace simba {

// A sampling job's matcher: its engine and a copy of its position (the sampler then never reads the
// JS object off the main thread). Throws an E_ARG TypeError when v is not a GrammarMatcher.
void ReadMatcher(const Napi::Value& v, const std::string& what, std::shared_ptr<constrain::GrammarEngine>& engine,
                 constrain::MatchPosition& position);

void register_grammar_bindings(Napi::Env env, Napi::Object exports);

}  // namespace simba
