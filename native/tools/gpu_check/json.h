// json.h — a minimal JSON reader (objects, arrays, strings, numbers, true/false/null) for the
// config.json and safetensors headers simba_gpu_check reads. Not a general-purpose parser: \u
// escapes outside ASCII become '?', and errors throw std::runtime_error with the byte offset.
#pragma once
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace simba {
namespace tools {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> items;           // Array
  std::map<std::string, Json> keys;  // Object

  bool has(const std::string& k) const { return kind == Object && keys.count(k); }
  const Json& at(const std::string& k) const {
    auto it = keys.find(k);
    if (kind != Object || it == keys.end()) throw std::runtime_error("JSON: missing key '" + k + "'");
    return it->second;
  }
  int as_int(const std::string& what) const {
    if (kind != Number || num != (double)(long long)num)
      throw std::runtime_error("JSON: '" + what + "' is not an integer");
    return (int)num;
  }
  static Json parse(const std::string& text);
};

namespace detail {
struct JsonParser {
  const std::string& s;
  size_t i = 0;
  [[noreturn]] void fail(const char* what) const {
    throw std::runtime_error(std::string("JSON: ") + what + " at byte " + std::to_string(i));
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
  }
  bool lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s.compare(i, n, w) != 0) return false;
    i += n;
    return true;
  }
  std::string string() {
    if (s[i] != '"') fail("expected a string");
    i++;
    std::string out;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) fail("bad escape");
      char e = s[i++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (i + 4 > s.size()) fail("bad \\u escape");
          long v = std::strtol(s.substr(i, 4).c_str(), nullptr, 16);
          out += v < 128 ? (char)v : '?';
          i += 4;
          break;
        }
        default: out += e;
      }
    }
    if (i >= s.size()) fail("unterminated string");
    i++;
    return out;
  }
  Json value() {
    ws();
    if (i >= s.size()) fail("unexpected end");
    Json v;
    char c = s[i];
    if (c == '{') {
      v.kind = Json::Object;
      i++;
      ws();
      if (s[i] == '}') {
        i++;
        return v;
      }
      for (;;) {
        ws();
        std::string k = string();
        ws();
        if (s[i] != ':') fail("expected ':'");
        i++;
        v.keys[k] = value();
        ws();
        if (s[i] == ',') {
          i++;
          continue;
        }
        if (s[i] == '}') {
          i++;
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Json::Array;
      i++;
      ws();
      if (s[i] == ']') {
        i++;
        return v;
      }
      for (;;) {
        v.items.push_back(value());
        ws();
        if (s[i] == ',') {
          i++;
          continue;
        }
        if (s[i] == ']') {
          i++;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.str = string();
      return v;
    }
    if (lit("true")) {
      v.kind = Json::Bool;
      v.b = true;
      return v;
    }
    if (lit("false")) {
      v.kind = Json::Bool;
      return v;
    }
    if (lit("null")) return v;
    char* end = nullptr;
    v.num = std::strtod(s.c_str() + i, &end);
    if (end == s.c_str() + i) fail("unexpected character");
    v.kind = Json::Number;
    i = end - s.c_str();
    return v;
  }
};
}  // namespace detail

inline Json Json::parse(const std::string& text) {
  detail::JsonParser p{text};
  Json v = p.value();
  p.ws();
  if (p.i != text.size()) p.fail("trailing characters");
  return v;
}

}  // namespace tools
}  // namespace simba
