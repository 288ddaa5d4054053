// model.cc — weights and the forward pass (see model.h). Reads top to bottom like the math:
// embed -> per layer [rmsnorm, in_proj, conv1d+silu, x_proj, dt_proj, selective scan, out_proj,
// residual, Simba pruning] -> norm_f -> head on the wanted positions.
#include "engine/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "cpu/dispatch.h"
#include "cpu/threadpool.h"
#include "engine/errors.h"

namespace simba {

// ---------------------------------------------------------------- storage

namespace {
std::atomic<int64_t> g_models{0}, g_aligned_bytes{0};
}  // namespace

NativeMemoryStats native_memory_stats() { return {g_models.load(), g_aligned_bytes.load()}; }

void AlignedBuf::Free::operator()(void* p) const {
  std::free(p);
  g_aligned_bytes -= (int64_t)bytes;
}

AlignedBuf::AlignedBuf(size_t bytes, bool zero) : bytes_(bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!p) fail(SIMBA_E_OOM, "out of memory allocating " + std::to_string(bytes) + " bytes for weights");
  if (zero) std::memset(p, 0, rounded ? rounded : 64);
  p_ = std::unique_ptr<void, Free>(p, Free{rounded ? rounded : 64});
  g_aligned_bytes += (int64_t)(rounded ? rounded : 64);
}

static uint16_t to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

namespace {
// A packed [N, K] matrix: panels of kPanel features, K padded to the format's group (kernels.h).
struct PackedSize {
  int npanels, Kp;
  size_t store_bytes, meta_bytes;
};
PackedSize packed_size(int N, int K, cpu::WeightFormat format) {
  using cpu::kPanel;
  using cpu::WeightFormat;
  PackedSize z;
  z.npanels = (N + kPanel - 1) / kPanel;
  z.Kp = format == WeightFormat::F32 ? K : format == WeightFormat::BF16 ? (K + 1) / 2 * 2 : (K + 3) / 4 * 4;
  z.store_bytes = (size_t)z.npanels * z.Kp * kPanel * cpu::weight_bytes(format);
  z.meta_bytes = format == WeightFormat::Q8 ? (size_t)z.npanels * kPanel * 8 : 0;
  return z;
}
}  // namespace

MemoryPlan plan_memory(const ModelConfig& c, cpu::WeightFormat format) {
  MemoryPlan m{};
  for (const TensorSpec& t : tensor_table(c)) {
    if (!t.required) continue;
    m.staging_bytes = std::max(m.staging_bytes, t.count() * sizeof(float));
    const bool matrix =
        t.cols && (t.id == TensorId::kEmbedding || t.id == TensorId::kLmHead || t.id == TensorId::kInProj ||
                   t.id == TensorId::kXProj || t.id == TensorId::kDtProjW || t.id == TensorId::kOutProj);
    if (matrix) {
      const PackedSize z = packed_size(t.rows, t.cols, format);
      m.weight_bytes += z.store_bytes + z.meta_bytes;
    } else {
      m.other_bytes += t.count() * sizeof(float);
      if (t.id == TensorId::kALog) m.other_bytes += t.count() * sizeof(float);  // A in the state's layout too
    }
  }
  m.state_bytes = state_floats(c) * sizeof(float);
  const size_t ldbc = (size_t)c.R + 2 * (size_t)c.N;
  m.token_bytes = (3 * (size_t)c.d + 5 * (size_t)c.E + ldbc + 1) * sizeof(float);
  m.logits_row_bytes = (size_t)c.vocab * sizeof(float);
  return m;
}

// W [N, K] row-major -> panels (kernels.h): f32 [np][K][32], bf16 [np][K2/2][32][2], int8 [np][K4/4][32][4].
void pack_linear(Linear& lin, const float* W, int N, int K, cpu::WeightFormat format) {
  using cpu::kPanel;
  using cpu::WeightFormat;
  cpu::PackedWeight& p = lin.w;
  p = cpu::PackedWeight{};
  const PackedSize z = packed_size(N, K, format);
  p.N = N;
  p.K = K;
  p.npanels = z.npanels;
  p.format = format;
  p.bf16 = format == WeightFormat::BF16;
  p.Kp = z.Kp;
  const size_t nfeat = (size_t)p.npanels * kPanel;
  // Without W the panels stay zero; with W the packing below writes every byte (padding included).
  lin.store = AlignedBuf(z.store_bytes, W == nullptr);
  void* dst = lin.store.data();
  if (format == WeightFormat::F32) p.f32 = static_cast<const float*>(dst);
  else if (format == WeightFormat::BF16) p.h16 = static_cast<const uint16_t*>(dst);
  else {
    p.q8 = static_cast<const int8_t*>(dst);
    lin.qmeta = AlignedBuf(z.meta_bytes);
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
      cpu::active().pack_f32(W, N, K, reinterpret_cast<float*>(out), pi, pi + 1);
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
  cpu::ThreadPool::global().run_dynamic(p.npanels, [&](int, int b, int e) {
    for (int pi = b; pi < e; pi++) pack_panel(pi);
  });
}

// ---------------------------------------------------------------- construction

namespace {
constexpr size_t kKeepScratchFloats = (size_t)64 << 20;  // 256 MB of activations stay allocated between calls
}  // namespace

Model::Model(const ModelConfig& c, cpu::WeightFormat format) : cfg_(c), format_(format), loader_(c) {
  w_.layers.resize(c.L);
  a_state_.resize(c.L);
  g_models++;  // in the body: a constructor that throws counts nothing
}

// The CPU engine's part of loading (tensor_table.h does the checks and the layout transforms):
// matrices are packed for the GEMM, biases and vectors copied.
struct Model::Store {
  cpu::WeightFormat format;
  void matrix(Linear& lin, const float* W, const TensorSpec& t) const { pack_linear(lin, W, t.rows, t.cols, format); }
  void bias(Linear& lin, const float* b, const TensorSpec& t) const { lin.bias.assign(b, b + t.count()); }
  void vector(std::vector<float>& v, const float* x, const TensorSpec& t) const { v.assign(x, x + t.count()); }
};

Model::~Model() { g_models--; }

void Model::set_tensor(const std::string& name, int layer, const float* x, size_t count) {
  loader_.set(w_, name, layer, x, count, Store{format_});
  if (layer >= 0 && name == tensor_name(TensorId::kALog)) {  // A^T [N][E] -> A [E][N]
    a_state_[layer].resize((size_t)cfg_.E * cfg_.N);
    apply_layout(Layout::kTransposed, w_.layers[layer].AT.data(), cfg_.N, cfg_.E, a_state_[layer].data());
  }
}

void Model::randomize(uint64_t seed) { randomize_engine(*this, cfg_, seed); }

size_t Model::weight_bytes() const {
  return matrix_bytes(w_, [](const Linear& lin) { return lin.store.bytes() + lin.qmeta.bytes(); });
}

// ---------------------------------------------------------------- forward

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

}  // namespace

void check_cancel(const ForwardRequest& req) {
  if (req.cancel && std::atomic_ref<int32_t>(*req.cancel).load(std::memory_order_relaxed) != 0)
    fail(SIMBA_E_ABORTED, "forward: cancelled by the caller");
}

float* Model::scratch(size_t floats) {
  if (floats > scratch_floats_) {
    scratch_.reset();  // free first: peak memory stays at one buffer
    scratch_.reset(new float[floats]);
    scratch_floats_ = floats;
  }
  return scratch_.get();
}

ForwardResult Model::forward(const ForwardRequest& req) {
  check_cancel(req);  // before waiting for the lock: a cancelled call queued behind another one
  std::lock_guard<std::mutex> lock(mu_);
  loader_.require_ready();
  check_request(cfg_, request_view(req));
  check_cancel(req);
  struct TrimScratch {  // on every exit, a cancelled one included: do not hold a long prompt's activations
    Model* m;
    ~TrimScratch() {
      if (m->scratch_floats_ > kKeepScratchFloats) {
        m->scratch_.reset();
        m->scratch_floats_ = 0;
      }
    }
  } trim{this};
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
  for (int s = 0, r = 0; s < nseq; s++) {
    seqs[s].row0 = r;
    seqs[s].T = req.lengths[s];
    r += req.lengths[s];
  }

  // Wanted positions: where their final hidden state lands (row of `fin`), filled on exit.
  std::vector<int> want_slot(total, -1);
  for (size_t i = 0; i < req.want.size(); i++) want_slot[req.want[i]] = (int)i;
  std::vector<float> fin(req.want.size() * (size_t)d);

  // Activations (token-major), carved from the reused scratch. M shrinks as tokens are pruned.
  const size_t rows = (size_t)total;  // activation rows before any pruning
  float* p = scratch(rows * (3 * (size_t)d + 2 * (size_t)E + 3 * (size_t)E + ldbc) + (prune ? rows : 0));
  auto carve = [&p](size_t n) {
    float* q = p;
    p += n;
    return q;
  };
  float* h = carve(rows * d);
  float* xn = carve(rows * d);
  float* xz = carve(rows * 2 * E);
  float* xc = carve(rows * E);
  float* dbc = carve(rows * ldbc);
  float* dt = carve(rows * E);
  float* y = carve(rows * E);
  float* out = carve(rows * d);
  float* score_buf = prune ? carve(rows) : nullptr;

  // h[t] = embedding[token t] (read from the packed matrix, which doubles as the tied head)
  for (int t = 0; t < total; t++)
    for (int k = 0; k < d; k++) h[(size_t)t * d + k] = w_.embed.w.at(req.tokens[t], k);

  int M = total;
  for (int li = 0; li < L; li++) {
    if (li > 0) check_cancel(req);
    Layer& l = w_.layers[li];
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
    cpu::conv1d({.xin = xz,
                 .ldx = 2 * E,
                 .out = xc,
                 .ldo = E,
                 .wT = l.conv_wT.data(),
                 .bias = l.conv_b.empty() ? nullptr : l.conv_b.data(),
                 .E = E,
                 .K = K,
                 .seqs = seqs.data(),
                 .nseq = nseq});
    // dbc = xc x_proj^T                          [M, R+2N]: dt_low | B | C
    cpu::gemm(xc, E, l.x_proj.w, nullptr, dbc, ldbc, M);
    // dt = dt_low dt_proj^T + dt_b               [M, E] (softplus inside the scan)
    cpu::gemm(dbc, ldbc, l.dt_proj.w, l.dt_proj.bias.data(), dt, E, M);
    // y = scan(...) * silu(z)                    [M, E]; state updated
    cpu::scan({.x = xc,
               .ldx = E,
               .dt = dt,
               .lddt = E,
               .B = dbc + R,
               .C = dbc + R + N,
               .ldbc = ldbc,
               .z = xz + E,
               .ldz = 2 * E,
               .AT = l.AT.data(),
               .A = a_state_[li].data(),
               .D = l.D.data(),
               .y = y,
               .ldy = E,
               .E = E,
               .N = N,
               .seqs = seqs.data(),
               .nseq = nseq});
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
      cpu::score({.x = xc,
                  .ldx = E,
                  .dt = dt,
                  .lddt = E,
                  .B = dbc + R,
                  .C = dbc + R + N,
                  .ldbc = ldbc,
                  .AT = l.AT.data(),
                  .E = E,
                  .N = N,
                  .local = crit == Criterion::Local,
                  .reduce_sum = req.simba.reduce_sum,
                  .seqs = seqs.data(),
                  .nseq = nseq,
                  .partial = nullptr},
                 score_buf, M);
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
            sc[t] = (float)(splitmix(req.simba.seed ^ splitmix(((uint64_t)li << 40) ^ ((uint64_t)s << 20) ^
                                                               (uint64_t)orig[sq.row0 + t])) >>
                            40);
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
        if (ki < kept.size() && kept[ki] == t) {
          ki++;
          continue;
        }
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
    cpu::rmsnorm(fin.data(), d, w_.norm_f.data(), fn.data(), d, nw, d, c.eps);
    res.logits.resize((size_t)nw * V);
    cpu::gemm(fn.data(), d, c.tie ? w_.embed.w : w_.head.w, nullptr, res.logits.data(), V, nw);
  }
  return res;
}

}  // namespace simba
