// model_cuda.cc — weights on the device and the GPU forward pass (see model_cuda.h). The forward
// reads top to bottom like native/model.cc, which it mirrors step by step:
// embed -> per layer [rmsnorm(+residual), in_proj, conv1d+silu, x_proj, dt_proj, selective scan,
// out_proj, Simba pruning] -> norm_f -> head on the wanted positions.
// The only host <-> device traffic of a forward: tokens, states, the per-layer sequence tables and
// wanted slots in; logits, exit layers and states out. Everything Simba decides (scores, top-k,
// compaction, early exits) stays on the device; the host knows each layer's token counts in advance
// (they follow from the keep counts and the protection), so no step waits for the device.
#include "model_cuda.h"

#include "../engine/request_check.h"

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

namespace {
size_t align256(size_t b) { return (b + 255) / 256 * 256; }
}  // namespace

DeviceModel::DeviceModel(const ModelConfig& c, bool bf16, int device)
    : cfg_(c), bf16_(bf16), device_(device), loader_(c) {
  int n = 0;
  check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  if (device < 0 || device >= n)
    fail(SIMBA_E_CUDA, "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " found)");
  select_device();
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  w_.layers.resize(c.L);
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

// slots null: states from / to the host pointers req.states; else the pool slots slots[s].
void DeviceModel::run_forward(const simba_forward_t& req, const int32_t* slots, simba_result_t& res) {
  check_request(req, slots);
  select_device();
  const ModelConfig& c = cfg_;
  const int d = c.d, E = c.E, N = c.N, R = c.R, K = c.K, L = c.L, V = c.vocab;
  const int nseq = req.n_seq, total = req.n_tokens, nw = req.n_want;
  const int ldbc = R + 2 * N;
  const bool prune = req.simba_enabled != 0;
  const int crit = req.criterion;  // 0 simba 1 local 2 norm 3 uniform 4 random
  const size_t SF = state_floats(), LSF = layer_state_floats();

  // ---- Host bookkeeping: every layer's sequence table (rows, keep counts, rows after pruning).
  std::vector<SeqInfo> tables((size_t)L * nseq);
  std::vector<int> rows_in(L), max_t(L);
  std::vector<char> prunes(L, 0);
  int rows_out = total;
  {
    std::vector<int> T(req.lengths, req.lengths + nseq);
    for (int li = 0; li < L; li++) {
      int row = 0, mt = 0;
      bool any = false;
      for (int s = 0; s < nseq; s++) {
        SeqInfo& si = tables[(size_t)li * nseq + s];
        si.row0 = row;
        si.T = T[s];
        si.k = prune ? req.keep[(size_t)s * L + li] : T[s];
        si.nrow0 = 0;
        res.processed[(size_t)s * L + li] = T[s];
        row += T[s];
        mt = std::max(mt, T[s]);
        any |= prune && si.k < T[s];
      }
      rows_in[li] = row;
      max_t[li] = mt;
      prunes[li] = any;
      if (!any) continue;
      int nrow = 0;
      for (int s = 0; s < nseq; s++) {
        SeqInfo& si = tables[(size_t)li * nseq + s];
        const int k = std::max(1, std::min(si.T, si.k));
        const int kept = k >= si.T ? si.T : std::max(k, must_keep(si.T, req.protect_first, req.protect_last));
        si.nrow0 = nrow;
        nrow += kept;
        T[s] = kept;
      }
      if (li == L - 1) rows_out = nrow;
    }
    if (!prunes[L - 1]) rows_out = rows_in[L - 1];
  }
  std::vector<int> want_slot(total, -1);
  for (int i = 0; i < nw; i++) want_slot[req.want[i]] = i;

  // ---- Workspace (one allocation, carved).
  const int groups = ceil_div(E, 32);
  size_t off = 0;
  auto carve = [&](size_t bytes) {
    size_t o = off;
    off += align256(bytes);
    return o;
  };
  const size_t T_ = total;
  const size_t o_h = carve(T_ * d * 4), o_h2 = carve(T_ * d * 4), o_xn = carve(T_ * d * 4),
               o_xz = carve(T_ * 2 * E * 4), o_xc = carve(T_ * E * 4), o_dbc = carve(T_ * ldbc * 4),
               o_dt = carve(T_ * E * 4), o_y = carve(T_ * E * 4), o_out = carve(T_ * d * 4),
               o_score = carve(prune ? T_ * 4 : 0), o_part = carve(prune ? (size_t)groups * T_ * 4 : 0),
               o_fin = carve((size_t)nw * d * 4), o_fn = carve((size_t)nw * d * 4),
               o_logits = carve((size_t)nw * V * 4), o_states = carve(slots ? 0 : (size_t)nseq * SF * 4),
               o_sidx = carve(slots ? (size_t)nseq * 4 : 0), o_tok = carve(T_ * 4), o_orig = carve(T_ * 4),
               o_orig2 = carve(T_ * 4), o_exit = carve(T_ * 4), o_slot = carve(T_ * 4), o_dest = carve(T_ * 4),
               o_tab = carve(tables.size() * sizeof(SeqInfo));
  char* w = workspace(off);
  auto F = [&](size_t o) { return reinterpret_cast<float*>(w + o); };
  auto I = [&](size_t o) { return reinterpret_cast<int*>(w + o); };
  float *h = F(o_h), *h2 = F(o_h2), *xn = F(o_xn), *xz = F(o_xz), *xc = F(o_xc), *dbc = F(o_dbc), *dt = F(o_dt),
        *y = F(o_y), *out = F(o_out), *score = F(o_score), *partial = F(o_part), *fin = F(o_fin), *fn = F(o_fn),
        *logits = F(o_logits), *states = slots ? pool_.f() : F(o_states);
  int* sidx = slots ? I(o_sidx) : nullptr;  // device copy of the slot table
  int *tok = I(o_tok), *orig = I(o_orig), *orig2 = I(o_orig2), *exit_l = I(o_exit), *slot = I(o_slot),
      *dest = I(o_dest);
  SeqInfo* tab = reinterpret_cast<SeqInfo*>(w + o_tab);
  cudaStream_t st = stream_;

  // ---- Inputs to the device.
  check(cudaMemcpyAsync(tok, req.tokens, T_ * 4, cudaMemcpyHostToDevice, st), "copying tokens");
  check(cudaMemcpyAsync(slot, want_slot.data(), T_ * 4, cudaMemcpyHostToDevice, st), "copying wanted positions");
  check(cudaMemcpyAsync(tab, tables.data(), tables.size() * sizeof(SeqInfo), cudaMemcpyHostToDevice, st),
        "copying sequence tables");
  if (slots)
    check(cudaMemcpyAsync(sidx, slots, (size_t)nseq * 4, cudaMemcpyHostToDevice, st), "copying the slot table");
  else
    for (int s = 0; s < nseq; s++)
      check(cudaMemcpyAsync(states + (size_t)s * SF, req.states[s], SF * 4, cudaMemcpyHostToDevice, st),
            "copying states in");
  iota(orig, total, st);
  fill(exit_l, total, L, st);

  // h[t] = embedding[token t]                  [M, d]
  embed_gather(tok, total, w_.embed.view, h, st);

  bool pending = false;  // out holds a mixer output not yet added to h
  int M = total;
  for (int li = 0; li < L; li++) {
    DevLayer& l = w_.layers[li];
    const SeqInfo* seqs = tab + (size_t)li * nseq;
    const int maxT = max_t[li];
    const StateRef conv{states + (size_t)li * LSF, SF, sidx};
    const StateRef ssm{states + (size_t)li * LSF + (size_t)E * (K - 1), SF, sidx};
    M = rows_in[li];
    // h += out (previous layer); xn = rmsnorm(h) * norm             [M, d]
    add_rmsnorm(h, pending ? out : nullptr, l.norm.f(), xn, M, d, c.eps, st);
    pending = false;
    // xz = xn in_proj^T (+b)                     [M, 2E]: x = xz[:, :E], z = xz[:, E:]
    gemm(xn, d, l.in_proj.view, xz, 2 * E, M, st);
    // xc = silu(conv1d(x) + conv_b)              [M, E]; conv state advanced
    conv1d(xz, 2 * E, xc, E, l.conv_wT.f(), l.conv_b.get() ? l.conv_b.f() : nullptr, E, K, seqs, nseq, maxT, conv, st);
    // dbc = xc x_proj^T                          [M, R+2N]: dt_low | B | C
    gemm(xc, E, l.x_proj.view, dbc, ldbc, M, st);
    // dt = dt_low dt_proj^T + dt_b               [M, E] (softplus inside the scan)
    gemm(dbc, ldbc, l.dt_proj.view, dt, E, M, st);
    // y = scan(...) * silu(z)                    [M, E]; state updated
    const bool scored = prunes[li] && (crit == 0 || crit == 1);
    selective_scan({.x = xc,
                    .ldx = E,
                    .dt = dt,
                    .lddt = E,
                    .B = dbc + R,
                    .C = dbc + R + N,
                    .ldbc = ldbc,
                    .z = xz + E,
                    .ldz = 2 * E,
                    .AT = l.AT.f(),
                    .D = l.D.f(),
                    .y = y,
                    .ldy = E,
                    .E = E,
                    .N = N,
                    .write_dt = scored,
                    .ssm = ssm,
                    .seqs = seqs,
                    .nseq = nseq,
                    .maxT = maxT},
                   st);
    // out = y out_proj^T (+b)                    [M, d]
    gemm(y, E, l.out_proj.view, out, d, M, st);
    pending = true;

    if (!prunes[li]) continue;
    // ---- Simba: h += out, score, keep k tokens per sequence, compact the residual stream.
    add_rmsnorm(h, out, nullptr, nullptr, M, d, c.eps, st);
    pending = false;
    if (crit == 0 || crit == 1) {
      simba_score({.x = xc,
                   .ldx = E,
                   .dt = dt,
                   .lddt = E,
                   .B = dbc + R,
                   .C = dbc + R + N,
                   .ldbc = ldbc,
                   .AT = l.AT.f(),
                   .E = E,
                   .N = N,
                   .local = crit == 1,
                   .reduce_sum = req.reduce_sum != 0,
                   .seqs = seqs,
                   .nseq = nseq,
                   .maxT = maxT,
                   .rows = M,
                   .partial = partial,
                   .score = score},
                  st);
    } else if (crit == 2) {
      norm_score(out, d, M, score, st);
    } else if (crit == 3) {
      uniform_score(seqs, nseq, maxT, M, score, st);
    } else {
      random_score(seqs, nseq, maxT, orig, req.seed, li, score, st);
    }
    select_keep(score, seqs, nseq, req.protect_first, req.protect_last, dest, st);
    // Dropped tokens exit here: their residual stream is their final hidden state.
    compact_rows(h, orig, dest, M, d, h2, orig2, exit_l, slot, fin, li, st);
    std::swap(h, h2);
    std::swap(orig, orig2);
    M = li + 1 < L ? rows_in[li + 1] : rows_out;
  }
  if (pending) add_rmsnorm(h, out, nullptr, nullptr, M, d, c.eps, st);
  M = rows_out;

  // Survivors' final hidden states.
  gather_final(h, orig, M, d, slot, fin, st);
  // logits = rmsnorm(fin) * norm_f  head^T      [want, V]
  if (nw > 0) {
    add_rmsnorm(fin, nullptr, w_.norm_f.f(), fn, nw, d, c.eps, st);
    gemm(fn, d, c.tie ? w_.embed.view : w_.head.view, logits, V, nw, st);
  }
  // Everything ran? Only then hand results (and the new states) back.
  check(cudaStreamSynchronize(st), "forward");
  if (nw > 0)
    check(cudaMemcpyAsync(res.logits, logits, (size_t)nw * V * 4, cudaMemcpyDeviceToHost, st), "copying logits out");
  check(cudaMemcpyAsync(res.exit_layer, exit_l, T_ * 4, cudaMemcpyDeviceToHost, st), "copying exit layers out");
  if (!slots)
    for (int s = 0; s < nseq; s++)
      check(cudaMemcpyAsync(req.states[s], states + (size_t)s * SF, SF * 4, cudaMemcpyDeviceToHost, st),
            "copying states out");
  check(cudaStreamSynchronize(st), "forward (copy out)");
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
