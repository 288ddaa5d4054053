// parse_states.h — the matcher's states: a state is a set of parse stacks of a Grammar, interned
// (each distinct set gets an id once), with its transitions on each code point cached.
//
// A parse stack holds positions in Grammar::code: the top (back) is the next character class to
// match; below it, where each enclosing rule continues (a rule whose reference ends its alternative
// pushes nothing: tail calls keep repetitions from growing the stack). An empty stack means root is
// complete. State 0 is the dead state (no stack), 1 the start.
// Not thread-safe: GrammarEngine guards it.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "constrain/grammar.h"

namespace simba {
namespace constrain {

struct StateLimits {
  static constexpr size_t kMaxDepth = 1024;          // positions on one stack (deeper parses are dropped)
  static constexpr size_t kMaxStacks = 4096;         // stacks in one state
  static constexpr size_t kMaxExpansions = 1 << 16;  // expansion steps for one transition
  static constexpr size_t kMaxStates = 1 << 16;      // distinct states of one grammar
  static constexpr int kMaxChain = 2000;             // rules entered in a row without a character
};

class ParseStates {
 public:
  explicit ParseStates(std::shared_ptr<const Grammar> g);

  static constexpr int32_t kDead = 0, kStart = 1;
  // The state after `cp` (kDead when no stack accepts it). Throws E_ARG past the limits.
  int32_t next(int32_t state, uint32_t cp) {
    if (cp < 128) {
      const int32_t c = ascii_[(size_t)state * 128 + cp];
      if (c >= 0) return c;
    }
    return next_slow(state, cp);
  }
  bool accepting(int32_t state) const { return states_[state].accepting; }
  // Some stack still has a character to match.
  bool can_continue(int32_t state) const { return !states_[state].tops.empty(); }
  // Some stack's next class holds a code point of [lo, hi].
  bool intersects(int32_t state, uint32_t lo, uint32_t hi) const;
  size_t size() const { return states_.size(); }

 private:
  using Stack = std::vector<int32_t>;
  struct State {
    std::vector<Stack> stacks;
    std::vector<int32_t> tops;  // the class of each non-empty stack's top
    bool accepting = false;
  };
  struct KeyHash {
    size_t operator()(const std::vector<int32_t>& k) const;
  };

  int32_t next_slow(int32_t state, uint32_t cp);
  void expand(Stack& s, std::vector<Stack>& out, int chain);
  int32_t intern(std::vector<Stack>& stacks);

  std::shared_ptr<const Grammar> g_;
  std::deque<State> states_;
  std::vector<int32_t> ascii_;  // [state * 128 + c]: next() on ASCII c, -1 = not computed yet
  std::unordered_map<std::vector<int32_t>, int32_t, KeyHash> ids_;
  std::unordered_map<uint64_t, int32_t> next_;  // (state << 21 | cp) -> state, for cp >= 128
  size_t work_ = 0;                             // expansion steps of the transition being computed
};

}  // namespace constrain
}  // namespace simba
