// gbnf_parser.cc — GBNF text -> Grammar: a recursive-descent parser over the text's bytes that
// lowers string literals to runs of one-code-point classes, groups to new rules and repetitions to
// right-recursive rules (x* -> R ::= x R | ; x+ -> x x*; x? -> R ::= x | ; x{m,n} -> m copies of x
// then n - m nested optional ones). The grammar is then checked (grammar_check.h).
#include "constrain/gbnf_parser.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "common/errors.h"
#include "constrain/grammar_check.h"

namespace simba {
namespace constrain {

namespace {

constexpr size_t kNone = static_cast<size_t>(-1);

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// A class's ranges sorted and merged, complemented when negated, with its ASCII bitmap.
CharClass make_class(std::vector<std::pair<uint32_t, uint32_t>> r, bool negated) {
  std::sort(r.begin(), r.end());
  CharClass c;
  for (const auto& x : r) {
    if (!c.ranges.empty() && x.first <= c.ranges.back().second + 1)
      c.ranges.back().second = std::max(c.ranges.back().second, x.second);
    else c.ranges.push_back(x);
  }
  if (negated) {
    std::vector<std::pair<uint32_t, uint32_t>> inv;
    uint32_t next = 0;
    for (const auto& x : c.ranges) {
      if (x.first > next) inv.push_back({next, x.first - 1});
      next = x.second + 1;
    }
    if (next <= kMaxCodePoint) inv.push_back({next, kMaxCodePoint});
    c.ranges = std::move(inv);
  }
  for (uint32_t ch = 0; ch < 128; ch++) {
    bool in = false;
    for (const auto& x : c.ranges) in = in || (ch >= x.first && ch <= x.second);
    if (in) c.ascii[ch >> 6] |= 1ull << (ch & 63);
  }
  return c;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Grammar run() {
    if (s_.size() > GrammarLimits::kMaxTextBytes)
      fail(SIMBA_E_ARG, "grammar too large: " + std::to_string(s_.size()) + " bytes of text, the limit is " +
                            std::to_string(GrammarLimits::kMaxTextBytes));
    space(true);
    while (p_ < s_.size()) rule();
    if (defined_.empty() || std::none_of(defined_.begin(), defined_.end(), [](size_t d) { return d != kNone; }))
      error(0, "empty grammar: no rules (a grammar needs at least `root ::= ...`)");
    for (size_t r = 0; r < defined_.size(); r++)
      if (defined_[r] == kNone) error(used_[r], "undefined rule '" + g_.names[r] + "'");
    auto root = ids_.find("root");
    if (root == ids_.end()) error(0, "no rule named 'root' (the start rule)");
    g_.root = root->second;
    for (size_t r = 0; r < alts_.size(); r++) {
      for (const auto& alt : alts_[r]) {
        g_.rules[r].push_back((int32_t)g_.code.size());
        g_.code.insert(g_.code.end(), alt.begin(), alt.end());
        g_.code.push_back({SymKind::kEnd, 0});
      }
    }
    check_grammar(g_);
    return std::move(g_);
  }

 private:
  std::string_view s_;
  size_t p_ = 0;
  Grammar g_;
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<size_t> defined_, used_;               // per rule: offset of its definition / first use
  std::vector<std::vector<std::vector<Sym>>> alts_;  // per rule: its alternatives
  std::map<std::vector<std::pair<uint32_t, uint32_t>>, int32_t> class_ids_;
  size_t symbols_ = 0;

  // "line L, column C" of a byte offset (columns count code points).
  std::string position(size_t at) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); i++) {
      if (s_[i] == '\n') {
        line++;
        col = 1;
      } else if ((s_[i] & 0xC0) != 0x80) {
        col++;
      }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(col);
  }
  [[noreturn]] void error(size_t at, const std::string& what) const { fail(SIMBA_E_ARG, position(at) + ": " + what); }

  std::string describe(size_t at) const {
    if (at >= s_.size()) return "the end of the grammar";
    const char c = s_[at];
    if (c == '\n' || c == '\r') return "the end of the line";
    if ((unsigned char)c < 0x20) return "a control character";
    return std::string("'") + c + "'";
  }

  void space(bool newline_ok) {
    while (p_ < s_.size()) {
      const char c = s_[p_];
      if (c == ' ' || c == '\t') {
        p_++;
      } else if (c == '#') {
        while (p_ < s_.size() && s_[p_] != '\n' && s_[p_] != '\r') p_++;
      } else if (newline_ok && (c == '\n' || c == '\r')) {
        p_++;
      } else {
        break;
      }
    }
  }

  std::string word() {
    const size_t b = p_;
    while (p_ < s_.size() && is_word_char(s_[p_])) p_++;
    return std::string(s_.substr(b, p_ - b));
  }

  int32_t rule_id(const std::string& name, size_t at) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    const int32_t id = new_rule(name, at);
    ids_[name] = id;
    defined_[id] = kNone;
    return id;
  }

  // A rule (named or generated), defined at `at` (generated rules: where their construct starts).
  int32_t new_rule(const std::string& name, size_t at) {
    if (g_.names.size() >= GrammarLimits::kMaxSymbols) error(at, "grammar too large: too many rules");
    g_.names.push_back(name);
    g_.origins.push_back(position(at));
    g_.rules.emplace_back();
    alts_.emplace_back();
    defined_.push_back(at);
    used_.push_back(at);
    return (int32_t)g_.names.size() - 1;
  }

  void count(size_t n, size_t at) {
    symbols_ += n;
    if (symbols_ > GrammarLimits::kMaxSymbols)
      error(at, "grammar too large: more than " + std::to_string(GrammarLimits::kMaxSymbols) +
                    " symbols once repetitions are expanded");
  }

  void rule() {
    const size_t at = p_;
    const std::string name = word();
    if (name.empty()) error(at, "expected a rule name, found " + describe(at));
    space(false);
    if (s_.substr(p_, 3) != "::=")
      error(p_, "expected '::=' after the rule name '" + name + "', found " + describe(p_));
    p_ += 3;
    space(true);
    const int32_t id = rule_id(name, at);
    if (defined_[id] != kNone)
      error(at, "rule '" + name + "' is defined twice (first at " + position(defined_[id]) + ")");
    defined_[id] = at;
    g_.origins[id] = position(at);
    auto alts = alternates(name, 0);
    alts_[id] = std::move(alts);
    if (p_ < s_.size()) {
      if (s_[p_] == ')') error(p_, "unbalanced parentheses: ')' without a matching '('");
      if (s_[p_] != '\n' && s_[p_] != '\r')
        error(p_, "unexpected " + describe(p_) + " in rule '" + name +
                      "' (expected an element, '|' or the end of the line)");
    }
    space(true);
  }

  std::vector<std::vector<Sym>> alternates(const std::string& name, int depth) {
    std::vector<std::vector<Sym>> alts;
    alts.push_back(sequence(name, depth));
    while (p_ < s_.size() && s_[p_] == '|') {
      p_++;
      space(true);
      alts.push_back(sequence(name, depth));
    }
    return alts;
  }

  Sym class_sym(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated) {
    CharClass c = make_class(std::move(ranges), negated);
    auto it = class_ids_.find(c.ranges);
    if (it != class_ids_.end()) return {SymKind::kChar, it->second};
    const int32_t id = (int32_t)g_.classes.size();
    class_ids_[c.ranges] = id;
    g_.classes.push_back(std::move(c));
    return {SymKind::kChar, id};
  }

  std::vector<Sym> sequence(const std::string& name, int depth) {
    std::vector<Sym> out;
    size_t last = kNone;  // where the last element's symbols start (what a repetition repeats)
    while (p_ < s_.size()) {
      const char c = s_[p_];
      const size_t at = p_;
      if (c == '"') {
        last = out.size();
        p_++;
        while (p_ < s_.size() && s_[p_] != '"') {
          const uint32_t cp = character();
          out.push_back(class_sym({{cp, cp}}, false));
        }
        if (p_ >= s_.size()) error(at, "unterminated string literal");
        p_++;
      } else if (c == '[') {
        last = out.size();
        out.push_back(char_class(at));
      } else if (c == '.') {
        last = out.size();
        p_++;
        out.push_back(class_sym({}, true));
      } else if (is_word_char(c)) {
        last = out.size();
        const std::string ref = word();
        const int32_t id = rule_id(ref, at);
        out.push_back({SymKind::kRule, id});
      } else if (c == '(') {
        if (depth + 1 > GrammarLimits::kMaxNesting)
          error(at, "parentheses nested too deep (more than " + std::to_string(GrammarLimits::kMaxNesting) + ")");
        p_++;
        space(true);
        auto sub = alternates(name, depth + 1);
        if (p_ >= s_.size()) error(at, "unbalanced parentheses: '(' is not closed");
        if (s_[p_] != ')')
          error(p_, "unexpected " + describe(p_) + " inside parentheses (expected an element, '|' or ')')");
        p_++;
        const int32_t id = new_rule(name + "-" + std::to_string(g_.names.size()), at);
        alts_[id] = std::move(sub);
        last = out.size();
        out.push_back({SymKind::kRule, id});
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (last == kNone) error(at, std::string("'") + c + "' has nothing to repeat");
        repeat(out, last, name, at);
      } else {
        break;
      }
      count(1, at);
      space(depth > 0);
    }
    return out;
  }

  Sym char_class(size_t at) {
    p_++;
    bool negated = false;
    if (p_ < s_.size() && s_[p_] == '^') {
      negated = true;
      p_++;
    }
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    while (p_ < s_.size() && s_[p_] != ']') {
      const size_t from = p_;
      const uint32_t lo = character();
      uint32_t hi = lo;
      if (p_ + 1 < s_.size() && s_[p_] == '-' && s_[p_ + 1] != ']') {
        p_++;
        hi = character();
        if (hi < lo) error(from, "bad character range: its end comes before its start");
      }
      ranges.push_back({lo, hi});
    }
    if (p_ >= s_.size()) error(at, "unterminated character class '['");
    p_++;
    return class_sym(std::move(ranges), negated);
  }

  uint32_t hex(size_t at, int digits, char e) {
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
      const char h = p_ < s_.size() ? s_[p_] : 0;
      int d = (h >= '0' && h <= '9')   ? h - '0'
              : (h >= 'a' && h <= 'f') ? h - 'a' + 10
              : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                       : -1;
      if (d < 0) error(at, std::string("bad escape: \\") + e + " needs " + std::to_string(digits) + " hex digits");
      v = v * 16 + (uint32_t)d;
      p_++;
    }
    if (v > kMaxCodePoint) error(at, "bad escape: code point beyond U+10FFFF");
    return v;
  }

  // One character of a literal or class (an escape or a UTF-8 sequence) as a code point.
  uint32_t character() {
    const size_t at = p_;
    const unsigned char c = (unsigned char)s_[p_];
    if (c == '\\') {
      p_++;
      if (p_ >= s_.size()) error(at, "bad escape: '\\' at the end of the grammar");
      const char e = s_[p_++];
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
        case '\'': return (uint32_t)e;
        case 'x': return hex(at, 2, e);
        case 'u': return hex(at, 4, e);
        case 'U': return hex(at, 8, e);
        default:
          error(at, "bad escape '\\" + std::string(1, e) +
                        "' (known: \\n \\r \\t \\\\ \\\" \\[ \\] \\- \\^ \\xHH \\uHHHH \\UHHHHHHHH)");
      }
    }
    if (c < 0x80) {
      p_++;
      return c;
    }
    const int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
    if (n < 0 || p_ + n >= s_.size()) error(at, "invalid UTF-8 in the grammar text");
    uint32_t v = c & (0x3F >> n);
    for (int i = 1; i <= n; i++) {
      const unsigned char k = (unsigned char)s_[p_ + i];
      if ((k & 0xC0) != 0x80) error(at, "invalid UTF-8 in the grammar text");
      v = (v << 6) | (k & 0x3F);
    }
    p_ += n + 1;
    return v;
  }

  // Applies the postfix operator at p_ to out[last ..] (the last element).
  void repeat(std::vector<Sym>& out, size_t last, const std::string& name, size_t at) {
    std::vector<Sym> body(out.begin() + (std::ptrdiff_t)last, out.end());
    out.resize(last);
    const char c = s_[p_];
    int lo = 0, hi = -1;  // hi -1: unbounded
    if (c == '*') {
      p_++;
    } else if (c == '+') {
      p_++;
      lo = 1;
    } else if (c == '?') {
      p_++;
      hi = 1;
    } else {
      p_++;
      space(false);
      lo = number(at);
      space(false);
      if (p_ < s_.size() && s_[p_] == ',') {
        p_++;
        space(false);
        hi = (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ? number(at) : -1;
        space(false);
      } else {
        hi = lo;
      }
      if (p_ >= s_.size() || s_[p_] != '}') error(at, "bad repetition: expected '}' to close '{m,n}'");
      p_++;
      if (hi >= 0 && hi < lo) error(at, "bad repetition: {m,n} with n < m");
    }
    for (int i = 0; i < lo; i++) {
      count(body.size(), at);
      out.insert(out.end(), body.begin(), body.end());
    }
    if (hi < 0) {  // R ::= body R |
      const int32_t r = new_rule(name + "-" + std::to_string(g_.names.size()), at);
      std::vector<Sym> loop = body;
      loop.push_back({SymKind::kRule, r});
      alts_[r] = {std::move(loop), {}};
      count(body.size() + 1, at);
      out.push_back({SymKind::kRule, r});
    } else if (hi > lo) {  // O_k ::= body O_{k-1} | ; O_1 ::= body |
      int32_t inner = -1;
      for (int k = 0; k < hi - lo; k++) {
        const int32_t r = new_rule(name + "-" + std::to_string(g_.names.size()), at);
        std::vector<Sym> opt = body;
        if (inner >= 0) opt.push_back({SymKind::kRule, inner});
        alts_[r] = {std::move(opt), {}};
        count(body.size() + 1, at);
        inner = r;
      }
      out.push_back({SymKind::kRule, inner});
    }
  }

  int number(size_t at) {
    if (p_ >= s_.size() || s_[p_] < '0' || s_[p_] > '9') error(at, "bad repetition: expected a number in '{m,n}'");
    long v = 0;
    while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') {
      v = v * 10 + (s_[p_++] - '0');
      if (v > GrammarLimits::kMaxRepeat)
        error(at, "bad repetition: counts above " + std::to_string(GrammarLimits::kMaxRepeat) + " are not supported");
    }
    return (int)v;
  }
};

}  // namespace

Grammar parse_gbnf(std::string_view text) { return Parser(text).run(); }

}  // namespace constrain
}  // namespace simba
