// grammar.h — a context-free grammar compiled from GBNF text (gbnf_parser.h), in the flat form the
// matcher walks (parse_stacks.h): every alternative of every rule is a run of symbols in `code`
// ended by a kEnd; a symbol is a character class (one code point) or a reference to a rule.
// Grouping, repetition and string literals are already lowered into plain rules and classes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace simba {
namespace constrain {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// A set of code points: sorted, disjoint, non-adjacent ranges (negated classes are complemented at
// compile time), with a bitmap of its ASCII members for the common case.
struct CharClass {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive
  uint64_t ascii[2] = {0, 0};

  bool matches(uint32_t c) const {
    if (c < 128) return (ascii[c >> 6] >> (c & 63)) & 1;
    for (const auto& r : ranges)
      if (c <= r.second) return c >= r.first;
    return false;
  }
  // True when some member lies in [lo, hi].
  bool intersects(uint32_t lo, uint32_t hi) const {
    for (const auto& r : ranges)
      if (r.second >= lo && r.first <= hi) return true;
    return false;
  }
};

enum class SymKind : uint8_t { kEnd, kChar, kRule };

struct Sym {
  SymKind kind;
  int32_t arg;  // kChar: index into classes; kRule: index into rules
};

struct Grammar {
  std::vector<Sym> code;                    // the alternatives, each a run of Syms ended by kEnd
  std::vector<std::vector<int32_t>> rules;  // rule -> the positions in code where its alternatives start
  std::vector<std::string> names;           // rule -> name (generated rules: parent name + "-" + number)
  std::vector<std::string> origins;         // rule -> "line L, column C" where it is defined
  std::vector<CharClass> classes;
  int32_t root = -1;
};

}  // namespace constrain
}  // namespace simba
