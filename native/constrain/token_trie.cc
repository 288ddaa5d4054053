// token_trie.cc — builds the trie from the tokens sorted by their bytes: each token shares the
// path of its longest common prefix with the previous one, so the nodes come out in preorder.
#include "constrain/token_trie.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace simba {
namespace constrain {

TokenTrie::TokenTrie(const uint8_t* bytes, const int32_t* offsets, int32_t V, int32_t eos_id)
    : vocab(V), eos(eos_id), token_bytes(bytes, bytes + offsets[V]), token_offsets(offsets, offsets + V + 1) {
  auto len = [&](int32_t t) { return offsets[t + 1] - offsets[t]; };
  std::vector<int32_t> order;
  for (int32_t t = 0; t < V; t++)
    if (len(t) > 0) order.push_back(t);
  auto less = [&](int32_t a, int32_t b) {
    const int n = std::min(len(a), len(b));
    const int c = std::memcmp(bytes + offsets[a], bytes + offsets[b], (size_t)n);
    return c < 0 || (c == 0 && (len(a) < len(b) || (len(a) == len(b) && a < b)));
  };
  std::sort(order.begin(), order.end(), less);
  byte.push_back(0);
  depth.push_back(0);
  end.push_back(0);
  tok_begin.push_back(0);
  std::vector<int32_t> path{0};  // path[d]: the node at depth d of the current token
  const uint8_t* prev = nullptr;
  int prev_len = 0;
  for (int32_t t : order) {
    const uint8_t* b = bytes + offsets[t];
    const int n = len(t);
    int common = 0;
    while (common < n && common < prev_len && b[common] == prev[common]) common++;
    while ((int)path.size() > common + 1) {  // close the nodes below the common prefix
      end[path.back()] = (int32_t)byte.size();
      path.pop_back();
    }
    for (int d = common; d < n; d++) {
      path.push_back((int32_t)byte.size());
      byte.push_back(b[d]);
      depth.push_back(d + 1);
      end.push_back(0);
      tok_begin.push_back((int32_t)ids.size());
    }
    max_depth = std::max(max_depth, n);
    ids.push_back(t);  // on the last node (path.back()), whose tokens are contiguous in `ids`
    prev = b;
    prev_len = n;
  }
  while (!path.empty()) {
    end[path.back()] = (int32_t)byte.size();
    path.pop_back();
  }
  tok_begin.push_back((int32_t)ids.size());
}

}  // namespace constrain
}  // namespace simba
