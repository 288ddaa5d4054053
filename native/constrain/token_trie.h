// token_trie.h — the vocabulary of one tokenizer as a trie over each token's bytes, built once per
// model: nodes in preorder, so a subtree is a contiguous range and a walk can skip one whole
// (token_mask.h). Tokens without bytes (special tokens) are left out: no constraint allows them.
#pragma once
#include <cstdint>
#include <vector>

namespace simba {
namespace constrain {

struct TokenTrie {
  // bytes [offsets[V]]: token t's bytes are bytes[offsets[t] .. offsets[t + 1]); eos: -1 for none.
  TokenTrie(const uint8_t* bytes, const int32_t* offsets, int32_t V, int32_t eos);

  int32_t vocab = 0;  // token ids are 0 .. vocab - 1
  int32_t eos = -1;
  // Per node (node 0 is the root, the empty prefix): its last byte, its depth, one past the last node
  // of its subtree, and its tokens (ids[tok_begin[n] .. tok_begin[n + 1])).
  std::vector<uint8_t> byte;
  std::vector<int32_t> depth, end, tok_begin, ids;
  int32_t max_depth = 0;
  // Each token's bytes (for accepting a chosen token).
  std::vector<uint8_t> token_bytes;
  std::vector<int32_t> token_offsets;
};

}  // namespace constrain
}  // namespace simba
