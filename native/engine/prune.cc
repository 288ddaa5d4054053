// prune.cc — Simba token pruning between layers (see prune.h), step by step.
#include "engine/prune.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace simba {

namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// 1. Whether layer `layer` drops a token of some sequence.
bool drops_tokens(const SimbaOptions& o, int layer, int L, const LiveRows& rows) {
  bool any = false;
  for (size_t s = 0; s < rows.seqs.size(); s++) any |= o.keep[s * L + layer] < rows.seqs[s].T;
  return any;
}

// 2. score_buf[r] for the rows alive, for the criteria that score rows.
void score_rows(const SimbaOptions& o, simba_criterion_t crit, Mixer& mixer, const MixerIO& io, int d,
                float* score_buf) {
  if (criterion_uses_scan(crit)) {
    mixer.score(io, crit == SIMBA_CRITERION_LOCAL, o.reduce_sum, score_buf);
  } else if (crit == SIMBA_CRITERION_NORM) {
    for (int r = 0; r < io.M; r++) {
      double ss = 0;
      for (int k = 0; k < d; k++) ss += (double)io.out[(size_t)r * d + k] * io.out[(size_t)r * d + k];
      score_buf[r] = (float)std::sqrt(ss);
    }
  }
}

// Which of T tokens to keep (k of them), in order: the last token, the first protect_first and
// last protect_last tokens, then the highest scores (ties: earlier first).
std::vector<int> select_keep(const float* score, int T, int k, const SimbaOptions& o) {
  std::vector<char> keep(T, 0);
  int have = 0;
  auto take = [&](int t) {
    if (!keep[t]) {
      keep[t] = 1;
      have++;
    }
  };
  take(T - 1);
  for (int t = 0; t < std::min(o.protect_first, T); t++) take(t);
  for (int t = std::max(0, T - o.protect_last); t < T; t++) take(t);
  if (have < k) {
    std::vector<int> order(T);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    for (int t : order) {
      if (have >= k) break;
      take(t);
    }
  }
  std::vector<int> out;
  out.reserve(have);
  for (int t = 0; t < T; t++)
    if (keep[t]) out.push_back(t);
  return out;
}

// 3. The positions (within the sequence) that sequence s keeps after layer `layer`, in order.
std::vector<int> kept_tokens(const SimbaOptions& o, simba_criterion_t crit, int layer, int L, int s,
                             const LiveRows& rows, const float* score_buf) {
  const cpu::SeqSlice& sq = rows.seqs[s];
  const int T = sq.T, k = std::max(1, std::min(T, o.keep[(size_t)s * L + layer]));
  std::vector<int> kept;
  if (k >= T) {
    kept.resize(T);
    std::iota(kept.begin(), kept.end(), 0);
    return kept;
  }
  std::vector<float> sc(T);
  for (int t = 0; t < T; t++) {
    if (crit == SIMBA_CRITERION_UNIFORM) sc[t] = 0.f;
    else if (crit == SIMBA_CRITERION_RANDOM)
      sc[t] = (float)(splitmix(o.seed ^ splitmix(((uint64_t)layer << 40) ^ ((uint64_t)s << 20) ^
                                                 (uint64_t)rows.orig[sq.row0 + t])) >>
                      40);
    else sc[t] = score_buf[sq.row0 + t];
  }
  if (crit == SIMBA_CRITERION_UNIFORM)  // evenly strided: positions round((i+1) T / k) - 1
    for (int i = 0; i < k; i++) sc[(int)(((int64_t)2 * (i + 1) * T + k) / (2 * k)) - 1] = 1.f;
  return select_keep(sc.data(), T, k, o);
}

// 4. Sequence s's tokens not in kept exit after layer `layer`: their residual stream (h) is their
// final hidden state.
void exit_dropped(int layer, int s, const std::vector<int>& kept, const float* h, int d, LiveRows& rows,
                  ForwardResult& res) {
  const cpu::SeqSlice& sq = rows.seqs[s];
  size_t ki = 0;
  for (int t = 0; t < sq.T; t++) {
    const int row = sq.row0 + t;
    if (ki < kept.size() && kept[ki] == t) {
      ki++;
      continue;
    }
    res.exit_layer[rows.orig[row]] = layer + 1;
    const int slot = rows.want_slot[rows.orig[row]];
    if (slot >= 0) std::memcpy(&rows.fin[(size_t)slot * d], &h[(size_t)row * d], sizeof(float) * d);
  }
}

// 5. Sequence s's kept rows move to rows [next, next + kept) in place: kept rows only move towards
// the front (sequences are laid out in order), so copying front to back never overwrites a row
// still to be read. Returns the next free row.
int compact(int s, const std::vector<int>& kept, float* h, int d, int next, LiveRows& rows) {
  cpu::SeqSlice& sq = rows.seqs[s];
  const int row0 = next;
  for (int t : kept) {
    const int from = sq.row0 + t;
    if (from != next) std::memcpy(&h[(size_t)next * d], &h[(size_t)from * d], sizeof(float) * d);
    rows.orig[next++] = rows.orig[from];
  }
  sq.row0 = row0;
  sq.T = (int)kept.size();
  return next;
}

}  // namespace

void prune_layer(const SimbaOptions& o, int L, Mixer& mixer, const MixerIO& io, float* h, int d, float* score_buf,
                 LiveRows& rows, ForwardResult& res) {
  if (!drops_tokens(o, io.layer, L, rows)) return;
  const simba_criterion_t crit = criterion_of(o.criterion);
  score_rows(o, crit, mixer, io, d, score_buf);
  int next = 0;
  for (int s = 0; s < (int)rows.seqs.size(); s++) {
    const std::vector<int> kept = kept_tokens(o, crit, io.layer, L, s, rows, score_buf);
    exit_dropped(io.layer, s, kept, h, d, rows, res);
    next = compact(s, kept, h, d, next, rows);
  }
  rows.M = next;
}

}  // namespace simba
