// grammar_engine.cc — the trie walk (preorder, one parse step per node, a refused node skips its
// subtree), the mask cache and token acceptance.
#include "constrain/grammar_engine.h"

#include <cstring>

#include "constrain/gbnf_parser.h"

namespace simba {
namespace constrain {

GrammarEngine::GrammarEngine(std::string_view gbnf, std::shared_ptr<const TokenTrie> vocab)
    : trie_(std::move(vocab)), states_(std::make_shared<const Grammar>(parse_gbnf(gbnf))) {
  frames_.resize((size_t)trie_->max_depth + 1);
}

bool GrammarEngine::step(int32_t& state, Utf8Cursor& u, uint8_t b) {
  uint32_t lo, hi;
  switch (u.push(b, lo, hi)) {
    case Utf8Cursor::kInvalid: return false;
    case Utf8Cursor::kPartial: return states_.intersects(state, lo, hi);
    case Utf8Cursor::kComplete: state = states_.next(state, u.value); return state != ParseStates::kDead;
  }
  return false;
}

void GrammarEngine::walk(const MatchPosition& m, uint64_t* out) {
  const TokenTrie& t = *trie_;
  std::memset(out, 0, mask_words() * sizeof(uint64_t));
  frames_[0] = m;
  const int32_t n = (int32_t)t.byte.size();
  const uint8_t* bytes = t.byte.data();
  const int32_t *depth = t.depth.data(), *end = t.end.data(), *tok = t.tok_begin.data(), *ids = t.ids.data();
  MatchPosition* frames = frames_.data();
  for (int32_t i = 1; i < n;) {
    const MatchPosition& parent = frames[depth[i] - 1];
    MatchPosition& f = frames[depth[i]];
    const uint8_t b = bytes[i];
    if (parent.utf8.need == 0 && b < 0x80) {  // an ASCII character: one cached transition
      f.state = states_.next(parent.state, b);
      f.utf8 = parent.utf8;
      if (f.state == ParseStates::kDead) {
        i = end[i];
        continue;
      }
    } else {
      f = parent;
      if (!step(f.state, f.utf8, b)) {
        i = end[i];
        continue;
      }
    }
    for (int32_t k = tok[i]; k < tok[i + 1]; k++) out[ids[k] >> 6] |= 1ull << (ids[k] & 63);
    i++;
  }
  if (t.eos >= 0 && m.utf8.need == 0 && states_.accepting(m.state)) out[t.eos >> 6] |= 1ull << (t.eos & 63);
}

void GrammarEngine::mask(const MatchPosition& m, uint64_t* out) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t key = (uint64_t)m.state << 32 | m.utf8.key();
  auto it = cache_.find(key);
  if (it != cache_.end()) {
    hits_++;
    std::memcpy(out, it->second.data(), mask_words() * sizeof(uint64_t));
    return;
  }
  walk(m, out);
  computed_++;
  if (cache_bytes_ + mask_words() * 8 > kMaskCacheBytes) {
    cache_.clear();
    cache_bytes_ = 0;
  }
  cache_.emplace(key, std::vector<uint64_t>(out, out + mask_words()));
  cache_bytes_ += mask_words() * 8;
}

void GrammarEngine::mask_uncached(const MatchPosition& m, uint64_t* out) {
  std::lock_guard<std::mutex> lock(mu_);
  walk(m, out);
}

bool GrammarEngine::accept(MatchPosition& m, int32_t t) {
  std::lock_guard<std::mutex> lock(mu_);
  if (t < 0 || t >= trie_->vocab) return false;
  if (t == trie_->eos) return m.utf8.need == 0 && states_.accepting(m.state);
  const int32_t b = trie_->token_offsets[t], e = trie_->token_offsets[t + 1];
  if (b == e) return false;
  MatchPosition n = m;
  for (int32_t i = b; i < e; i++)
    if (!step(n.state, n.utf8, trie_->token_bytes[i])) return false;
  m = n;
  return true;
}

bool GrammarEngine::complete(const MatchPosition& m) {
  std::lock_guard<std::mutex> lock(mu_);
  return m.utf8.need == 0 && states_.accepting(m.state);
}

bool GrammarEngine::finished(const MatchPosition& m) {
  std::lock_guard<std::mutex> lock(mu_);
  return m.utf8.need == 0 && states_.accepting(m.state) && !states_.can_continue(m.state);
}

EngineStats GrammarEngine::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return {states_.size(), cache_.size(), cache_bytes_, computed_, hits_};
}

void GrammarEngine::clear_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.clear();
  cache_bytes_ = 0;
}

}  // namespace constrain
}  // namespace simba
