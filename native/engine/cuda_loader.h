// cuda_loader.h — the addon's side of the CUDA backend: finds libsimba_cuda.so next to the addon,
// dlopen()s it, resolves simba_backend_v1 (native/backend_api.h) and probes for a device; and
// CudaModel, a simba::Model look-alike (same method names) that runs on that backend.
// Nothing here links CUDA: without the library, a driver or a device, cuda_status() says which,
// and CudaModel's constructor throws that reason (listing every path tried).
#pragma once
#include <cstdint>
#include <string>

#include "engine/backend_api.h"
#include "engine/model.h"

namespace simba {

struct CudaStatus {
  bool available = false;
  std::string reason;  // why not (or "ok")
  std::string device;  // device 0, e.g. "NVIDIA H200, 140 GiB, sm_90, 132 SMs"
  std::string library; // the path loaded
};

// Loads and probes once per process (thread-safe); never throws.
const CudaStatus& cuda_status();
// The backend's function table; throws an E_CUDA simba::Error with the reason when it is not available.
const simba_backend_v1_t& cuda_backend();

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

  const ModelConfig& config() const { return cfg_; }
  bool bf16() const { return bf16_; }
  size_t state_floats() const { return state_floats_; }
  size_t param_count() const { return param_count_; }
  size_t weight_bytes() const;
  const std::string& device_name() const { return cuda_status().device; }

 private:
  const simba_backend_v1_t* b_ = nullptr;
  simba_model* m_ = nullptr;
  ModelConfig cfg_;
  bool bf16_;
  size_t state_floats_ = 0, param_count_ = 0;
};

}  // namespace simba
