// grammar_check.h — what a parsed grammar must satisfy before a matcher can run it: no left
// recursion (a rule that can reach itself without consuming a character would make the matcher's
// expansion endless). Throws simba::Error E_ARG naming the rule, where it is defined and the cycle.
#pragma once
#include "constrain/grammar.h"

namespace simba {
namespace constrain {

void check_grammar(const Grammar& g);

}  // namespace constrain
}  // namespace simba
