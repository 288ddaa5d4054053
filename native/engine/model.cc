// model.cc — weights and the forward pass (see model.h). The forward reads top to bottom like the math:
// embed -> per layer [rmsnorm, mixer (mixer_mamba1.cc), residual, Simba pruning (prune.cc)]
// -> norm_f -> head on the wanted positions.
#include "engine/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include <sys/mman.h>

#include "common/errors.h"
#include "cpu/dispatch.h"
#include "cpu/threadpool.h"
#include "engine/prune.h"

namespace simba {

// ---------------------------------------------------------------- storage

namespace {
std::atomic<int64_t> g_models{0}, g_aligned_bytes{0};
}  // namespace

NativeMemoryStats native_memory_stats() { return {g_models.load(), g_aligned_bytes.load()}; }

// Buffers from this size on are mapped on their own, 2 MB aligned, and their whole 2 MB pages asked
// for as transparent huge pages (MADV_HUGEPAGE; THP is often "madvise" only): decode streams every
// matrix once per token, and with 4 KB pages it takes a TLB miss every 4 KB and the hardware
// prefetchers stop at each page boundary (bench/RESULTS.md, "int4 decode at batch 1"). Only whole
// 2 MB pages inside the buffer are advised, so RSS never grows past the bytes the buffer uses.
constexpr size_t kHugeMinBytes = (size_t)4 << 20;
constexpr size_t kHugePage = (size_t)2 << 20;

static size_t huge_map_len(size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

static void* huge_alloc(size_t bytes) {
  const size_t len = huge_map_len(bytes);
  void* m = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  char* base = static_cast<char*>(m);
  char* p = reinterpret_cast<char*>(((uintptr_t)base + kHugePage - 1) & ~(uintptr_t)(kHugePage - 1));
  if (p > base) ::munmap(base, p - base);
  if (base + len + kHugePage > p + len) ::munmap(p + len, base + len + kHugePage - (p + len));
#ifdef MADV_HUGEPAGE
  ::madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);  // advice only: no error if THP is off
#endif
  return p;
}

void AlignedBuf::Free::operator()(void* p) const {
  if (bytes >= kHugeMinBytes) ::munmap(p, huge_map_len(bytes));
  else std::free(p);
  g_aligned_bytes -= (int64_t)bytes;
}

AlignedBuf::AlignedBuf(size_t bytes, bool zero) : bytes_(bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  const bool huge = rounded >= kHugeMinBytes;  // mapped: zero already
  void* p = huge ? huge_alloc(rounded) : std::aligned_alloc(64, rounded ? rounded : 64);
  if (!p) fail(SIMBA_E_OOM, "out of memory allocating " + std::to_string(bytes) + " bytes for weights");
  if (zero && !huge) std::memset(p, 0, rounded ? rounded : 64);
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

// float -> IEEE half float bits, round to nearest even (finite |f| below 65504; subnormals kept).
static uint16_t to_half(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x477fe000u) return sign | 0x7bffu;  // 65504, the largest half
  if (u < 0x38800000u) {                        // below 2^-14: a multiple of 2^-24
    float a;
    std::memcpy(&a, &u, 4);
    return sign | (uint16_t)std::nearbyint(a * 16777216.f);
  }
  u += 0xfffu + ((u >> 13) & 1u);
  return sign | (uint16_t)((u >> 13) - ((127u - 15u) << 10));
}

// One Q4 block: x[0 .. n) (zero past n, n <= kQ4Block) -> nibbles u[kQ4Block] and the half-float
// scale d, x ~= (u - 8) d. Start from llama.cpp's Q4_0 scale (the value of largest magnitude, m, at
// -8 exactly: d = m / -8), try a few scales between m / -8 and m / 7, and keep the one with the least
// squared error (computed with d rounded to half, as stored).
static uint16_t quantize_q4_block(const float* x, int n, uint8_t* u) {
  float m = 0.f;
  for (int k = 0; k < n; k++)
    if (std::fabs(x[k]) > std::fabs(m)) m = x[k];
  static constexpr float kDiv[] = {-8.f, -7.75f, -7.5f, -7.25f, -7.f, 7.f, 7.25f, 7.5f};
  uint16_t best = 0;
  double best_err = -1;
  for (float div : kDiv) {
    const uint16_t h = to_half(m / div);
    const float d = cpu::half_to_float(h), inv = d != 0.f ? 1.f / d : 0.f;
    double err = 0;
    for (int k = 0; k < n; k++) {
      const float q = std::max(-8.f, std::min(7.f, std::nearbyint(x[k] * inv)));
      err += (double)(x[k] - q * d) * (x[k] - q * d);
    }
    if (best_err < 0 || err < best_err) best_err = err, best = h;
  }
  const float d = cpu::half_to_float(best), inv = d != 0.f ? 1.f / d : 0.f;
  for (int k = 0; k < cpu::kQ4Block; k++)
    u[k] = k < n ? (uint8_t)(8 + std::max(-8.f, std::min(7.f, std::nearbyint(x[k] * inv)))) : 8;
  return best;
}

// The format a matrix is stored in for the model's weight format: with int4 weights the embedding
// and head (one matrix when tied) stay int8, as llama.cpp's Q4_0 / Q4_K_M files keep token_embd /
// output in 6 bits (Q6_K): on brown-mamba-s an int4 head costs +2.6% held-out perplexity, an int8
// one +1.4% (bench/RESULTS.md).
cpu::WeightFormat matrix_format(cpu::WeightFormat model, TensorId id) {
  if (model == cpu::WeightFormat::Q4 && (id == TensorId::kEmbedding || id == TensorId::kLmHead))
    return cpu::WeightFormat::Q8;
  return model;
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
  const int group = format == WeightFormat::F32    ? 1
                    : format == WeightFormat::BF16 ? 2
                    : format == WeightFormat::Q8   ? 4
                                                   : cpu::kQ4Block;
  z.Kp = (K + group - 1) / group * group;
  z.store_bytes = (size_t)z.npanels * z.Kp * kPanel * cpu::weight_bits(format) / 8;
  // Q8: a scale and a column sum per feature; Q4: a half-float scale per feature and block
  z.meta_bytes = format == WeightFormat::Q8   ? (size_t)z.npanels * kPanel * 8
                 : format == WeightFormat::Q4 ? (size_t)z.npanels * (z.Kp / cpu::kQ4Block) * kPanel * 2
                                              : 0;
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
      const PackedSize z = packed_size(t.rows, t.cols, matrix_format(format, t.id));
      m.weight_bytes += z.store_bytes + z.meta_bytes;
    } else {
      m.other_bytes += t.count() * sizeof(float);
      if (t.id == TensorId::kALog && c.family == kMamba1)  // Mamba-1 keeps A in the state's layout too
        m.other_bytes += t.count() * sizeof(float);
    }
  }
  m.state_bytes = state_floats(c) * sizeof(float);
  // h, xn, out, the mixer's buffers and a Simba score (Model::carve_activations)
  m.token_bytes = (3 * (size_t)c.d + mixer_floats_per_row(c) + 1) * sizeof(float);
  m.logits_row_bytes = (size_t)c.vocab * sizeof(float);
  return m;
}

// W [N, K] row-major -> panels (kernels.h): f32 [np][K][32], bf16 [np][K2/2][32][2], int8 [np][K4/4][32][4],
// int4 [np][K32/32][8][64] nibbles + half-float block scales.
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
  else if (format == WeightFormat::Q4) {
    p.q4 = static_cast<const uint8_t*>(dst);
    lin.qmeta = AlignedBuf(z.meta_bytes);
    p.d16 = static_cast<const uint16_t*>(lin.qmeta.data());
  } else {
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
    } else if (format == WeightFormat::Q4) {
      // per block: 32 features' nibbles, feature c's at byte (k / 4) 64 + (c % 16) 4 + k % 4, low
      // nibble for c < 16, high for the rest; padding features and k are u = 8 (zero) with scale 0
      uint8_t* d = reinterpret_cast<uint8_t*>(out) + pbase / 2;
      uint16_t* ds = const_cast<uint16_t*>(p.d16) + pbase / cpu::kQ4Block;
      uint8_t u[kPanel][cpu::kQ4Block];
      for (int b = 0; b < Kp / cpu::kQ4Block; b++) {
        const int k0 = b * cpu::kQ4Block, n = std::min(cpu::kQ4Block, K - k0);
        for (int c = 0; c < kPanel; c++) {
          if (c < nc) ds[(size_t)b * kPanel + c] = quantize_q4_block(W + (size_t)(n0 + c) * K + k0, n, u[c]);
          else {
            ds[(size_t)b * kPanel + c] = 0;
            std::fill(u[c], u[c] + cpu::kQ4Block, (uint8_t)8);
          }
        }
        uint8_t* blk = d + (size_t)b * (cpu::kQ4Block * kPanel / 2);
        for (int k = 0; k < cpu::kQ4Block; k++)
          for (int c = 0; c < 16; c++) blk[(k / 4) * 64 + c * 4 + k % 4] = (uint8_t)(u[c][k] | u[c + 16][k] << 4);
      }
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
  mixer_ = make_mixer(c, w_);
  g_models++;  // in the body: a constructor that throws counts nothing
}

// The CPU engine's part of loading (tensor_table.h does the checks and the layout transforms):
// matrices are packed for the GEMM, biases and vectors copied.
struct Model::Store {
  cpu::WeightFormat format;
  void matrix(Linear& lin, const float* W, const TensorSpec& t) const {
    pack_linear(lin, W, t.rows, t.cols, matrix_format(format, t.id));
  }
  void bias(Linear& lin, const float* b, const TensorSpec& t) const { lin.bias.assign(b, b + t.count()); }
  void vector(std::vector<float>& v, const float* x, const TensorSpec& t) const { v.assign(x, x + t.count()); }
};

Model::~Model() { g_models--; }

void Model::set_tensor(const std::string& name, int layer, const float* x, size_t count) {
  loader_.set(w_, name, layer, x, count, Store{format_});
  mixer_->tensor_stored(name, layer);
}

void Model::randomize(uint64_t seed) { randomize_engine(*this, cfg_, seed); }

size_t Model::weight_bytes() const {
  return matrix_bytes(w_, [](const Linear& lin) { return lin.store.bytes() + lin.qmeta.bytes(); });
}

// ---------------------------------------------------------------- forward

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

// On every exit of a forward, a cancelled one included: do not hold a long prompt's activations.
struct Model::TrimScratch {
  Model* m;
  ~TrimScratch() {
    if (m->scratch_floats_ > kKeepScratchFloats) {
      m->scratch_.reset();
      m->scratch_floats_ = 0;
    }
  }
};

// One forward's activations (token-major, rows as in LiveRows), carved from the reused scratch:
// the residual stream h, the normalized input xn and the mixer output out, [rows, d] each, with the
// mixer's step buffers between xn and out; score [rows] when Simba prunes.
struct Model::Activations {
  float *h, *xn, *out, *score;
};

Model::Activations Model::carve_activations(size_t rows, bool prune) {
  const size_t d = cfg_.d, mixer_floats = mixer_->floats_per_row();
  float* p = scratch(rows * (3 * d + mixer_floats) + (prune ? rows : 0));
  Activations a;
  a.h = p;
  a.xn = a.h + rows * d;
  mixer_->bind_scratch(a.xn + rows * d, rows);
  a.out = a.xn + rows * d + rows * mixer_floats;
  a.score = prune ? a.out + rows * d : nullptr;
  return a;
}

namespace {
// Every token of the request alive, sequences one after the other; fin sized for the wanted positions.
LiveRows start_rows(const ForwardRequest& req, int d) {
  LiveRows rows;
  const int nseq = (int)req.lengths.size(), total = (int)req.tokens.size();
  rows.seqs.resize(nseq);
  for (int s = 0, r = 0; s < nseq; s++) {
    rows.seqs[s].row0 = r;
    rows.seqs[s].T = req.lengths[s];
    r += req.lengths[s];
  }
  rows.orig.resize(total);
  std::iota(rows.orig.begin(), rows.orig.end(), 0);
  rows.M = total;
  rows.want_slot.assign(total, -1);
  for (size_t i = 0; i < req.want.size(); i++) rows.want_slot[req.want[i]] = (int)i;
  rows.fin.resize(req.want.size() * (size_t)d);
  return rows;
}
}  // namespace

// h[t] = embedding[token t] (read from the packed matrix, which doubles as the tied head).
void Model::embed(const std::vector<int32_t>& tokens, float* h) const {
  const int d = cfg_.d;
  for (size_t t = 0; t < tokens.size(); t++)
    for (int k = 0; k < d; k++) h[t * d + k] = w_.embed.w.at(tokens[t], k);
}

// The survivors' final hidden states join those of the tokens that exited early, then
// logits = rmsnorm(fin) * norm_f  head^T      [want, V]
void Model::final_logits(const float* h, LiveRows& rows, ForwardResult& res) const {
  const int d = cfg_.d;
  for (int r = 0; r < rows.M; r++) {
    const int slot = rows.want_slot[rows.orig[r]];
    if (slot >= 0) std::memcpy(&rows.fin[(size_t)slot * d], &h[(size_t)r * d], sizeof(float) * d);
  }
  const int nw = (int)(rows.fin.size() / d);
  if (nw == 0) return;
  std::vector<float> fn((size_t)nw * d);
  cpu::rmsnorm(rows.fin.data(), d, w_.norm_f.data(), fn.data(), d, nw, d, cfg_.eps);
  res.logits.resize((size_t)nw * cfg_.vocab);
  cpu::gemm(fn.data(), d, cfg_.tie ? w_.embed.w : w_.head.w, nullptr, res.logits.data(), cfg_.vocab, nw);
}

// embed -> per layer [rmsnorm, mixer, residual, Simba pruning] -> norm_f -> head on the wanted positions.
ForwardResult Model::forward(const ForwardRequest& req) {
  check_cancel(req);  // before waiting for the lock: a cancelled call queued behind another one
  std::lock_guard<std::mutex> lock(mu_);
  loader_.require_ready();
  check_request(cfg_, request_view(req));
  check_cancel(req);
  TrimScratch trim{this};
  const int d = cfg_.d, L = cfg_.L, nseq = (int)req.lengths.size();

  ForwardResult res;
  res.processed.assign((size_t)nseq * L, 0);
  res.exit_layer.assign(req.tokens.size(), L);
  LiveRows rows = start_rows(req, d);
  const Activations a = carve_activations(req.tokens.size(), req.simba.enabled);
  float *h = a.h, *out = a.out;

  embed(req.tokens, h);
  for (int li = 0; li < L; li++) {
    if (li > 0) check_cancel(req);
    const int M = rows.M;
    mixer_->bind_states(li, req.states.data(), rows.seqs.data(), nseq);
    for (int s = 0; s < nseq; s++) res.processed[(size_t)s * L + li] = rows.seqs[s].T;
    const MixerIO io{.layer = li, .M = M, .xn = a.xn, .out = out, .seqs = rows.seqs.data(), .nseq = nseq};
    // xn = rmsnorm(h) * norm                     [M, d]
    cpu::rmsnorm(h, d, w_.layers[li].norm.data(), a.xn, d, M, d, cfg_.eps);
    // out = mixer(xn)                            [M, d]; this layer's states advanced
    mixer_->run(io);
    // h += out                                   [M, d]
    for (size_t i = 0; i < (size_t)M * d; i++) h[i] += out[i];
    // Simba: each sequence keeps its k best tokens; the others exit here
    if (req.simba.enabled) prune_layer(req.simba, L, *mixer_, io, h, d, a.score, rows, res);
  }
  final_logits(h, rows, res);
  return res;
}

}  // namespace simba
