// cuda_loader.cc — see cuda_loader.h.
#include "engine/cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace simba {

namespace {

const simba_backend_v1_t* g_backend = nullptr;
CudaStatus g_status;
std::once_flag g_once;

// The folder of the addon binary (simba_ssm.node), found from one of its own symbols.
std::string addon_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&addon_dir), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    size_t slash = p.rfind('/');
    return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
  }
  return ".";
}

bool exists(const std::string& p) {
  struct stat s;
  return stat(p.c_str(), &s) == 0;
}

void load() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SIMBA_CUDA_LIB"); env && *env) candidates.push_back(env);
  candidates.push_back(addon_dir() + "/libsimba_cuda.so");
  std::string tried;
  for (const std::string& path : candidates) {
    if (!exists(path)) {
      tried += "\n  " + path + ": not found (the CUDA backend was not built: no CUDA compiler at build time, or SIMBA_NO_CUDA set)";
      continue;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      tried += "\n  " + path + ": cannot be loaded: " + (e ? e : "unknown dlopen error");
      continue;
    }
    auto fn = reinterpret_cast<simba_backend_v1_fn>(dlsym(h, "simba_backend_v1"));
    const simba_backend_v1_t* b = fn ? fn() : nullptr;
    if (!b) {
      tried += "\n  " + path + ": does not export simba_backend_v1";
      dlclose(h);
      continue;
    }
    if (b->abi_version != 1) {
      tried += "\n  " + path + ": backend ABI version " + std::to_string(b->abi_version) + ", expected 1 (stale build?)";
      dlclose(h);
      continue;
    }
    int n = 0;
    char desc[256] = {0}, err[512] = {0};
    if (b->probe(&n, desc, sizeof desc, err, sizeof err) != 0) {
      tried += "\n  " + path + ": loaded, but " + err;
      continue;  // keep the library loaded: its static runtime may not unload cleanly
    }
    auto size_fn = reinterpret_cast<simba_backend_v1_size_fn>(dlsym(h, "simba_backend_v1_size"));
    g_status.table_bytes = size_fn ? size_fn() : offsetof(simba_backend_v1_t, bench_scan) + sizeof(b->bench_scan);
    g_backend = b;
    g_status.available = true;
    g_status.reason = "ok";
    g_status.device = desc;
    g_status.library = path;
    return;
  }
  g_status.available = false;
  g_status.reason = "CUDA is not available. Tried:" + tried;
}

}  // namespace

const CudaStatus& cuda_status() {
  std::call_once(g_once, load);
  return g_status;
}

const simba_backend_v1_t& cuda_backend() {
  const CudaStatus& s = cuda_status();
  if (!s.available) throw std::runtime_error("device 'cuda': " + s.reason);
  return *g_backend;
}

// ---------------------------------------------------------------- CudaModel

namespace {
void throw_err(const char* err) {
  std::string m = err;
  throw std::runtime_error(m.empty() ? "CUDA backend error" : m);
}
}  // namespace

CudaModel::CudaModel(const ModelConfig& cfg, bool bf16) : cfg_(cfg), bf16_(bf16) {
  {
    Model probe(cfg, bf16);  // validates the config with the CPU engine's messages; allocates no weights
    state_floats_ = probe.state_floats();
    param_count_ = probe.param_count();
  }
  b_ = &cuda_backend();
  simba_config_t c{cfg.vocab, cfg.d, cfg.L, cfg.E, cfg.N, cfg.R, cfg.K, cfg.conv_bias, cfg.proj_bias, cfg.tie, cfg.eps};
  char err[1024] = {0};
  if (b_->create(&c, bf16 ? 1 : 0, 0, &m_, err, sizeof err) != 0) throw_err(err);
}

CudaModel::~CudaModel() {
  if (m_) b_->destroy(m_);
}

void CudaModel::set_tensor(const std::string& name, int layer, const float* data, size_t count) {
  char err[1024] = {0};
  if (b_->set_tensor(m_, name.c_str(), layer, data, count, err, sizeof err) != 0) throw_err(err);
}

void CudaModel::randomize(uint64_t seed) {
  char err[1024] = {0};
  if (b_->randomize(m_, seed, err, sizeof err) != 0) throw_err(err);
}

void CudaModel::finalize() {
  char err[1024] = {0};
  if (b_->finalize(m_, err, sizeof err) != 0) throw_err(err);
}

size_t CudaModel::weight_bytes() const { return b_->weight_bytes(m_); }

ForwardResult CudaModel::forward(const ForwardRequest& req) { return run(req, nullptr); }

ForwardResult CudaModel::forward_slots(const ForwardRequest& req, const std::vector<int32_t>& slots) {
  need_device_states();
  if (slots.size() != req.lengths.size()) throw std::invalid_argument("one state slot per sequence is required");
  return run(req, slots.data());
}

bool CudaModel::has_device_states() const { return cuda_backend_has(&simba_backend_v1_t::forward_slots); }

void CudaModel::need_device_states() const {
  if (!has_device_states())
    throw std::runtime_error("the loaded CUDA library (" + cuda_status().library + ") predates device-resident states; rebuild it");
}

int CudaModel::alloc_state() {
  need_device_states();
  int32_t slot = -1;
  char err[1024] = {0};
  if (b_->state_alloc(m_, &slot, err, sizeof err) != 0) throw_err(err);
  return slot;
}

void CudaModel::free_state(int slot) {
  need_device_states();
  char err[1024] = {0};
  if (b_->state_free(m_, slot, err, sizeof err) != 0) throw std::invalid_argument(err);
}

void CudaModel::read_state(int slot, float* dst) const {
  need_device_states();
  char err[1024] = {0};
  if (b_->state_read(m_, slot, dst, err, sizeof err) != 0) throw std::invalid_argument(err);
}

void CudaModel::write_state(int slot, const float* src) {
  need_device_states();
  char err[1024] = {0};
  if (b_->state_write(m_, slot, src, err, sizeof err) != 0) throw std::invalid_argument(err);
}

ForwardResult CudaModel::run(const ForwardRequest& req, const int32_t* slots) {
  const size_t nseq = req.lengths.size();
  if (nseq == 0) throw std::invalid_argument("no sequences given");
  if (!slots && req.states.size() != nseq) throw std::invalid_argument("one state per sequence is required");
  if (req.simba.enabled && req.simba.keep.size() != nseq * cfg_.L)
    throw std::invalid_argument("simba keep counts: expected " + std::to_string(nseq * cfg_.L) + " (sequences x layers)");
  simba_forward_t f{};
  f.tokens = req.tokens.data();
  f.n_tokens = (int)req.tokens.size();
  std::vector<int32_t> lengths(req.lengths.begin(), req.lengths.end());
  std::vector<int32_t> want(req.want.begin(), req.want.end());
  std::vector<int32_t> keep(req.simba.keep.begin(), req.simba.keep.end());
  f.lengths = lengths.data();
  f.n_seq = (int)nseq;
  f.states = slots ? nullptr : req.states.data();
  f.want = want.data();
  f.n_want = (int)want.size();
  f.simba_enabled = req.simba.enabled;
  f.keep = keep.empty() ? nullptr : keep.data();
  f.criterion = (int)req.simba.criterion;
  f.reduce_sum = req.simba.reduce_sum;
  f.protect_first = req.simba.protect_first;
  f.protect_last = req.simba.protect_last;
  f.seed = req.simba.seed;
  ForwardResult res;
  res.logits.resize(want.size() * (size_t)cfg_.vocab);
  res.processed.assign(nseq * cfg_.L, 0);
  res.exit_layer.assign(req.tokens.size(), cfg_.L);
  std::vector<int32_t> processed(nseq * cfg_.L);
  simba_result_t r{res.logits.data(), processed.data(), res.exit_layer.data()};
  char err[1024] = {0};
  const int rc = slots ? b_->forward_slots(m_, &f, slots, &r, err, sizeof err) : b_->forward(m_, &f, &r, err, sizeof err);
  if (rc != 0) {
    std::string m = err;
    if (m.find("outside the vocabulary") != std::string::npos || m.find("outside the") != std::string::npos) throw std::out_of_range(m);
    throw_err(err);
  }
  res.processed.assign(processed.begin(), processed.end());
  return res;
}

}  // namespace simba
