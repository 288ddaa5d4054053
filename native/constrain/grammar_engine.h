// grammar_engine.h — one compiled grammar over one vocabulary: the allowed-token mask of a matcher
// position and the advance on a chosen token. Masks are computed by walking the token trie with the
// parse states (a subtree is skipped as soon as its prefix is refused), and cached per position:
// a grammar revisits few distinct positions (inside a string, after a digit), so most steps cost a
// cache lookup and a copy. Thread-safe: every request's matcher and the samplers share one engine.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "constrain/parse_states.h"
#include "constrain/token_trie.h"
#include "constrain/utf8_cursor.h"

namespace simba {
namespace constrain {

// Where a matcher is: a parse state and, when the text so far ends inside a character, its bytes.
struct MatchPosition {
  int32_t state = ParseStates::kStart;
  Utf8Cursor utf8;
};

struct EngineStats {
  size_t states, cached_masks, mask_bytes;
  uint64_t masks_computed, masks_cached;
};

class GrammarEngine {
 public:
  // Parses and checks the GBNF text (simba::Error E_ARG naming line:column and the problem).
  GrammarEngine(std::string_view gbnf, std::shared_ptr<const TokenTrie> vocab);

  int32_t vocab() const { return trie_->vocab; }
  size_t mask_words() const { return ((size_t)trie_->vocab + 63) / 64; }
  // out [mask_words()]: bit t set when token t may come next (EOS only where the grammar is complete).
  void mask(const MatchPosition& m, uint64_t* out);
  // Advances m over token t's bytes; false (m unchanged) when the grammar does not allow t there.
  // EOS is accepted only where the grammar is complete, and leaves m as it is.
  bool accept(MatchPosition& m, int32_t t);
  // The text so far is a whole sentence of the grammar.
  bool complete(const MatchPosition& m);
  // Complete, and nothing may follow.
  bool finished(const MatchPosition& m);
  // The mask computed by walking the trie (uncached; for tests and benches).
  void mask_uncached(const MatchPosition& m, uint64_t* out);
  EngineStats stats();
  void clear_cache();

 private:
  bool step(int32_t& state, Utf8Cursor& u, uint8_t b);
  void walk(const MatchPosition& m, uint64_t* out);

  std::mutex mu_;
  std::shared_ptr<const TokenTrie> trie_;
  ParseStates states_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> cache_;  // (state, utf8 key) -> mask
  size_t cache_bytes_ = 0;
  uint64_t computed_ = 0, hits_ = 0;
  std::vector<MatchPosition> frames_;  // walk scratch, one per trie depth
};

// Masks kept per engine at most (bytes); past it the cache starts over.
constexpr size_t kMaskCacheBytes = 8u << 20;

}  // namespace constrain
}  // namespace simba
