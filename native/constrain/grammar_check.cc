// grammar_check.cc — left recursion: which rules can match the empty string (a fixpoint), then the
// graph "rule r can start with rule s" (s after a prefix of rules that can be empty), searched for a
// cycle.
#include "constrain/grammar_check.h"

#include <string>
#include <vector>

#include "common/errors.h"

namespace simba {
namespace constrain {

namespace {

std::vector<char> nullable_rules(const Grammar& g) {
  std::vector<char> nullable(g.rules.size(), 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < g.rules.size(); r++) {
      if (nullable[r]) continue;
      for (int32_t start : g.rules[r]) {
        int32_t p = start;
        while (g.code[p].kind == SymKind::kRule && nullable[g.code[p].arg]) p++;
        if (g.code[p].kind == SymKind::kEnd) {
          nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  return nullable;
}

}  // namespace

void check_grammar(const Grammar& g) {
  const std::vector<char> nullable = nullable_rules(g);
  const size_t n = g.rules.size();
  std::vector<std::vector<int32_t>> starts(n);  // r -> the rules r can start with
  for (size_t r = 0; r < n; r++)
    for (int32_t start : g.rules[r])
      for (int32_t p = start; g.code[p].kind == SymKind::kRule; p++) {
        starts[r].push_back(g.code[p].arg);
        if (!nullable[g.code[p].arg]) break;
      }
  // Iterative depth-first search; a rule met again while on the path closes a cycle.
  std::vector<char> color(n, 0);  // 0 new, 1 on the path, 2 done
  std::vector<std::pair<int32_t, size_t>> path;
  for (size_t s = 0; s < n; s++) {
    if (color[s]) continue;
    path.push_back({(int32_t)s, 0});
    color[s] = 1;
    while (!path.empty()) {
      auto& [r, i] = path.back();
      if (i == starts[r].size()) {
        color[r] = 2;
        path.pop_back();
        continue;
      }
      const int32_t t = starts[r][i++];
      if (color[t] == 1) {
        std::string cycle;
        bool on = false;
        for (const auto& e : path) {
          on = on || e.first == t;
          if (on) cycle += g.names[e.first] + " -> ";
        }
        cycle += g.names[t];
        fail(SIMBA_E_ARG, g.origins[t] + ": left recursion: rule '" + g.names[t] +
                              "' can reach itself without consuming input (" + cycle +
                              "); write it with repetition instead, e.g. expr ::= term (\"+\" term)*");
      }
      if (color[t] == 0) {
        color[t] = 1;
        path.push_back({t, 0});
      }
    }
  }
}

}  // namespace constrain
}  // namespace simba
