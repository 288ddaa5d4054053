// cuda_loader.h — the addon's side of the CUDA backend: finds libsimba_cuda.so next to the addon,
// dlopen()s it, resolves simba_backend_v1 (native/common/backend_api.h) and probes for a device; and
// CudaModel, a simba::Model look-alike (same method names) that runs on that backend.
// Nothing here links CUDA: without the library, a driver or a device, cuda_status() says which,
// and CudaModel's constructor throws that reason (listing every path tried).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "common/backend_api.h"
#include "engine/model.h"

namespace simba {

struct CudaStatus {
  bool available = false;
  std::string reason;   // why not (or "ok")
  std::string device;   // device 0, e.g. "NVIDIA H200, 140 GiB, sm_90, 132 SMs"
  std::string library;  // the path loaded
  size_t table_bytes =
      0;  // sizeof the library's function table (simba_backend_v1_size; older builds: up to bench_scan)
};

// Loads and probes once per process (thread-safe); never throws.
const CudaStatus& cuda_status();
// The backend's function table; throws an E_CUDA simba::Error with the reason when it is not available.
const simba_backend_v1_t& cuda_backend();
// Whether the loaded table holds the appended entry `member` (e.g.
// cuda_backend_has(&simba_backend_v1_t::forward_slots)).
template <typename F>
bool cuda_backend_has(F simba_backend_v1_t::*member) {
  static const simba_backend_v1_t probe{};
  const size_t end =
      (size_t)(reinterpret_cast<const char*>(&(probe.*member)) - reinterpret_cast<const char*>(&probe)) + sizeof(F);
  return cuda_status().available && cuda_status().table_bytes >= end;
}

// A model on the CUDA backend, device 0. Methods mirror simba::Model; errors are thrown as
// simba::Error with the class (simba_status_t) and message the backend returned.
class CudaModel {
 public:
  CudaModel(const ModelConfig& cfg, bool bf16);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  void set_tensor(const std::string& name, int layer, const float* data, size_t count);
  void randomize(uint64_t seed);
  void finalize();
  ForwardResult forward(const ForwardRequest& req);

  // Device-resident states (the library's slot pool; see backend_api.h). has_device_states() is
  // false for a library built before the pool existed; the others then throw.
  bool has_device_states() const;
  int alloc_state();  // a zeroed state on the device
  void free_state(int slot);
  void read_state(int slot, float* dst) const;   // snapshot: state_floats() floats of this slot only
  void write_state(int slot, const float* src);  // restore (src null: zeros)
  // forward() with the states in slots[s] (req.states is ignored): nothing but tokens, logits and
  // exit layers cross to the host.
  ForwardResult forward_slots(const ForwardRequest& req, const std::vector<int32_t>& slots);

  const ModelConfig& config() const { return cfg_; }
  bool bf16() const { return bf16_; }
  size_t state_floats() const { return state_floats_; }
  size_t param_count() const { return param_count_; }
  size_t weight_bytes() const;
  const std::string& device_name() const { return cuda_status().device; }
  // Recurrent-state bytes this model asked the backend to copy host -> device and device -> host:
  // forward() with host states (every state in and out), read_state, write_state (not zeroing).
  // forward_slots copies none; a test asserts that decode steps on slots leave these unchanged.
  uint64_t state_bytes_to_device() const { return to_device_.load(); }
  uint64_t state_bytes_to_host() const { return to_host_.load(); }

 private:
  ForwardResult run(const ForwardRequest& req, const int32_t* slots);
  void need_device_states() const;

  const simba_backend_v1_t* b_ = nullptr;
  simba_model* m_ = nullptr;
  ModelConfig cfg_;
  bool bf16_;
  size_t state_floats_ = 0, param_count_ = 0;
  mutable std::atomic<uint64_t> to_device_{0}, to_host_{0};
};

}  // namespace simba
