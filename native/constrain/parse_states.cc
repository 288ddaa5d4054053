// parse_states.cc — stack expansion (rule references replaced by their alternatives until every
// stack's top is a character class), transitions and interning.
#include "constrain/parse_states.h"

#include <algorithm>

#include "common/errors.h"

namespace simba {
namespace constrain {

size_t ParseStates::KeyHash::operator()(const std::vector<int32_t>& k) const {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ k.size();
  for (int32_t x : k) h = (h ^ (uint32_t)x) * 0x100000001B3ull + (h >> 29);
  return (size_t)h;
}

ParseStates::ParseStates(std::shared_ptr<const Grammar> g) : g_(std::move(g)) {
  states_.emplace_back();  // kDead
  ascii_.assign(128, kDead);
  std::vector<Stack> start;
  for (int32_t a : g_->rules[g_->root]) {
    Stack s{a};
    expand(s, start, 0);
  }
  work_ = 0;
  if (intern(start) != kStart) fail(SIMBA_E_ARG, "grammar: the root rule matches nothing");
}

void ParseStates::expand(Stack& s, std::vector<Stack>& out, int chain) {
  if (++work_ > StateLimits::kMaxExpansions || out.size() > StateLimits::kMaxStacks)
    fail(SIMBA_E_ARG, "grammar too ambiguous: more than " + std::to_string(StateLimits::kMaxStacks) +
                          " parses at once (or " + std::to_string(StateLimits::kMaxExpansions) +
                          " expansion steps for one character)");
  if (chain > StateLimits::kMaxChain)
    fail(SIMBA_E_ARG, "grammar nested too deep: more than " + std::to_string(StateLimits::kMaxChain) +
                          " rules entered without a character");
  if (s.size() > StateLimits::kMaxDepth) return;  // nesting beyond the limit is not followed
  if (s.empty()) {
    out.push_back(s);
    return;
  }
  const int32_t pos = s.back();
  const Sym sym = g_->code[pos];
  if (sym.kind == SymKind::kChar) {
    out.push_back(s);
    return;
  }
  s.pop_back();
  if (sym.kind == SymKind::kEnd) {
    expand(s, out, chain + 1);
  } else {
    const bool cont = g_->code[pos + 1].kind != SymKind::kEnd;
    if (cont) s.push_back(pos + 1);
    for (int32_t a : g_->rules[sym.arg]) {
      s.push_back(a);
      expand(s, out, chain + 1);
      s.pop_back();
    }
    if (cont) s.pop_back();
  }
  s.push_back(pos);
}

int32_t ParseStates::intern(std::vector<Stack>& stacks) {
  if (stacks.empty()) return kDead;
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  std::vector<int32_t> key;
  for (const Stack& s : stacks) {
    key.push_back((int32_t)s.size());
    key.insert(key.end(), s.begin(), s.end());
  }
  auto it = ids_.find(key);
  if (it != ids_.end()) return it->second;
  if (states_.size() >= StateLimits::kMaxStates)
    fail(SIMBA_E_ARG, "grammar: more than " + std::to_string(StateLimits::kMaxStates) +
                          " distinct parse states (too ambiguous or too deeply nested)");
  State st;
  for (const Stack& s : stacks) {
    if (s.empty()) st.accepting = true;
    else st.tops.push_back(g_->code[s.back()].arg);
  }
  std::sort(st.tops.begin(), st.tops.end());
  st.tops.erase(std::unique(st.tops.begin(), st.tops.end()), st.tops.end());
  st.stacks = std::move(stacks);
  const int32_t id = (int32_t)states_.size();
  states_.push_back(std::move(st));
  ascii_.resize(ascii_.size() + 128, -1);
  ids_.emplace(std::move(key), id);
  return id;
}

int32_t ParseStates::next_slow(int32_t state, uint32_t cp) {
  if (cp >= 128) {
    auto it = next_.find((uint64_t)state << 21 | cp);
    if (it != next_.end()) return it->second;
  }
  std::vector<Stack> out;
  work_ = 0;
  for (const Stack& s : states_[state].stacks) {
    if (s.empty() || !g_->classes[g_->code[s.back()].arg].matches(cp)) continue;
    Stack t = s;
    t.back()++;
    expand(t, out, 0);
  }
  const int32_t id = intern(out);
  if (cp < 128) ascii_[(size_t)state * 128 + cp] = id;
  else next_[(uint64_t)state << 21 | cp] = id;
  return id;
}

bool ParseStates::intersects(int32_t state, uint32_t lo, uint32_t hi) const {
  for (int32_t c : states_[state].tops)
    if (g_->classes[c].intersects(lo, hi)) return true;
  return false;
}

}  // namespace constrain
}  // namespace simba
