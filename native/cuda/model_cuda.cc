// model_cuda.cc — weights on the device and the GPU forward pass (see model_cuda.h). The forward
// reads top to bottom like engine/model.cc, which it mirrors step by step:
// embed -> per layer [rmsnorm(+residual), mixer (mixer_mamba1.cc / mixer_mamba2.cc), Simba pruning]
// -> norm_f -> head on the wanted positions.
// The only host <-> device traffic of a forward: tokens, states, the per-layer sequence tables and
// wanted slots in; logits, exit layers and states out. Everything Simba decides (scores, top-k,
// compaction, early exits) stays on the device; the host knows each layer's token counts in advance
// (they follow from the keep counts and the protection), so no step waits for the device.
#include "model_cuda.h"

#include "../common/request_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

namespace simba {
namespace cuda {

// ---------------------------------------------------------------- errors and buffers

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so later calls can proceed
  fail(e == cudaErrorMemoryAllocation ? SIMBA_E_OOM : SIMBA_E_CUDA,
       std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")");
}

void check_launch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail(SIMBA_E_CUDA, std::string("CUDA kernel ") + kernel + " failed to launch: " + cudaGetErrorString(e));
}

static std::string mib(size_t bytes) {
  char b[64];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576.0);
  return b;
}

DevBuf& DevBuf::operator=(DevBuf&& o) noexcept {
  if (this != &o) {
    release();
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DevBuf::release() {
  if (p_) cudaFree(p_);
  p_ = nullptr;
  bytes_ = 0;
}

void DevBuf::alloc(size_t bytes, const std::string& what) {
  release();
  if (bytes == 0) return;
  cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess) {
    p_ = nullptr;
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    if (e == cudaErrorMemoryAllocation)
      fail(SIMBA_E_OOM, "CUDA out of memory: could not allocate " + mib(bytes) + " for " + what + " (" + mib(fr) +
                            " free of " + mib(tot) + ")");
    fail(SIMBA_E_CUDA, "CUDA error allocating " + mib(bytes) + " for " + what + ": " + cudaGetErrorString(e));
  }
  bytes_ = bytes;
}

void DevBuf::upload(const void* src, size_t bytes, const std::string& what) {
  alloc(bytes, what);
  if (bytes) check(cudaMemcpy(p_, src, bytes, cudaMemcpyHostToDevice), ("uploading " + what).c_str());
}

void probe_devices(int* n, std::string* desc) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  *n = count;
  if (count > 0) {
    cudaDeviceProp p;
    check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    char b[320];
    std::snprintf(b, sizeof b, "%s, %.0f GiB, sm_%d%d, %d SMs", p.name, p.totalGlobalMem / 1073741824.0, p.major,
                  p.minor, p.multiProcessorCount);
    *desc = b;
  }
}

// ---------------------------------------------------------------- construction

DeviceModel::DeviceModel(const ModelConfig& c, bool bf16, int device)
    : cfg_(c), bf16_(bf16), device_(device), loader_(c) {
  int n = 0;
  check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  if (device < 0 || device >= n)
    fail(SIMBA_E_CUDA, "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " found)");
  select_device();
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  w_.layers.resize(c.L);
  mixer_ = make_device_mixer(c, w_);
}

DeviceModel::~DeviceModel() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamDestroy(stream_);
}

void DeviceModel::select_device() const { check(cudaSetDevice(device_), "cudaSetDevice"); }

// The CUDA engine's part of loading (tensor_table.h does the checks and the layout transforms):
// uploads, matrices converted to bf16 bits when the model stores bf16.
struct DeviceModel::Store {
  bool bf16;
  void matrix(DevLinearStore& lin, const float* W, const TensorSpec& t) const {
    const size_t n = t.count();
    if (bf16) {
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; i++) h[i] = to_bf16_bits(W[i]);
      lin.w.upload(h.data(), n * 2, t.label());
    } else {
      lin.w.upload(W, n * 4, t.label());
    }
    lin.view.N = t.rows;
    lin.view.K = t.cols;
    lin.view.bf16 = bf16;
    lin.view.w = lin.w.get();
  }
  void bias(DevLinearStore& lin, const float* b, const TensorSpec& t) const {
    lin.bias.upload(b, t.count() * 4, t.label());
    lin.view.bias = lin.bias.f();
  }
  void vector(DevBuf& v, const float* x, const TensorSpec& t) const { v.upload(x, t.count() * 4, t.label()); }
};

void DeviceModel::set_tensor(const std::string& name, int layer, const float* x, size_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  select_device();
  loader_.set(w_, name, layer, x, count, Store{bf16_});
}

void DeviceModel::finalize() {
  std::lock_guard<std::mutex> lock(mu_);
  loader_.finalize();
}

void DeviceModel::randomize(uint64_t seed) { randomize_engine(*this, cfg_, seed); }

size_t DeviceModel::weight_bytes() const {
  return matrix_bytes(w_, [](const DevLinearStore& lin) { return lin.w.bytes(); });
}

// ---------------------------------------------------------------- forward

// The shared checks (tensor_table.h), then the CUDA engine's own limits (grid dimensions). With
// slots: every slot allocated and used by one sequence only (their pool addresses stand in for
// the host states in the shared checks).
void DeviceModel::check_request(const simba_forward_t& r, const int32_t* slots) const {
  loader_.require_ready();
  if (r.n_tokens < 0 || r.n_want < 0 || r.n_seq < 0)
    fail(SIMBA_E_ARG, "negative token, sequence or logits-position count");
  const size_t nseq = (size_t)r.n_seq;
  std::vector<float*> in_pool;
  if (slots) {
    std::vector<char> seen(pool_cap_, 0);
    for (size_t s = 0; s < nseq; s++) {
      check_slot(slots[s]);
      if (seen[slots[s]]++)
        fail(SIMBA_E_ARG, "state slot " + std::to_string(slots[s]) + " is given to two sequences of one call");
      in_pool.push_back(pool_.f() + (size_t)slots[s] * state_floats());
    }
  }
  simba::check_request(cfg_, {.tokens = r.tokens,
                              .n_tokens = (size_t)r.n_tokens,
                              .lengths = r.lengths,
                              .n_seq = nseq,
                              .states = slots ? in_pool.data() : r.states,
                              .n_states = nseq,
                              .want = r.want,
                              .n_want = (size_t)r.n_want,
                              .simba = r.simba_enabled != 0,
                              .n_keep = r.keep ? nseq * cfg_.L : 0,
                              .criterion = r.criterion});
  if (nseq > 65535)
    fail(SIMBA_E_ARG, "the CUDA engine takes at most 65535 sequences per call (got " + std::to_string(nseq) + ")");
  for (size_t s = 0; s < nseq; s++)
    if (r.lengths[s] > 65535 * 8)
      fail(SIMBA_E_ARG, "the CUDA engine takes at most 524280 tokens per sequence and call");
}

char* DeviceModel::workspace(size_t bytes) {
  if (work_.bytes() < bytes) {
    work_.release();
    work_.alloc(bytes + bytes / 8, "activations");  // some headroom against regrowth
  }
  return static_cast<char*>(work_.get());
}

namespace {
// Tokens select_keep keeps unconditionally: the last one and the protected first / last ones.
int must_keep(int T, int pf, int pl) {
  const int a = std::min(std::max(pf, 0), T);                       // [0, a)
  const int c = std::min(std::max(0, T - std::max(pl, 0)), T - 1);  // [c, T) (includes T-1)
  return a >= c ? T : a + (T - c);
}
}  // namespace

void DeviceModel::forward(const simba_forward_t& req, simba_result_t& res) {
  std::lock_guard<std::mutex> lock(mu_);
  run_forward(req, nullptr, res);
}

void DeviceModel::forward_slots(const simba_forward_t& req, const int32_t* slots, simba_result_t& res) {
  if (!slots) fail(SIMBA_E_ARG, "forward_slots: no slot table given");
  std::lock_guard<std::mutex> lock(mu_);
  run_forward(req, slots, res);
}

// Every layer's sequence table (rows, keep counts, rows after pruning), decided on the host: the
// token counts of each layer follow from the keep counts and the protection, so no step waits for
// the device to know them.
struct DeviceModel::LayerPlan {
  std::vector<SeqInfo> tables;      // [L][nseq]
  std::vector<int> rows_in, max_t;  // per layer: rows alive, and the longest sequence's
  std::vector<char> prunes;         // per layer: whether it drops a token
  int rows_out = 0;                 // rows alive after the last layer
  std::vector<int> want_slot;       // per token: its row of the final states, or -1 (no logits)
};

DeviceModel::LayerPlan DeviceModel::plan_layers(const simba_forward_t& req, simba_result_t& res) const {
  const int L = cfg_.L, nseq = req.n_seq;
  const bool prune = req.simba_enabled != 0;
  LayerPlan p;
  p.tables.resize((size_t)L * nseq);
  p.rows_in.resize(L);
  p.max_t.resize(L);
  p.prunes.assign(L, 0);
  p.rows_out = req.n_tokens;
  std::vector<int> T(req.lengths, req.lengths + nseq);
  for (int li = 0; li < L; li++) {
    int row = 0, mt = 0;
    bool any = false;
    for (int s = 0; s < nseq; s++) {
      SeqInfo& si = p.tables[(size_t)li * nseq + s];
      si.row0 = row;
      si.T = T[s];
      si.k = prune ? req.keep[(size_t)s * L + li] : T[s];
      si.nrow0 = 0;
      res.processed[(size_t)s * L + li] = T[s];
      row += T[s];
      mt = std::max(mt, T[s]);
      any |= prune && si.k < T[s];
    }
    p.rows_in[li] = row;
    p.max_t[li] = mt;
    p.prunes[li] = any;
    if (!any) continue;
    int nrow = 0;
    for (int s = 0; s < nseq; s++) {
      SeqInfo& si = p.tables[(size_t)li * nseq + s];
      const int k = std::max(1, std::min(si.T, si.k));
      const int kept = k >= si.T ? si.T : std::max(k, must_keep(si.T, req.protect_first, req.protect_last));
      si.nrow0 = nrow;
      nrow += kept;
      T[s] = kept;
    }
    if (li == L - 1) p.rows_out = nrow;
  }
  if (!p.prunes[L - 1]) p.rows_out = p.rows_in[L - 1];
  p.want_slot.assign(req.n_tokens, -1);
  for (int i = 0; i < req.n_want; i++) p.want_slot[req.want[i]] = i;
  return p;
}

// One forward's device buffers (token-major activations [rows, d] and per-row bookkeeping), carved
// from the workspace; the mixer's step buffers sit between xn and out.
struct DeviceModel::Buffers {
  float *h, *h2, *xn, *out, *score, *fin, *fn, *logits, *states;
  int *sidx, *tok, *orig, *orig2, *exit_l, *slot, *dest;
  SeqInfo* tab;
};

DeviceModel::Buffers DeviceModel::carve_buffers(const simba_forward_t& req, const int32_t* slots,
                                                const LayerPlan& plan) {
  const size_t T = req.n_tokens, nw = req.n_want, nseq = req.n_seq, d = cfg_.d, SF = state_floats();
  const bool prune = req.simba_enabled != 0;
  size_t off = 0;
  auto carve = [&](size_t bytes) {
    size_t o = off;
    off += align256(bytes);
    return o;
  };
  const size_t o_h = carve(T * d * 4), o_h2 = carve(T * d * 4), o_xn = carve(T * d * 4),
               o_mix = carve(mixer_->scratch_bytes(T, prune)), o_out = carve(T * d * 4),
               o_score = carve(prune ? T * 4 : 0), o_fin = carve(nw * d * 4), o_fn = carve(nw * d * 4),
               o_logits = carve(nw * cfg_.vocab * 4), o_states = carve(slots ? 0 : nseq * SF * 4),
               o_sidx = carve(slots ? nseq * 4 : 0), o_tok = carve(T * 4), o_orig = carve(T * 4),
               o_orig2 = carve(T * 4), o_exit = carve(T * 4), o_slot = carve(T * 4), o_dest = carve(T * 4),
               o_tab = carve(plan.tables.size() * sizeof(SeqInfo));
  char* w = workspace(off);
  auto F = [&](size_t o) { return reinterpret_cast<float*>(w + o); };
  auto I = [&](size_t o) { return reinterpret_cast<int*>(w + o); };
  mixer_->bind_scratch(w + o_mix, T, prune);
  return {.h = F(o_h),
          .h2 = F(o_h2),
          .xn = F(o_xn),
          .out = F(o_out),
          .score = F(o_score),
          .fin = F(o_fin),
          .fn = F(o_fn),
          .logits = F(o_logits),
          .states = slots ? pool_.f() : F(o_states),
          .sidx = slots ? I(o_sidx) : nullptr,  // device copy of the slot table
          .tok = I(o_tok),
          .orig = I(o_orig),
          .orig2 = I(o_orig2),
          .exit_l = I(o_exit),
          .slot = I(o_slot),
          .dest = I(o_dest),
          .tab = reinterpret_cast<SeqInfo*>(w + o_tab)};
}

// Tokens, wanted slots, sequence tables and states (or the slot table) to the device; every row
// starts as its own token, with no early exit.
void DeviceModel::copy_inputs(const simba_forward_t& req, const int32_t* slots, const LayerPlan& plan,
                              const Buffers& b) {
  const size_t T = req.n_tokens, SF = state_floats();
  cudaStream_t st = stream_;
  check(cudaMemcpyAsync(b.tok, req.tokens, T * 4, cudaMemcpyHostToDevice, st), "copying tokens");
  check(cudaMemcpyAsync(b.slot, plan.want_slot.data(), T * 4, cudaMemcpyHostToDevice, st), "copying wanted positions");
  check(cudaMemcpyAsync(b.tab, plan.tables.data(), plan.tables.size() * sizeof(SeqInfo), cudaMemcpyHostToDevice, st),
        "copying sequence tables");
  if (slots)
    check(cudaMemcpyAsync(b.sidx, slots, (size_t)req.n_seq * 4, cudaMemcpyHostToDevice, st), "copying the slot table");
  else
    for (int s = 0; s < req.n_seq; s++)
      check(cudaMemcpyAsync(b.states + (size_t)s * SF, req.states[s], SF * 4, cudaMemcpyHostToDevice, st),
            "copying states in");
  iota(b.orig, req.n_tokens, st);
  fill(b.exit_l, req.n_tokens, cfg_.L, st);
}

// Simba after layer io.layer, its residual already added (engine/prune.h has the steps): a score
// per row, each sequence's kept tokens, then the compaction, where dropped tokens exit.
void DeviceModel::prune_layer(const simba_forward_t& req, const DevMixerIO& io, Buffers& b) {
  const simba_criterion_t crit = criterion_of(req.criterion);
  // score[r] for the rows alive
  if (criterion_uses_scan(crit)) mixer_->score(io, crit == SIMBA_CRITERION_LOCAL, req.reduce_sum != 0, b.score);
  else if (crit == SIMBA_CRITERION_NORM) norm_score(io.out, cfg_.d, io.M, b.score, io.st);
  else if (crit == SIMBA_CRITERION_UNIFORM) uniform_score(io.seqs, io.nseq, io.maxT, io.M, b.score, io.st);
  else random_score(io.seqs, io.nseq, io.maxT, b.orig, req.seed, io.layer, b.score, io.st);
  // dest[r]: a kept row's new row, -1 for a dropped one
  select_keep(b.score, io.seqs, io.nseq, req.protect_first, req.protect_last, b.dest, io.st);
  // dropped rows exit (their residual stream is their final hidden state); kept rows move up
  compact_rows(b.h, b.orig, b.dest, io.M, cfg_.d, b.h2, b.orig2, b.exit_l, b.slot, b.fin, io.layer, io.st);
  std::swap(b.h, b.h2);
  std::swap(b.orig, b.orig2);
}

// The survivors' final hidden states join those of the tokens that exited early, then
// logits = rmsnorm(fin) * norm_f  head^T      [want, V]
void DeviceModel::final_logits(int nw, int rows_out, const Buffers& b) {
  const ModelConfig& c = cfg_;
  gather_final(b.h, b.orig, rows_out, c.d, b.slot, b.fin, stream_);
  if (nw == 0) return;
  add_rmsnorm(b.fin, nullptr, w_.norm_f.f(), b.fn, nw, c.d, c.eps, stream_);
  gemm(b.fn, c.d, c.tie ? w_.embed.view : w_.head.view, b.logits, c.vocab, nw, stream_);
}

// Once everything ran (and only then): logits, exit layers and the host states back.
void DeviceModel::copy_outputs(const simba_forward_t& req, const int32_t* slots, const Buffers& b,
                               simba_result_t& res) {
  const size_t SF = state_floats();
  cudaStream_t st = stream_;
  check(cudaStreamSynchronize(st), "forward");
  if (req.n_want > 0)
    check(cudaMemcpyAsync(res.logits, b.logits, (size_t)req.n_want * cfg_.vocab * 4, cudaMemcpyDeviceToHost, st),
          "copying logits out");
  check(cudaMemcpyAsync(res.exit_layer, b.exit_l, (size_t)req.n_tokens * 4, cudaMemcpyDeviceToHost, st),
        "copying exit layers out");
  if (!slots)
    for (int s = 0; s < req.n_seq; s++)
      check(cudaMemcpyAsync(req.states[s], b.states + (size_t)s * SF, SF * 4, cudaMemcpyDeviceToHost, st),
            "copying states out");
  check(cudaStreamSynchronize(st), "forward (copy out)");
}

// slots null: states from / to the host pointers req.states; else the pool slots slots[s].
// embed -> per layer [rmsnorm (+ the previous residual), mixer, Simba pruning] -> norm_f -> head.
void DeviceModel::run_forward(const simba_forward_t& req, const int32_t* slots, simba_result_t& res) {
  check_request(req, slots);
  select_device();
  const ModelConfig& c = cfg_;
  const LayerPlan plan = plan_layers(req, res);
  Buffers b = carve_buffers(req, slots, plan);
  copy_inputs(req, slots, plan, b);
  // the criterion is checked (check_request) only where Simba is on
  const bool scan_scores = req.simba_enabled && criterion_uses_scan(criterion_of(req.criterion));

  // h[t] = embedding[token t]                  [M, d]
  embed_gather(b.tok, req.n_tokens, w_.embed.view, b.h, stream_);
  bool pending = false;  // out holds a mixer output not yet added to h
  for (int li = 0; li < c.L; li++) {
    const DevMixerIO io{.layer = li,
                        .M = plan.rows_in[li],
                        .xn = b.xn,
                        .out = b.out,
                        .seqs = b.tab + (size_t)li * req.n_seq,
                        .nseq = req.n_seq,
                        .maxT = plan.max_t[li],
                        .states = b.states,
                        .slots = b.sidx,
                        .keep_scores = plan.prunes[li] && scan_scores,
                        .st = stream_};
    // h += out (previous layer); xn = rmsnorm(h) * norm             [M, d]
    add_rmsnorm(b.h, pending ? b.out : nullptr, w_.layers[li].norm.f(), b.xn, io.M, c.d, c.eps, stream_);
    // out = mixer(xn)                            [M, d]; this layer's states advanced
    mixer_->run(io);
    pending = true;
    if (!plan.prunes[li]) continue;
    // Simba: h += out now, then each sequence keeps its k best tokens; the others exit here
    add_rmsnorm(b.h, b.out, nullptr, nullptr, io.M, c.d, c.eps, stream_);
    pending = false;
    prune_layer(req, io, b);
  }
  if (pending) add_rmsnorm(b.h, b.out, nullptr, nullptr, plan.rows_out, c.d, c.eps, stream_);
  final_logits(req.n_want, plan.rows_out, b);
  copy_outputs(req, slots, b, res);
}

}  // namespace cuda
}  // namespace simba

// ---------------------------------------------------------------- device-resident states

namespace simba {
namespace cuda {

void DeviceModel::check_slot(int slot) const {
  if (slot < 0 || slot >= pool_cap_ || !slot_live_[slot])
    fail(SIMBA_E_ARG, "state slot " + std::to_string(slot) + " is not allocated");
}

int DeviceModel::state_alloc() {
  std::lock_guard<std::mutex> lock(mu_);
  select_device();
  const size_t SB = state_floats() * 4;
  if (free_slots_.empty()) {
    // Grow by doubling: a new pool, the old slots copied over on the device.
    const int cap = std::max(8, pool_cap_ * 2);
    DevBuf grown;
    grown.alloc((size_t)cap * SB, "state slots (" + std::to_string(cap) + " sequences)");
    if (pool_cap_)
      check(cudaMemcpyAsync(grown.get(), pool_.get(), (size_t)pool_cap_ * SB, cudaMemcpyDeviceToDevice, stream_),
            "growing the state pool");
    check(cudaStreamSynchronize(stream_), "growing the state pool");
    pool_ = std::move(grown);
    for (int i = cap - 1; i >= pool_cap_; i--) free_slots_.push_back(i);
    slot_live_.resize(cap, 0);
    pool_cap_ = cap;
  }
  const int slot = free_slots_.back();
  check(cudaMemsetAsync(pool_.f() + (size_t)slot * state_floats(), 0, SB, stream_), "zeroing a state slot");
  check(cudaStreamSynchronize(stream_), "zeroing a state slot");
  free_slots_.pop_back();
  slot_live_[slot] = 1;
  return slot;
}

void DeviceModel::state_free(int slot) {
  std::lock_guard<std::mutex> lock(mu_);
  check_slot(slot);
  slot_live_[slot] = 0;
  free_slots_.push_back(slot);
}

void DeviceModel::state_read(int slot, float* dst) const {
  std::lock_guard<std::mutex> lock(mu_);
  check_slot(slot);
  if (!dst) fail(SIMBA_E_ARG, "state_read: no destination given");
  select_device();
  const size_t SF = state_floats();
  check(cudaMemcpyAsync(dst, pool_.f() + (size_t)slot * SF, SF * 4, cudaMemcpyDeviceToHost, stream_),
        "reading a state slot");
  check(cudaStreamSynchronize(stream_), "reading a state slot");
}

void DeviceModel::state_write(int slot, const float* src) {
  std::lock_guard<std::mutex> lock(mu_);
  check_slot(slot);
  select_device();
  const size_t SF = state_floats();
  float* d = pool_.f() + (size_t)slot * SF;
  if (src) check(cudaMemcpyAsync(d, src, SF * 4, cudaMemcpyHostToDevice, stream_), "writing a state slot");
  else check(cudaMemsetAsync(d, 0, SF * 4, stream_), "zeroing a state slot");
  check(cudaStreamSynchronize(stream_), "writing a state slot");
}

}  // namespace cuda
}  // namespace simba
