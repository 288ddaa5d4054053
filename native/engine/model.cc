// model.cc — weights and the forward pass (see model.h). Reads top to bottom like the math:
// embed -> per layer [rmsnorm, in_proj, conv1d+silu, x_proj, dt_proj, selective scan, out_proj,
// residual, Simba pruning] -> norm_f -> head on the wanted positions.
#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "cpu/dispatch.h"
#include "cpu/threadpool.h"
#include "engine/tensor_table.h"

namespace simba {

// ---------------------------------------------------------------- storage

void AlignedBuf::Free::operator()(void* p) const { std::free(p); }

AlignedBuf::AlignedBuf(size_t bytes, bool zero) : bytes_(bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!p) throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes for weights");
  if (zero) std::memset(p, 0, rounded ? rounded : 64);
  p_.reset(p);
}

static uint16_t to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// W [N, K] row-major -> panels (kernels.h): f32 [np][K][32], bf16 [np][K2/2][32][2], int8 [np][K4/4][32][4].
void pack_linear(Linear& lin, const float* W, int N, int K, cpu::WeightFormat format) {
  using cpu::kPanel;
  using cpu::WeightFormat;
  cpu::PackedWeight& p = lin.w;
  p = cpu::PackedWeight{};
  p.N = N;
  p.K = K;
  p.npanels = (N + kPanel - 1) / kPanel;
  p.format = format;
  p.bf16 = format == WeightFormat::BF16;
  p.Kp = format == WeightFormat::F32 ? K : format == WeightFormat::BF16 ? (K + 1) / 2 * 2 : (K + 3) / 4 * 4;
  const size_t elems = (size_t)p.npanels * p.Kp * kPanel;
  const size_t nfeat = (size_t)p.npanels * kPanel;
  // Without W the panels stay zero; with W the packing below writes every byte (padding included).
  lin.store = AlignedBuf(elems * (format == WeightFormat::F32 ? 4 : format == WeightFormat::BF16 ? 2 : 1), W == nullptr);
  void* dst = lin.store.data();
  if (format == WeightFormat::F32) p.f32 = static_cast<const float*>(dst);
  else if (format == WeightFormat::BF16) p.h16 = static_cast<const uint16_t*>(dst);
  else {
    p.q8 = static_cast<const int8_t*>(dst);
    lin.qmeta = AlignedBuf(nfeat * 8);
    p.scale = static_cast<const float*>(lin.qmeta.data());
    p.colsum = reinterpret_cast<const int32_t*>(static_cast<const float*>(lin.qmeta.data()) + nfeat);
  }
  if (!W) return;
  // Panel by panel on the thread pool; within a panel k-major, so the writes are sequential and
  // the 32 source rows are read as 32 forward streams.
  char* out = static_cast<char*>(dst);
  float* scale = const_cast<float*>(p.scale);
  int32_t* colsum = const_cast<int32_t*>(p.colsum);
  const int Kp = p.Kp;
  auto pack_panel = [&](int pi) {
    const int n0 = pi * kPanel, nc = std::min(kPanel, N - n0);
    const size_t pbase = (size_t)pi * Kp * kPanel;
    // Features past N (c >= nc) and k past K are zero padding.
    if (format == WeightFormat::F32) {
      float* d = reinterpret_cast<float*>(out) + pbase;
      for (int k = 0; k < K; k++)
        for (int c = 0; c < kPanel; c++) d[(size_t)k * kPanel + c] = c < nc ? W[(size_t)(n0 + c) * K + k] : 0.f;
    } else if (format == WeightFormat::BF16) {
      uint16_t* d = reinterpret_cast<uint16_t*>(out) + pbase;
      for (int k = 0; k < Kp; k++)
        for (int c = 0; c < kPanel; c++)
          d[(size_t)(k / 2) * 2 * kPanel + c * 2 + k % 2] = c < nc && k < K ? to_bf16(W[(size_t)(n0 + c) * K + k]) : 0;
    } else {
      int8_t* d = reinterpret_cast<int8_t*>(out) + pbase;
      float inv[kPanel];
      for (int c = 0; c < nc; c++) {  // symmetric scale per output feature
        const float* row = W + (size_t)(n0 + c) * K;
        float amax = 0.f;
        for (int k = 0; k < K; k++) amax = std::max(amax, std::fabs(row[k]));
        scale[n0 + c] = amax > 0.f ? amax / 127.f : 1.f;
        inv[c] = 1.f / scale[n0 + c];
        colsum[n0 + c] = 0;
      }
      for (int k = 0; k < Kp; k++)
        for (int c = 0; c < kPanel; c++) {
          int8_t q = 0;
          if (c < nc && k < K) {
            q = (int8_t)std::max(-127.f, std::min(127.f, std::nearbyint(W[(size_t)(n0 + c) * K + k] * inv[c])));
            colsum[n0 + c] += q;
          }
          d[(size_t)(k / 4) * 4 * kPanel + c * 4 + k % 4] = q;
        }
    }
  };
  cpu::ThreadPool::global().run(p.npanels, [&](int, int b, int e) { for (int pi = b; pi < e; pi++) pack_panel(pi); });
  lin.set = true;
}

// ---------------------------------------------------------------- construction

namespace {
constexpr size_t kKeepScratchFloats = (size_t)64 << 20;  // 256 MB of activations stay allocated between calls
}  // namespace

Model::Model(const ModelConfig& c, cpu::WeightFormat format) : cfg_(c), format_(format) {
  auto positive = [](int v, const char* what) {
    if (v <= 0) throw std::invalid_argument(std::string("config: ") + what + " must be a positive integer, got " + std::to_string(v));
  };
  positive(c.vocab, "vocabSize"); positive(c.d, "dModel"); positive(c.L, "nLayer");
  positive(c.E, "dInner"); positive(c.N, "dState"); positive(c.R, "dtRank"); positive(c.K, "dConv");
  if (c.K > kMaxConv) throw std::invalid_argument("config: dConv " + std::to_string(c.K) + " is larger than the supported " + std::to_string(kMaxConv));
  if (c.N > kMaxState) throw std::invalid_argument("config: dState " + std::to_string(c.N) + " is larger than the supported " + std::to_string(kMaxState));
  if (!(c.eps > 0) || !std::isfinite(c.eps)) throw std::invalid_argument("config: eps must be a positive number");
  layers_.resize(c.L);
  for (auto& l : layers_) l.have.assign(kNumLayerTensors, false);
}

void Model::set_tensor(const std::string& name, int layer, const float* x, size_t count) {
  if (ready_) throw std::logic_error("model is finalized; tensors can no longer be set");
  const ModelConfig& c = cfg_;
  auto expect = [&](size_t n, const std::string& shape) {
    if (count != n)
      throw std::invalid_argument("tensor '" + name + "'" + (layer >= 0 ? " of layer " + std::to_string(layer) : std::string()) +
                                  ": expected " + shape + " = " + std::to_string(n) + " values, got " + std::to_string(count));
  };
  auto dims = [](std::initializer_list<int> d) {
    std::string s = "[";
    for (int v : d) s += (s.size() > 1 ? ", " : "") + std::to_string(v);
    return s + "]";
  };
  if (layer < 0) {
    if (name == "embedding") { expect((size_t)c.vocab * c.d, dims({c.vocab, c.d})); pack(embed_, x, c.vocab, c.d); }
    else if (name == "lm_head") {
      if (c.tie) throw std::invalid_argument("tensor 'lm_head' given but the config ties the head to the embedding");
      expect((size_t)c.vocab * c.d, dims({c.vocab, c.d})); pack(head_, x, c.vocab, c.d);
    } else if (name == "norm_f") { expect(c.d, dims({c.d})); norm_f_.assign(x, x + c.d); }
    else throw std::invalid_argument("unknown global tensor '" + name + "'");
    return;
  }
  if (layer >= c.L) throw std::invalid_argument("tensor '" + name + "': layer " + std::to_string(layer) + " out of range (model has " + std::to_string(c.L) + ")");
  Layer& l = layers_[layer];
  const int idx = layer_tensor_index(name);
  if (idx < 0) throw std::invalid_argument("unknown layer tensor '" + name + "'");
  if ((name == "in_proj_bias" || name == "out_proj_bias") && !c.proj_bias)
    throw std::invalid_argument("tensor '" + name + "' given but the config has no projection biases (use_bias false)");
  if (name == "conv_b" && !c.conv_bias) throw std::invalid_argument("tensor 'conv_b' given but the config has no conv bias");
  const int E = c.E, N = c.N, R = c.R, K = c.K, d = c.d;
  if (name == "norm") { expect(d, dims({d})); l.norm.assign(x, x + d); }
  else if (name == "in_proj") { expect((size_t)2 * E * d, dims({2 * E, d})); pack(l.in_proj, x, 2 * E, d); }
  else if (name == "in_proj_bias") { expect((size_t)2 * E, dims({2 * E})); l.in_proj.bias.assign(x, x + 2 * E); }
  else if (name == "conv_w") {
    expect((size_t)E * K, dims({E, K}));
    l.conv_wT.assign((size_t)K * E, 0.f);
    for (int e = 0; e < E; e++) for (int j = 0; j < K; j++) l.conv_wT[(size_t)j * E + e] = x[(size_t)e * K + j];
  } else if (name == "conv_b") { expect(E, dims({E})); l.conv_b.assign(x, x + E); }
  else if (name == "x_proj") { expect((size_t)(R + 2 * N) * E, dims({R + 2 * N, E})); pack(l.x_proj, x, R + 2 * N, E); }
  else if (name == "dt_proj_w") { expect((size_t)E * R, dims({E, R})); pack(l.dt_proj, x, E, R); }
  else if (name == "dt_proj_b") { expect(E, dims({E})); l.dt_proj.bias.assign(x, x + E); }
  else if (name == "A_log") {
    expect((size_t)E * N, dims({E, N}));
    l.AT.assign((size_t)N * E, 0.f);
    for (int e = 0; e < E; e++) for (int n = 0; n < N; n++) l.AT[(size_t)n * E + e] = -std::exp(x[(size_t)e * N + n]);
  } else if (name == "D") { expect(E, dims({E})); l.D.assign(x, x + E); }
  else if (name == "out_proj") { expect((size_t)d * E, dims({d, E})); pack(l.out_proj, x, d, E); }
  else if (name == "out_proj_bias") { expect(d, dims({d})); l.out_proj.bias.assign(x, x + d); }
  l.have[idx] = true;
}

void Model::finalize() {
  const ModelConfig& c = cfg_;
  auto missing = [](const std::string& what) { throw std::invalid_argument("missing tensor '" + what + "'"); };
  if (!embed_.set) missing("embedding");
  if (norm_f_.empty()) missing("norm_f");
  if (!c.tie && !head_.set) missing("lm_head (the config has an untied head)");
  require_layer_tensors(c.L, c.conv_bias, c.proj_bias, [&](int li, int i) { return (bool)layers_[li].have[i]; });
  ready_ = true;
}

// Deterministic random weights with the scales of a trained Mamba (shared/peers/make_random_mamba.py):
// uniform noise with the stated standard deviations.
void Model::randomize(uint64_t seed) {
  const auto& c = cfg_;
  random_weights(ModelDims{c.vocab, c.d, c.L, c.E, c.N, c.R, c.K, (bool)c.conv_bias, (bool)c.proj_bias, (bool)c.tie}, seed,
                 [this](const std::string& name, int layer, const float* x, size_t n) { set_tensor(name, layer, x, n); });
}

size_t Model::param_count() const {
  const ModelConfig& c = cfg_;
  size_t per = (size_t)c.d + 2ull * c.E * c.d + (size_t)c.E * c.K + (c.conv_bias ? c.E : 0) + (size_t)(c.R + 2 * c.N) * c.E +
               (size_t)c.E * c.R + c.E + (size_t)c.E * c.N + c.E + (size_t)c.d * c.E + (c.proj_bias ? 2 * c.E + c.d : 0);
  return (size_t)c.vocab * c.d * (c.tie ? 1 : 2) + c.d + per * c.L;
}

size_t Model::weight_bytes() const {
  auto bytes = [](const Linear& l) { return l.store.bytes() + l.qmeta.bytes(); };
  size_t b = bytes(embed_) + bytes(head_);
  for (const auto& l : layers_) b += bytes(l.in_proj) + bytes(l.x_proj) + bytes(l.dt_proj) + bytes(l.out_proj);
  return b;
}

// ---------------------------------------------------------------- forward

void Model::check_request(const ForwardRequest& r) const {
  if (!ready_) throw std::logic_error("model is not finalized (weights incomplete)");
  const size_t nseq = r.lengths.size();
  if (nseq == 0) throw std::invalid_argument("no sequences given");
  if (r.states.size() != nseq) throw std::invalid_argument("one state per sequence is required");
  size_t total = 0;
  for (int n : r.lengths) {
    if (n < 1) throw std::invalid_argument("every sequence needs at least one token (got an empty one)");
    total += n;
  }
  if (total != r.tokens.size()) throw std::invalid_argument("token count does not match the sequence lengths");
  for (size_t i = 0; i < r.tokens.size(); i++)
    if (r.tokens[i] < 0 || r.tokens[i] >= cfg_.vocab)
      throw std::out_of_range("token id " + std::to_string(r.tokens[i]) + " at index " + std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(cfg_.vocab) + ")");
  for (int w : r.want)
    if (w < 0 || (size_t)w >= total) throw std::out_of_range("logits position " + std::to_string(w) + " is outside the " + std::to_string(total) + " tokens");
  if (r.simba.enabled && r.simba.keep.size() != nseq * cfg_.L)
    throw std::invalid_argument("simba keep counts: expected " + std::to_string(nseq * cfg_.L) + " (sequences x layers)");
}

namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Picks which of T tokens to keep (k of them), in order: the last token, the first
// protect_first and last protect_last tokens, then the highest scores (ties: earlier first).
std::vector<int> select_keep(const float* score, int T, int k, const SimbaOptions& o) {
  std::vector<char> keep(T, 0);
  int have = 0;
  auto take = [&](int t) { if (!keep[t]) { keep[t] = 1; have++; } };
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
  for (int t = 0; t < T; t++) if (keep[t]) out.push_back(t);
  return out;
}

}  // namespace

float* Model::scratch(size_t floats) {
  if (floats > scratch_floats_) {
    scratch_.reset();  // free first: peak memory stays at one buffer
    scratch_.reset(new float[floats]);
    scratch_floats_ = floats;
  }
  return scratch_.get();
}

ForwardResult Model::forward(const ForwardRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  check_request(req);
  const ModelConfig& c = cfg_;
  const int d = c.d, E = c.E, N = c.N, R = c.R, K = c.K, L = c.L, V = c.vocab;
  const int nseq = (int)req.lengths.size();
  const int total = (int)req.tokens.size();
  const int ldbc = R + 2 * N;
  const bool prune = req.simba.enabled;

  ForwardResult res;
  res.processed.assign((size_t)nseq * L, 0);
  res.exit_layer.assign(total, L);

  // Rows currently alive, per sequence: rows [row0, row0+T) of the activations; orig[row] is the
  // token's index in req.tokens.
  std::vector<cpu::SeqSlice> seqs(nseq);
  std::vector<int> orig(total);
  std::iota(orig.begin(), orig.end(), 0);
  for (int s = 0, r = 0; s < nseq; s++) { seqs[s].row0 = r; seqs[s].T = req.lengths[s]; r += req.lengths[s]; }

  // Wanted positions: where their final hidden state lands (row of `fin`), filled on exit.
  std::vector<int> want_slot(total, -1);
  for (size_t i = 0; i < req.want.size(); i++) want_slot[req.want[i]] = (int)i;
  std::vector<float> fin(req.want.size() * (size_t)d);

  // Activations (token-major), carved from the reused scratch. M shrinks as tokens are pruned.
  const size_t T = (size_t)total;
  float* p = scratch(T * (3 * (size_t)d + 2 * (size_t)E + 3 * (size_t)E + ldbc) + (prune ? T : 0));
  auto carve = [&p](size_t n) { float* q = p; p += n; return q; };
  float* h = carve(T * d);
  float* xn = carve(T * d);
  float* xz = carve(T * 2 * E);
  float* xc = carve(T * E);
  float* dbc = carve(T * ldbc);
  float* dt = carve(T * E);
  float* y = carve(T * E);
  float* out = carve(T * d);
  float* score_buf = prune ? carve(T) : nullptr;

  // h[t] = embedding[token t] (read from the packed matrix, which doubles as the tied head)
  for (int t = 0; t < total; t++)
    for (int k = 0; k < d; k++) h[(size_t)t * d + k] = embed_.w.at(req.tokens[t], k);

  int M = total;
  for (int li = 0; li < L; li++) {
    Layer& l = layers_[li];
    for (int s = 0; s < nseq; s++) {
      float* st = req.states[s] + (size_t)li * layer_state_floats();
      seqs[s].conv = st;
      seqs[s].ssm = st + (size_t)E * (K - 1);
      res.processed[(size_t)s * L + li] = seqs[s].T;
    }
    // xn = rmsnorm(h) * norm                     [M, d]
    cpu::rmsnorm(h, d, l.norm.data(), xn, d, M, d, c.eps);
    // xz = xn in_proj^T (+b)                     [M, 2E]: x = xz[:, :E], z = xz[:, E:]
    cpu::gemm(xn, d, l.in_proj.w, l.in_proj.bias.empty() ? nullptr : l.in_proj.bias.data(), xz, 2 * E, M);
    // xc = silu(conv1d(x) + conv_b)              [M, E]
    cpu::Conv1dArgs ca{xz, 2 * E, xc, E, l.conv_wT.data(), l.conv_b.empty() ? nullptr : l.conv_b.data(), E, K, seqs.data(), nseq};
    cpu::conv1d(ca);
    // dbc = xc x_proj^T                          [M, R+2N]: dt_low | B | C
    cpu::gemm(xc, E, l.x_proj.w, nullptr, dbc, ldbc, M);
    // dt = dt_low dt_proj^T + dt_b               [M, E] (softplus inside the scan)
    cpu::gemm(dbc, ldbc, l.dt_proj.w, l.dt_proj.bias.data(), dt, E, M);
    // y = scan(...) * silu(z)                    [M, E]; state updated
    cpu::ScanArgs sa{xc, E, dt, E, dbc + R, dbc + R + N, ldbc, xz + E, 2 * E,
                     l.AT.data(), l.D.data(), y, E, E, N, seqs.data(), nseq};
    cpu::scan(sa);
    // h += y out_proj^T (+b)                     [M, d]
    cpu::gemm(y, E, l.out_proj.w, l.out_proj.bias.empty() ? nullptr : l.out_proj.bias.data(), out, d, M);
    for (size_t i = 0; i < (size_t)M * d; i++) h[i] += out[i];

    if (!prune) continue;
    // ---- Simba: keep k tokens per sequence, compact the residual stream.
    bool any = false;
    for (int s = 0; s < nseq; s++) any |= req.simba.keep[(size_t)s * L + li] < seqs[s].T;
    if (!any) continue;
    const Criterion crit = req.simba.criterion;
    if (crit == Criterion::Simba || crit == Criterion::Local) {
      cpu::ScoreArgs sc{xc, E, dt, E, dbc + R, dbc + R + N, ldbc, l.AT.data(), E, N,
                        crit == Criterion::Local, req.simba.reduce_sum, seqs.data(), nseq, nullptr};
      cpu::score(sc, score_buf, M);
    } else if (crit == Criterion::Norm) {
      for (int r = 0; r < M; r++) {
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)out[(size_t)r * d + k] * out[(size_t)r * d + k];
        score_buf[r] = (float)std::sqrt(ss);
      }
    }
    // Compact in place: kept rows only move towards the front (sequences are laid out in order),
    // so copying front to back never overwrites a row still to be read.
    int nr = 0;
    for (int s = 0; s < nseq; s++) {
      cpu::SeqSlice& sq = seqs[s];
      const int T = sq.T, k = std::max(1, std::min(T, req.simba.keep[(size_t)s * L + li]));
      std::vector<int> kept;
      if (k >= T) {
        kept.resize(T);
        std::iota(kept.begin(), kept.end(), 0);
      } else {
        std::vector<float> sc(T);
        for (int t = 0; t < T; t++) {
          if (crit == Criterion::Uniform) sc[t] = 0.f;
          else if (crit == Criterion::Random)
            sc[t] = (float)(splitmix(req.simba.seed ^ splitmix(((uint64_t)li << 40) ^ ((uint64_t)s << 20) ^ (uint64_t)orig[sq.row0 + t])) >> 40);
          else sc[t] = score_buf[sq.row0 + t];
        }
        if (crit == Criterion::Uniform)  // evenly strided: positions round((i+1) T / k) - 1
          for (int i = 0; i < k; i++) sc[(int)(((int64_t)2 * (i + 1) * T + k) / (2 * k)) - 1] = 1.f;
        kept = select_keep(sc.data(), T, k, req.simba);
      }
      // Dropped tokens exit here: their residual stream is their final hidden state.
      size_t ki = 0;
      for (int t = 0; t < T; t++) {
        const int row = sq.row0 + t;
        if (ki < kept.size() && kept[ki] == t) { ki++; continue; }
        res.exit_layer[orig[row]] = li + 1;
        const int slot = want_slot[orig[row]];
        if (slot >= 0) std::memcpy(&fin[(size_t)slot * d], &h[(size_t)row * d], sizeof(float) * d);
      }
      const int row0 = nr;
      for (int t : kept) {
        const int from = sq.row0 + t;
        if (from != nr) std::memcpy(&h[(size_t)nr * d], &h[(size_t)from * d], sizeof(float) * d);
        orig[nr++] = orig[from];
      }
      sq.row0 = row0;
      sq.T = (int)kept.size();
    }
    M = nr;
  }

  // Survivors' final hidden states.
  for (int r = 0; r < M; r++) {
    const int slot = want_slot[orig[r]];
    if (slot >= 0) std::memcpy(&fin[(size_t)slot * d], &h[(size_t)r * d], sizeof(float) * d);
  }
  // logits = rmsnorm(fin) * norm_f  head^T      [want, V]
  const int nw = (int)req.want.size();
  if (nw > 0) {
    std::vector<float> fn((size_t)nw * d);
    cpu::rmsnorm(fin.data(), d, norm_f_.data(), fn.data(), d, nw, d, c.eps);
    res.logits.resize((size_t)nw * V);
    cpu::gemm(fn.data(), d, c.tie ? embed_.w : head_.w, nullptr, res.logits.data(), V, nw);
  }
  if (scratch_floats_ > kKeepScratchFloats) {  // do not hold a long prompt's activations
    scratch_.reset();
    scratch_floats_ = 0;
  }
  return res;
}

}  // namespace simba
