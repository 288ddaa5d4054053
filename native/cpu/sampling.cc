// sampling.cc — next-token sampling from one row of logits (see sampling.h for the exact rule).
//
// Cost per row is a few linear passes over V (max, one vectorised exp pass when the support can be
// the whole vocabulary) plus work on the small candidate set: no full sort.
#include "cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

namespace simba {
namespace cpu {

namespace {

// The passes over V are written with GCC vector types of 16 floats and compiled three times
// (AVX-512, AVX2, baseline SSE2), picked at load time.
#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SIMBA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMBA_CLONES
#endif

constexpr int L = 16;  // lanes of one vector
// The helpers taking or returning vectors are always inlined: each clone then keeps its own calling
// convention for them (an out-of-line copy would be called with another clone's ABI).
#define SIMBA_VINLINE inline __attribute__((always_inline))
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float f16v __attribute__((vector_size(64)));
typedef int32_t i16v __attribute__((vector_size(64)));
typedef uint16_t u16v __attribute__((vector_size(32)));
typedef double d8v __attribute__((vector_size(64)));
typedef float f8v __attribute__((vector_size(32)));

SIMBA_VINLINE f16v load16(const float* p) {
  f16v v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
SIMBA_VINLINE void store16(float* p, f16v v) { std::memcpy(p, &v, sizeof v); }
SIMBA_VINLINE f16v splat(float a) { return f16v{} + a; }

// the largest lane of v (a shuffle tree)
SIMBA_VINLINE float hmax16(f16v v) {
  v = v > __builtin_shuffle(v, i16v{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7})
          ? v
          : __builtin_shuffle(v, i16v{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
  v = v > __builtin_shuffle(v, i16v{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11})
          ? v
          : __builtin_shuffle(v, i16v{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
  float m = v[0];
  for (int j = 1; j < 4; j++) m = v[j] > m ? v[j] : m;
  return m;
}

// exp(v) for v <= 0, relative error ~2e-7: 2^n * 2^f, n = round(v log2 e), f in [-0.5, 0.5] by a
// degree-6 polynomial. Below -87 it is clamped (a tiny positive weight, never 0 or NaN for finite v).
SIMBA_VINLINE f16v exp_neg(f16v v) {
  v = v < splat(-87.0f) ? splat(-87.0f) : v;
  const f16v t = v * 1.44269504088896341f;
  const f16v n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  const f16v f = t - n;
  f16v p = splat(1.5403530393381609e-4f);
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  const i16v bits = (i16v)p + (__builtin_convertvector(n, i16v) << 23);
  return (f16v)bits;
}

// w[i] = exp((x[i] - xmax) * inv_t) for i < n, and w[n .. n16) = 0 (n16: n rounded up to 16).
// x [n] -> w [n16]
SIMBA_CLONES void exp_row(const float* x, int n, float xmax, float inv_t, float* w) {
  int i = 0;
  for (; i + L <= n; i += L) store16(w + i, exp_neg((load16(x + i) - xmax) * inv_t));
  if (i < n) {
    float tail[L] = {};
    for (int j = 0; i + j < n; j++) tail[j] = x[i + j];
    f16v e = exp_neg((load16(tail) - xmax) * inv_t);
    for (int j = 0; j < L; j++) w[i + j] = i + j < n ? e[j] : 0.0f;
  }
}

// Sums of blocks of 64 weights in double: bs[b] = sum w[64 b .. 64 b + 64), w [nb * 64] zero-padded.
// Returns the total (the same additions, in block order, as a walk over bs makes).
SIMBA_CLONES double block_sums(const float* w, int nb, double* bs) {
  double total = 0;
  for (int b = 0; b < nb; b++) {
    const float* p = w + (size_t)b * 64;
    d8v a0 = {}, a1 = {};
    for (int j = 0; j < 64; j += 16) {
      f8v lo, hi;
      std::memcpy(&lo, p + j, 32);
      std::memcpy(&hi, p + j + 8, 32);
      a0 += __builtin_convertvector(lo, d8v);
      a1 += __builtin_convertvector(hi, d8v);
    }
    a0 += a1;
    const double s = ((a0[0] + a0[1]) + (a0[2] + a0[3])) + ((a0[4] + a0[5]) + (a0[6] + a0[7]));
    bs[b] = s;
    total += s;
  }
  return total;
}

// min of x [n] (n >= 1); NaNs are skipped unless all are NaN
SIMBA_CLONES float min_row(const float* x, int n) {
  float b = x[0];
  int i = 0;
  if (n >= L) {
    f16v m = load16(x);
    for (i = L; i + L <= n; i += L) {
      const f16v v = load16(x + i);
      m = v < m ? v : m;
    }
    b = -hmax16(-m);
  }
  for (; i < n; i++) b = x[i] < b ? x[i] : b;
  return b;
}

// argmax of x [n], lowest id on ties: one pass keeping each lane's max and its first id.
SIMBA_CLONES int argmax_row(const float* x, int n) {
  int best = 0;
  int i = 0;
  if (n >= L) {
    f16v M = load16(x);
    i16v at = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, id = at;
    for (i = L; i + L <= n; i += L) {
      id += L;
      const f16v v = load16(x + i);
      const i16v gt = v > M;
      M = gt ? v : M;
      at = gt ? id : at;
    }
    best = at[0];
    for (int j = 1; j < L; j++)
      if (M[j] > x[best] || (M[j] == x[best] && at[j] < best)) best = at[j];
  }
  for (; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

// sum of exp(x - xmax) over x [n], in double (for log_softmax)
SIMBA_CLONES double exp_sum(const float* x, int n, float xmax) {
  d8v a0 = {}, a1 = {};
  int i = 0;
  for (; i + L <= n; i += L) {
    const f16v e = exp_neg(load16(x + i) - xmax);
    f8v lo, hi;
    std::memcpy(&lo, &e, 32);
    std::memcpy(&hi, reinterpret_cast<const char*>(&e) + 32, 32);
    a0 += __builtin_convertvector(lo, d8v);
    a1 += __builtin_convertvector(hi, d8v);
  }
  a0 += a1;
  double total = ((a0[0] + a0[1]) + (a0[2] + a0[3])) + ((a0[4] + a0[5]) + (a0[6] + a0[7]));
  for (; i < n; i++) total += std::exp((double)x[i] - xmax);
  return total;
}

// Bucket of each id for the top-p histogram: b[i] = min(NB - 1, floor((xmax - x[i]) * scale)), or NB
// (excluded) when x[i] < thr (min-p). Monotone: a larger x never gets a larger bucket.
SIMBA_CLONES void bucket_row(const float* x, int n, float xmax, float scale, float thr, int NB, uint16_t* b) {
  const f16v top = splat((float)(NB - 1));
  const i16v excl = i16v{} + NB;
  int i = 0;
  for (; i + L <= n; i += L) {
    const f16v v = load16(x + i);
    f16v d = (xmax - v) * scale;
    d = d < top ? d : top;  // NaN -> the last bucket
    i16v k = __builtin_convertvector(d, i16v);
    k = v >= thr ? k : excl;
    const u16v k16 = __builtin_convertvector(k, u16v);
    std::memcpy(b + i, &k16, sizeof k16);
  }
  for (; i < n; i++) {
    float d = (xmax - x[i]) * scale;
    d = d < (float)(NB - 1) ? d : (float)(NB - 1);
    b[i] = x[i] >= thr ? (uint16_t)(int)d : (uint16_t)NB;
  }
}

// the ids i with b[i] == k, ascending (b [n]); blocks of 16 without one are skipped
SIMBA_CLONES void collect_bucket(const uint16_t* b, int n, int k, std::vector<int32_t>& E) {
  int i = 0;
  const u16v kv = u16v{} + (uint16_t)k;
  for (; i + 16 <= n; i += 16) {
    u16v v;
    std::memcpy(&v, b + i, sizeof v);
    const auto eq = v == kv;
    uint64_t q[4];
    std::memcpy(q, &eq, sizeof q);
    if ((q[0] | q[1] | q[2] | q[3]) == 0) continue;
    for (int j = 0; j < 16; j++)
      if (b[i + j] == k) E.push_back(i + j);
  }
  for (; i < n; i++)
    if (b[i] == k) E.push_back(i);
}

// w[i] = 0 where b[i] >= cut (w [n], b [n]): the weights of the support, zero elsewhere
SIMBA_CLONES void mask_row(float* w, const uint16_t* b, int n, int cut) {
  for (int i = 0; i < n; i++) w[i] = b[i] < cut ? w[i] : 0.0f;
}

// w[i] = 0 where x[i] < thr (min-p alone)
SIMBA_CLONES void mask_below(float* w, const float* x, int n, float thr) {
  for (int i = 0; i < n; i++) w[i] = x[i] >= thr ? w[i] : 0.0f;
}

// Largest of x [begin, begin + 64) (or to n), for top_n.
SIMBA_CLONES float block_max_row(const float* x, int begin, int n) {
  if (begin + 64 <= n) {
    f16v a = load16(x + begin), b = load16(x + begin + 16), c = load16(x + begin + 32), d = load16(x + begin + 48);
    a = a > b ? a : b;
    c = c > d ? c : d;
    return hmax16(a > c ? a : c);
  }
  float m = x[begin];
  for (int i = begin + 1; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
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

// The order of the support: x desc, then id asc; a NaN counts as -inf (a strict weak order even
// then, which std::sort needs to stay in bounds).
struct Better {
  const float* x;
  static float key(float v) { return v == v ? v : -std::numeric_limits<float>::infinity(); }
  bool operator()(int32_t a, int32_t b) const {
    const float ka = key(x[a]), kb = key(x[b]);
    return ka > kb || (ka == kb && a < b);
  }
};

// The n most likely ids of x (x desc, id asc), into out (most likely first).
//
// With few ids wanted (4 k <= blocks of 64): the k-th largest of the block maxima, t, is a lower
// bound of the k-th largest x (k blocks each hold a value >= t), so only blocks whose max is >= t
// can hold the answer, and only their ids with x >= t are candidates; those are sorted. Otherwise a
// min-heap of the k best so far.
void top_n(const float* x, int n, int k, SampleScratch& s, std::vector<int32_t>& out) {
  const Better better{x};
  k = std::min(k, n);
  out.clear();
  if (k <= 0) return;
  std::vector<int32_t>& idx = s.idx;
  idx.clear();
  const int nb = (n + 63) / 64;
  if (4 * k <= nb) {
    std::vector<float>& bm = s.x2;  // block maxima, NaN as -inf
    bm.resize(nb);
    for (int b = 0; b < nb; b++) bm[b] = Better::key(block_max_row(x, b * 64, n));
    std::vector<float>& sel = s.sel;
    sel.assign(bm.begin(), bm.end());
    std::nth_element(sel.begin(), sel.begin() + (k - 1), sel.end(), std::greater<float>());
    const float t = sel[k - 1];
    if (t > -std::numeric_limits<float>::infinity()) {
      for (int b = 0; b < nb; b++) {
        if (bm[b] < t) continue;
        const int end = std::min(n, b * 64 + 64);
        for (int i = b * 64; i < end; i++)
          if (x[i] >= t) idx.push_back(i);
      }
      if ((int)idx.size() >= k) {
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
        out.assign(idx.begin(), idx.begin() + k);
        return;
      }
      idx.clear();  // not reached: k blocks hold a value >= t
    }
  }
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

// The smallest float f with (double)f >= t: `(double)x >= t` is then `x >= f` in float.
float float_at_least(double t) {
  if (!(t > -3.4e38)) return -std::numeric_limits<float>::infinity();
  if (t > 3.4e38) return std::numeric_limits<float>::infinity();
  float f = (float)t;
  if ((double)f < t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// Without top-k: the support is a prefix, in the order (x desc, id asc), of the ids with x >= thr
// (min-p; thr = -inf without it), cut by top-p at `target` (of the weight over all n ids). On return
// w [n] holds the weights of the support and 0 elsewhere.
//
// Top-p needs no sort: every id gets a bucket of (xmax - x) / T (buckets 1/64 of a nat wide, the last
// one holding the far tail), one pass sums the weight per bucket, the bucket where the running
// weight crosses the target is found, and only that bucket's ids are sorted.
void support_weights(const float* x, int n, float xmax, double T, float thr, float top_p, float* w, SampleScratch& s) {
  if (top_p >= 1) {
    if (thr > -std::numeric_limits<float>::infinity()) mask_below(w, x, n, thr);
    return;
  }
  constexpr int NB = 1024;
  float lo = min_row(x, n);  // (the max is xmax, from the argmax)
  if (thr > lo) lo = thr;
  float range = std::min((float)(xmax - lo), (float)(16.0 * T));
  const float scale = range > 0 ? (float)(NB - 1) / range : 0.0f;
  s.bucket.resize(n);
  bucket_row(x, n, xmax, scale, thr, NB, s.bucket.data());
  // 4 interleaved histograms (no store-to-load chains between neighbours); bucket NB = excluded
  constexpr int H = NB + 1;
  s.mass.assign(4 * H, 0.0);
  double* M = s.mass.data();
  const uint16_t* b = s.bucket.data();
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    M[b[i]] += w[i];
    M[H + b[i + 1]] += w[i + 1];
    M[2 * H + b[i + 2]] += w[i + 2];
    M[3 * H + b[i + 3]] += w[i + 3];
  }
  for (; i < n; i++) M[b[i]] += w[i];
  double zc = 0;
  for (int k = 0; k < H; k++) zc += (M[k] + M[H + k]) + (M[2 * H + k] + M[3 * H + k]);
  const double target = (double)top_p * zc;
  double cum = 0;
  int bb = -1;
  for (int k = 0; k < NB; k++) {
    const double m = (M[k] + M[H + k]) + (M[2 * H + k] + M[3 * H + k]);
    if (cum + m >= target) {
      bb = k;
      break;
    }
    cum += m;
  }
  if (bb < 0) {  // the target is never reached: every candidate
    mask_row(w, b, n, NB);
    return;
  }
  // the crossing bucket, in order (x desc, id asc): its first ids that reach the target
  const Better better{x};
  std::vector<int32_t>& E = s.hist;
  E.clear();
  collect_bucket(b, n, bb, E);
  std::sort(E.begin(), E.end(), better);
  std::vector<float>& we = s.x2;
  we.resize(E.size());
  size_t keep = E.size();
  for (size_t j = 0; j < E.size(); j++) {
    we[j] = w[E[j]];
    cum += we[j];
    if (cum >= target && keep == E.size()) keep = j + 1;
  }
  mask_row(w, b, n, bb);
  for (size_t j = 0; j < keep; j++) w[E[j]] = we[j];
}

// The token: the first id, in ascending order, where the running weight of the support exceeds
// u * (its total); w [n16] (zero-padded to a multiple of 64 in s.w), u in [0, 1).
int32_t walk_support(const float* w, int n, double u, SampleScratch& s) {
  const int nb = (n + 63) / 64;
  s.blocks.resize(nb);
  const double zs = block_sums(w, nb, s.blocks.data());
  const double r = u * zs;
  double acc = 0;
  for (int b = 0; b < nb; b++) {
    const double bs = s.blocks[b];
    if (acc + bs > r && bs > 0) {
      int32_t last = -1;
      const int end = std::min(n, b * 64 + 64);
      for (int i = b * 64; i < end; i++) {
        if (w[i] <= 0) continue;
        last = i;
        acc += w[i];
        if (r < acc) return i;
      }
      if (last >= 0) return last;  // rounding between the block sum and the walk
    }
    acc += bs;
  }
  for (int i = n - 1; i >= 0; i--)  // only when the weights hold NaN
    if (w[i] > 0) return i;
  return -1;
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

namespace {

// Steps 4-5 on the adjusted logits x [n].
void sample_adjusted(const float* x, int n, SampleParams& p, SampleOut& out, SampleScratch& s) {
  const int best = argmax_row(x, n);
  const float xmax = x[best];

  // 5. the token
  if (p.temperature < kMinTemperature) {
    out.token = best;
  } else {
    const double T = p.temperature;
    // min-p: a threshold on x (a prefix of the order)
    const double thr =
        p.min_p > 0 ? (double)xmax + T * std::log((double)p.min_p) : -std::numeric_limits<double>::infinity();
    if (p.top_k > 0 && p.top_k < n) {
      // the top-k set in order, then min-p and top-p as prefixes of it
      std::vector<int32_t>& C = s.ids;
      top_n(x, n, p.top_k, s, C);
      std::vector<double>& wk = s.wk;
      wk.resize(C.size());
      double zc = 0;  // total weight of the top-k set
      for (size_t j = 0; j < C.size(); j++) {
        wk[j] = std::exp(((double)x[C[j]] - xmax) / T);
        zc += wk[j];
      }
      size_t cut = C.size();
      if (p.min_p > 0) {
        size_t m = 0;
        while (m < cut && (double)x[C[m]] >= thr) m++;
        cut = m;
      }
      if (p.top_p < 1) {
        const double target = (double)p.top_p * zc;
        double acc = 0;
        for (size_t j = 0; j < C.size(); j++) {
          acc += wk[j];
          if (acc >= target) {
            cut = std::min(cut, j + 1);
            break;
          }
        }
      }
      // walk the support in ascending id order
      std::vector<std::pair<int32_t, double>>& sup = s.support;
      sup.resize(cut);
      for (size_t j = 0; j < cut; j++) sup[j] = {C[j], wk[j]};
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
    } else {
      // every id is a candidate: the weights of all n, cut to the support, then the walk
      const int npad = (n + 63) / 64 * 64;
      s.w.resize(npad);
      float* w = s.w.data();
      exp_row(x, n, xmax, (float)(1.0 / T), w);
      std::fill(w + n, w + npad, 0.0f);
      support_weights(x, n, xmax, T, float_at_least(thr), p.top_p, w, s);
      const int32_t t = walk_support(w, n, splitmix_uniform(p.rng), s);
      out.token = t >= 0 ? t : best;
    }
  }

  // 4. logprobs = log_softmax(x)
  out.top_ids.clear();
  out.top_logprobs.clear();
  if (p.logprobs >= 0) {
    const double lse = (double)xmax + std::log(exp_sum(x, n, xmax));
    out.logprob = (float)((double)x[out.token] - lse);
    if (p.logprobs > 0) {
      top_n(x, n, p.logprobs, s, out.top_ids);
      for (int32_t id : out.top_ids) out.top_logprobs.push_back((float)((double)x[id] - lse));
    }
  }
}

// The allowed ids of x [n] (ascending) and their logits, into s.cid / s.cx.
void compact_allowed(const float* x, int n, const SampleParams& p, SampleScratch& s) {
  s.cx.clear();
  s.cid.clear();
  const int m = std::min(n, p.allow_n);
  for (int w = 0; w * 64 < m; w++) {
    uint64_t bits = p.allow[w];
    if (w * 64 + 64 > m) bits &= (m - w * 64 == 64) ? ~0ull : ((1ull << (m - w * 64)) - 1);
    while (bits) {
      const int id = w * 64 + __builtin_ctzll(bits);
      bits &= bits - 1;
      s.cid.push_back(id);
      s.cx.push_back(x[id]);
    }
  }
}

}  // namespace

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
  if (!p.allow) {
    sample_adjusted(x, n, p, out, s);
    return;
  }
  // with a mask: sample among the allowed ids as a row of their own, then map back to ids
  compact_allowed(x, n, p, s);
  if (s.cid.empty()) {
    out.token = -1;
    out.logprob = 0;
    out.top_ids.clear();
    out.top_logprobs.clear();
    return;
  }
  sample_adjusted(s.cx.data(), (int)s.cx.size(), p, out, s);  // (uses none of s.cx / s.cid's room)
  out.token = s.cid[out.token];
  for (int32_t& id : out.top_ids) id = s.cid[id];
}

}  // namespace cpu
}  // namespace simba
