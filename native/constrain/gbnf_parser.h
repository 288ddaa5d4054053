// gbnf_parser.h — GBNF text (llama.cpp's grammar syntax) -> a Grammar (grammar.h), or a
// simba::Error E_ARG whose message starts with "line L, column C:" and names the problem.
//
// The syntax: rules `name ::= alternatives`, one per line (a rule continues over newlines only
// inside parentheses); alternatives separated by `|`; a sequence of elements: "literal" (escapes
// \n \r \t \\ \" \[ \] \- \^ \xHH \uHHHH \UHHHHHHHH), [character class] / [^negated], `.` (any
// character), a rule name, ( grouping ), each optionally followed by * + ? {m} {m,} {m,n}; `#`
// starts a comment. `root` is the start rule.
#pragma once
#include <string_view>

#include "constrain/grammar.h"

namespace simba {
namespace constrain {

// Limits on what one grammar may hold (the messages name them).
struct GrammarLimits {
  static constexpr size_t kMaxTextBytes = 1 << 20;  // GBNF text
  static constexpr size_t kMaxSymbols = 1 << 20;    // symbols after lowering repetitions
  static constexpr int kMaxNesting = 64;            // parentheses inside each other
  static constexpr int kMaxRepeat = 1000;           // m and n of {m,n}
};

Grammar parse_gbnf(std::string_view text);

}  // namespace constrain
}  // namespace simba
