// sampling.cc — next-token sampling from one row of logits (see sampling.h for the exact rule).
//
// Cost per row is a few linear passes over V (max, one vectorised exp pass when the support can be
// the whole vocabulary) plus work on the small candidate set: no full sort.
#include "cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace simba {
namespace cpu {

namespace {

// The hot loop is compiled twice (AVX2+FMA and baseline) and picked at load time.
#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SIMBA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMBA_CLONES
#endif

// exp(v) for v <= 0, relative error ~2e-7: 2^n * 2^f, f in [-0.5, 0.5] by a degree-6 polynomial.
inline float exp_neg(float v) {
  v = v < -87.0f ? -87.0f : v;
  const float t = v * 1.44269504088896341f;
  const float n = __builtin_floorf(t + 0.5f);
  const float f = t - n;
  float p = 1.5403530393381609e-4f;
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  int32_t bits;
  __builtin_memcpy(&bits, &p, 4);
  bits += (int32_t)n << 23;
  float r;
  __builtin_memcpy(&r, &bits, 4);
  return r;
}

// w[i] = exp((x[i] - xmax) * inv_t), i < n      x [n] -> w [n]
SIMBA_CLONES void exp_row(const float* x, int n, float xmax, float inv_t, float* w) {
  for (int i = 0; i < n; i++) w[i] = exp_neg((x[i] - xmax) * inv_t);
}

double sum_row(const float* w, int n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += w[i];
    a1 += w[i + 1];
    a2 += w[i + 2];
    a3 += w[i + 3];
  }
  for (; i < n; i++) a0 += w[i];
  return (a0 + a1) + (a2 + a3);
}

// max of x [n] in 16 lanes (vectorised), then the first id holding it: argmax, lowest id on ties.
SIMBA_CLONES int argmax_row(const float* x, int n) {
  float lane[16];
  for (int j = 0; j < 16; j++) lane[j] = x[0];
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  float m = lane[0];
  for (int j = 1; j < 16; j++) m = lane[j] > m ? lane[j] : m;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  for (int k = 0; k < n; k++)
    if (x[k] == m) return k;
  return 0;  // only when x holds NaN
}

// x [n] += bias; penalties over the generated tokens (step 3 of sampling.h).
void adjust_row(float* x, int n, const SampleParams& p, std::vector<int32_t>& hist) {
  for (int j = 0; j < p.nbias; j++)
    if (p.bias_ids[j] >= 0 && p.bias_ids[j] < n) x[p.bias_ids[j]] += p.bias_vals[j];
  if (p.history_len == 0 || (p.presence == 0 && p.frequency == 0 && p.repetition == 1)) return;
  hist.assign(p.history, p.history + p.history_len);
  std::sort(hist.begin(), hist.end());
  for (size_t a = 0; a < hist.size();) {
    size_t b = a;
    while (b < hist.size() && hist[b] == hist[a]) b++;
    const int id = hist[a];
    const float count = (float)(b - a);
    if (id >= 0 && id < n) {
      float v = x[id];
      if (p.repetition != 1) v = v > 0 ? v / p.repetition : v * p.repetition;
      x[id] = v - (count * p.frequency + p.presence);
    }
    a = b;
  }
}

// The n most likely ids of x (x desc, id asc), into out (most likely first).
void top_n(const float* x, int n, int k, std::vector<int32_t>& idx, std::vector<int32_t>& out) {
  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  k = std::min(k, n);
  out.clear();
  if (k <= 0) return;
  // a min-heap of the k best so far (its front is the worst kept)
  idx.clear();
  for (int i = 0; i < n; i++) {
    if ((int)idx.size() < k) {
      idx.push_back(i);
      std::push_heap(idx.begin(), idx.end(), better);
    } else if (better(i, idx.front())) {
      std::pop_heap(idx.begin(), idx.end(), better);
      idx.back() = i;
      std::push_heap(idx.begin(), idx.end(), better);
    }
  }
  std::sort(idx.begin(), idx.end(), better);
  out.assign(idx.begin(), idx.end());
}

constexpr float kMinTemperature = 1e-5f;  // below: greedy (1 / T would overflow)

// Top-p over candidates C (ids in ascending order, weights w [V]): keeps, in place and in id order,
// the shortest prefix of C in the order (x desc, id asc) whose weight reaches target; returns its
// size (all of C when it never does). No sort of C: a histogram of x over 4096 buckets finds the
// bucket where the running weight crosses the target, and only that bucket's ids are sorted.
size_t top_p_cut(const float* x, float xmax, const float* w, std::vector<int32_t>& C, double target, SampleScratch& s) {
  constexpr int NB = 4096;
  const size_t m = C.size();
  float lo = xmax;
  for (size_t j = 0; j < m; j++) lo = std::min(lo, x[C[j]]);
  const float scale = xmax > lo ? (float)(NB - 1) / (xmax - lo) : 0.0f;
  s.bucket.resize(m);
  s.mass.assign(NB, 0.0);
  for (size_t j = 0; j < m; j++) {
    const int b = std::min(NB - 1, (int)((xmax - x[C[j]]) * scale));
    s.bucket[j] = (uint16_t)b;
    s.mass[b] += w[C[j]];
  }
  double cum = 0;
  int bb = -1;
  for (int b = 0; b < NB; b++) {
    if (cum + s.mass[b] >= target) {
      bb = b;
      break;
    }
    cum += s.mass[b];
  }
  if (bb < 0) return m;
  // the crossing bucket, in order: its first ids (by x desc, id asc) that reach the target
  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  std::vector<int32_t>& E = s.hist;
  E.clear();
  for (size_t j = 0; j < m; j++)
    if (s.bucket[j] == bb) E.push_back(C[j]);
  std::sort(E.begin(), E.end(), better);
  int32_t last = E.back();
  for (int32_t e : E) {
    cum += w[e];
    if (cum >= target) {
      last = e;
      break;
    }
  }
  size_t k = 0;
  for (size_t j = 0; j < m; j++) {
    const int32_t id = C[j];
    if (s.bucket[j] < bb || (s.bucket[j] == bb && (id == last || better(id, last)))) C[k++] = id;
  }
  C.resize(k);
  return k;
}

}  // namespace

double splitmix_uniform(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1.0p-53;
}

void sample_row(const float* logits, int V, SampleParams& p, SampleOut& out, SampleScratch& s) {
  const int n = p.limit > 0 && p.limit < V ? p.limit : V;
  // 1-3. the adjusted logits x [n] (the row itself when nothing changes it)
  const float* x = logits;
  const bool penal = p.history_len > 0 && (p.presence != 0 || p.frequency != 0 || p.repetition != 1);
  if (p.nbias > 0 || penal) {
    s.x.assign(logits, logits + n);
    adjust_row(s.x.data(), n, p, s.hist);
    x = s.x.data();
  }
  const int best = argmax_row(x, n);
  const float xmax = x[best];

  // 5. the token
  std::vector<float>& w_store = s.w;
  if (p.temperature < kMinTemperature) {
    out.token = best;
  } else {
    const double T = p.temperature;
    const bool topk = p.top_k > 0 && p.top_k < n;
    std::vector<int32_t>& C = s.idx;
    std::vector<float> wk;  // weights of C (aligned with C) when C is not all ids
    double zc = 0;          // total weight of the top-k set (or of all ids)
    const float* w_all = nullptr;
    if (topk) {
      std::vector<int32_t> ids;
      top_n(x, n, p.top_k, C, ids);  // C is scratch here; ids = top-k in order
      C.swap(ids);
      wk.resize(C.size());
      for (size_t j = 0; j < C.size(); j++) {
        wk[j] = (float)std::exp(((double)x[C[j]] - xmax) / T);
        zc += wk[j];
      }
    } else {
      w_store.resize(n);
      exp_row(x, n, xmax, (float)(1.0 / T), w_store.data());
      w_all = w_store.data();
      zc = sum_row(w_all, n);
    }
    auto weight = [&](size_t j) -> double { return topk ? wk[j] : w_all[C[j]]; };
    // min-p: a threshold on x (a prefix of the order)
    const double thr =
        p.min_p > 0 ? (double)xmax + T * std::log((double)p.min_p) : -std::numeric_limits<double>::infinity();
    if (!topk) {
      C.clear();
      for (int i = 0; i < n; i++)
        if ((double)x[i] >= thr) C.push_back(i);
    } else if (p.min_p > 0) {
      size_t m = 0;
      while (m < C.size() && (double)x[C[m]] >= thr) m++;
      C.resize(m);
      wk.resize(m);
    }
    size_t cut = C.size();
    bool id_order = !topk;  // C is in ascending id order (the top-k set is in x order)
    if (p.top_p < 1) {
      const double target = (double)p.top_p * zc;
      if (topk) {  // C is already in order
        double acc = 0;
        for (size_t j = 0; j < C.size(); j++) {
          acc += weight(j);
          if (acc >= target) {
            cut = j + 1;
            break;
          }
        }
      } else {
        cut = top_p_cut(x, xmax, w_all, C, target, s);
        id_order = true;  // top_p_cut keeps C in id order
      }
    }
    // walk the support in ascending id order
    if (id_order) {
      double zs = 0;
      for (size_t j = 0; j < cut; j++) zs += w_all[C[j]];
      const double r = splitmix_uniform(p.rng) * zs;
      double acc = 0;
      out.token = C[cut - 1];
      for (size_t j = 0; j < cut; j++) {
        acc += w_all[C[j]];
        if (r < acc) {
          out.token = C[j];
          break;
        }
      }
    } else {
      std::vector<std::pair<int32_t, double>>& sup = s.support;
      sup.resize(cut);
      for (size_t j = 0; j < cut; j++) sup[j] = {C[j], weight(j)};
      std::sort(sup.begin(), sup.end());
      double zs = 0;
      for (auto& e : sup) zs += e.second;
      const double r = splitmix_uniform(p.rng) * zs;
      double acc = 0;
      out.token = sup.back().first;
      for (auto& e : sup) {
        acc += e.second;
        if (r < acc) {
          out.token = e.first;
          break;
        }
      }
    }
  }

  // 4. logprobs = log_softmax(x)
  out.top_ids.clear();
  out.top_logprobs.clear();
  if (p.logprobs >= 0) {
    w_store.resize(n);
    exp_row(x, n, xmax, 1.0f, w_store.data());
    const double lse = (double)xmax + std::log(sum_row(w_store.data(), n));
    out.logprob = (float)((double)x[out.token] - lse);
    if (p.logprobs > 0) {
      top_n(x, n, p.logprobs, s.idx, out.top_ids);
      for (int32_t id : out.top_ids) out.top_logprobs.push_back((float)((double)x[id] - lse));
    }
  }
}

}  // namespace cpu
}  // namespace simba
