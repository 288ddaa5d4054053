// cuda_loader.cc — see cuda_loader.h.
#include "engine/cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

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
  const size_t own_dir = candidates.size() - 1;
  // More folders, ':'-separated: the TS loader passes the @simba-ssm/<platform>-cuda package here.
  if (const char* dirs = std::getenv("SIMBA_CUDA_LIB_DIRS"); dirs && *dirs) {
    std::string list = dirs;
    for (size_t at = 0, end; at < list.size(); at = end + 1) {
      end = list.find(':', at);
      if (end == std::string::npos) end = list.size();
      if (end > at) candidates.push_back(list.substr(at, end - at) + "/libsimba_cuda.so");
    }
  }
  std::string tried;
  for (size_t i = 0; i < candidates.size(); i++) {
    const std::string& path = candidates[i];
    if (!exists(path)) {
      tried += "\n  " + path + (i == own_dir ? ": not found (no CUDA backend built next to the addon: no CUDA compiler or SIMBA_CUDA unset at build time)"
                                              : ": not found");
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

ForwardResult CudaModel::forward(const ForwardRequest& req) {
  const size_t nseq = req.lengths.size();
  if (nseq == 0) throw std::invalid_argument("no sequences given");
  if (req.states.size() != nseq) throw std::invalid_argument("one state per sequence is required");
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
  f.states = req.states.data();
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
  if (b_->forward(m_, &f, &r, err, sizeof err) != 0) {
    std::string m = err;
    if (m.find("outside the vocabulary") != std::string::npos || m.find("outside the") != std::string::npos) throw std::out_of_range(m);
    throw_err(err);
  }
  res.processed.assign(processed.begin(), processed.end());
  return res;
}

}  // namespace simba
