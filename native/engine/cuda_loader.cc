// cuda_loader.cc — see cuda_loader.h.
#include "engine/cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "common/errors.h"
#include "common/tensor_table.h"

namespace simba {

namespace {

constexpr int kAbiVersion = 4;  // backend_api.h: a library of another version reads simba_config_t differently
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
      tried += "\n  " + path +
               (i == own_dir ? ": not found (no CUDA backend built next to the addon: no CUDA compiler or SIMBA_CUDA "
                               "unset at build time)"
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
    if (b->abi_version != kAbiVersion) {
      tried += "\n  " + path + ": backend ABI version " + std::to_string(b->abi_version) + ", expected " +
               std::to_string(kAbiVersion) + " (stale build?)";
      dlclose(h);
      continue;
    }
    int n_devices = 0;  // the probe fails when there is none
    char desc[256] = {0}, err[512] = {0};
    if (b->probe(&n_devices, desc, sizeof desc, err, sizeof err) != SIMBA_OK) {
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
  if (!s.available) fail(SIMBA_E_CUDA, "device 'cuda': " + s.reason);
  return *g_backend;
}

// ---------------------------------------------------------------- CudaModel

namespace {
// A backend call's failure as a simba::Error of the class the backend returned.
void check(simba_status_t code, const char* err) {
  if (code == SIMBA_OK) return;
  fail(code, *err ? err : "CUDA backend error");
}
}  // namespace

CudaModel::CudaModel(const ModelConfig& cfg, bool bf16)
    : cfg_(cfg), bf16_(bf16), state_floats_(simba::state_floats(cfg)), param_count_(simba::param_count(cfg)) {
  check_config(cfg);  // with the messages of the CPU engine, before the backend is asked
  b_ = &cuda_backend();
  const simba_config_t c = to_abi(cfg);
  char err[1024] = {0};
  check(b_->create(&c, bf16 ? 1 : 0, 0, &m_, err, sizeof err), err);
}

CudaModel::~CudaModel() {
  if (m_) b_->destroy(m_);
}

void CudaModel::set_tensor(const std::string& name, int layer, const float* data, size_t count) {
  char err[1024] = {0};
  check(b_->set_tensor(m_, name.c_str(), layer, data, count, err, sizeof err), err);
}

void CudaModel::randomize(uint64_t seed) {
  char err[1024] = {0};
  check(b_->randomize(m_, seed, err, sizeof err), err);
}

void CudaModel::finalize() {
  char err[1024] = {0};
  check(b_->finalize(m_, err, sizeof err), err);
}

size_t CudaModel::weight_bytes() const { return b_->weight_bytes(m_); }

ForwardResult CudaModel::forward(const ForwardRequest& req) { return run(req, nullptr); }

ForwardResult CudaModel::forward_slots(const ForwardRequest& req, const std::vector<int32_t>& slots) {
  need_device_states();
  if (slots.size() != req.lengths.size()) fail(SIMBA_E_ARG, "one state slot per sequence is required");
  return run(req, slots.data());
}

bool CudaModel::has_device_states() const { return cuda_backend_has(&simba_backend_v1_t::forward_slots); }

void CudaModel::need_device_states() const {
  if (!has_device_states())
    fail(SIMBA_E_CUDA,
         "the loaded CUDA library (" + cuda_status().library + ") predates device-resident states; rebuild it");
}

int CudaModel::alloc_state() {
  need_device_states();
  int32_t slot = -1;
  char err[1024] = {0};
  check(b_->state_alloc(m_, &slot, err, sizeof err), err);
  return slot;
}

void CudaModel::free_state(int slot) {
  need_device_states();
  char err[1024] = {0};
  check(b_->state_free(m_, slot, err, sizeof err), err);
}

void CudaModel::read_state(int slot, float* dst) const {
  need_device_states();
  char err[1024] = {0};
  check(b_->state_read(m_, slot, dst, err, sizeof err), err);
  to_host_ += state_floats_ * sizeof(float);
}

void CudaModel::write_state(int slot, const float* src) {
  need_device_states();
  char err[1024] = {0};
  check(b_->state_write(m_, slot, src, err, sizeof err), err);
  if (src) to_device_ += state_floats_ * sizeof(float);
}

// slots null: host states (req.states); else device slots, whose addresses the library checks.
ForwardResult CudaModel::run(const ForwardRequest& req, const int32_t* slots) {
  check_cancel(req);  // the library runs a forward whole: a cancelled call is dropped before it starts
  // The keep counts cross the C ABI without their length: check them (and the rest) here. With
  // slots there are no host states: placeholders (never read) pass the one-state-per-sequence rule,
  // and the library checks the slots themselves.
  static float no_host_state;
  std::vector<float*> placeholders;
  if (slots) placeholders.assign(req.lengths.size(), &no_host_state);
  check_request(cfg_, {.tokens = req.tokens.data(),
                       .n_tokens = req.tokens.size(),
                       .lengths = req.lengths.data(),
                       .n_seq = req.lengths.size(),
                       .states = slots ? placeholders.data() : req.states.data(),
                       .n_states = slots ? placeholders.size() : req.states.size(),
                       .want = req.want.data(),
                       .n_want = req.want.size(),
                       .simba = req.simba.enabled,
                       .n_keep = req.simba.keep.size(),
                       .criterion = req.simba.criterion});
  const size_t nseq = req.lengths.size();
  const simba_forward_t f{
      .tokens = req.tokens.data(),
      .n_tokens = (int)req.tokens.size(),
      .lengths = req.lengths.data(),
      .n_seq = (int)nseq,
      .states = slots ? nullptr : req.states.data(),
      .want = req.want.data(),
      .n_want = (int)req.want.size(),
      .simba_enabled = req.simba.enabled,
      .keep = req.simba.keep.empty() ? nullptr : req.simba.keep.data(),
      .criterion = req.simba.criterion,
      .reduce_sum = req.simba.reduce_sum,
      .protect_first = req.simba.protect_first,
      .protect_last = req.simba.protect_last,
      .seed = req.simba.seed,
  };
  ForwardResult res;
  res.logits.resize(req.want.size() * (size_t)cfg_.vocab);
  res.processed.resize(nseq * cfg_.L);
  res.exit_layer.resize(req.tokens.size());
  simba_result_t r{.logits = res.logits.data(), .processed = res.processed.data(), .exit_layer = res.exit_layer.data()};
  char err[1024] = {0};
  check(slots ? b_->forward_slots(m_, &f, slots, &r, err, sizeof err) : b_->forward(m_, &f, &r, err, sizeof err), err);
  if (!slots) {
    to_device_ += nseq * state_floats_ * sizeof(float);
    to_host_ += nseq * state_floats_ * sizeof(float);
  }
  return res;
}

}  // namespace simba
