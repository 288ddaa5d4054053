// model_cuda.h — a Mamba model in device memory and its forward pass on the GPU: the CUDA twin of
// simba::Model (engine/model.h): the same tensor table, loading checks, random weights and request
// checks (common/tensor_table.h, shared code), forward semantics (Simba pruning, early exit,
// processed / exit_layer) and errors (simba::Error with a code, common/errors.h).
//
// Weights live on the device (matrices f32 or bf16, row-major [N, K]; vectors f32). The recurrent
// states live either in the caller's host memory (forward: copied in, run, copied back) or in
// device slots (forward_slots: a pool of per-sequence states that never leaves the device; a
// snapshot or restore copies one slot).
// Activations are token-major, in one workspace allocation that grows with the largest call.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/backend_api.h"
#include "../common/tensor_table.h"
#include "kernels.cuh"
#include "mixer.h"

namespace simba {
namespace cuda {

// Owning device allocation (cudaMalloc); out-of-memory becomes an E_OOM error naming what and how much.
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  DevBuf& operator=(DevBuf&& o) noexcept;
  ~DevBuf() { release(); }
  void alloc(size_t bytes, const std::string& what);                    // frees the old allocation first
  void upload(const void* src, size_t bytes, const std::string& what);  // alloc + synchronous copy
  void release();
  void* get() const { return p_; }
  float* f() const { return static_cast<float*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct DevLinearStore {
  DevLinear view;  // pointers into w and bias
  DevBuf w, bias;
};

// The CUDA engine's weights: matrices row-major on the device (f32 or bf16), vectors f32 on the
// device (tensor_table.h says what each holds and in which layout).
using DevLayer = LayerWeights<DevLinearStore, DevBuf>;
using DevWeights = ModelWeights<DevLinearStore, DevBuf>;

// The mixer of the config's family on the device (mixer_mamba1.cc, which also picks Mamba-2's), reading w.
std::unique_ptr<DevMixer> make_device_mixer(const ModelConfig& c, const DevWeights& w);
std::unique_ptr<DevMixer> make_mamba2_device_mixer(const ModelConfig& c, const DevWeights& w);  // mixer_mamba2.cc

class DeviceModel {
 public:
  DeviceModel(const ModelConfig& cfg, bool bf16, int device);
  ~DeviceModel();
  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

  void set_tensor(const std::string& name, int layer, const float* data, size_t count);
  void randomize(uint64_t seed);
  void finalize();
  void forward(const simba_forward_t& req, simba_result_t& res);
  size_t weight_bytes() const;

  // Device-resident states (a slot pool, [capacity][state_floats] floats, grown by doubling).
  int state_alloc();  // a zeroed slot
  void state_free(int slot);
  void state_read(int slot, float* dst) const;   // copies this slot only
  void state_write(int slot, const float* src);  // src null: zeros
  // forward() with slots[req.n_seq] (distinct, allocated) holding the states; req.states is ignored.
  void forward_slots(const simba_forward_t& req, const int32_t* slots, simba_result_t& res);

  size_t layer_state_floats() const { return simba::layer_state_floats(cfg_); }
  size_t state_floats() const { return simba::state_floats(cfg_); }

 private:
  struct Store;  // how set_tensor stores (model_cuda.cc)
  void select_device() const;
  void check_request(const simba_forward_t& r, const int32_t* slots) const;
  void check_slot(int slot) const;
  // The forward's parts, in order (model_cuda.cc).
  struct LayerPlan;  // every layer's sequence table, decided on the host
  struct Buffers;    // the forward's device buffers, carved from the workspace
  void run_forward(const simba_forward_t& req, const int32_t* slots, simba_result_t& res);
  LayerPlan plan_layers(const simba_forward_t& req, simba_result_t& res) const;
  Buffers carve_buffers(const simba_forward_t& req, const int32_t* slots, const LayerPlan& plan);
  void copy_inputs(const simba_forward_t& req, const int32_t* slots, const LayerPlan& plan, const Buffers& b);
  void prune_layer(const simba_forward_t& req, const DevMixerIO& io, Buffers& b);
  void final_logits(int nw, int rows_out, const Buffers& b);
  void copy_outputs(const simba_forward_t& req, const int32_t* slots, const Buffers& b, simba_result_t& res);
  // Workspace of at least `bytes`, grown (reallocated) when needed.
  char* workspace(size_t bytes);

  ModelConfig cfg_;
  bool bf16_;
  int device_;
  WeightLoader loader_;
  cudaStream_t stream_ = nullptr;
  DevWeights w_;
  std::unique_ptr<DevMixer> mixer_;  // reads w_
  DevBuf work_;
  DevBuf pool_;  // [pool_cap_][state_floats()] device-resident states
  int pool_cap_ = 0;
  std::vector<char> slot_live_;  // [pool_cap_]
  std::vector<int> free_slots_;  // free slot indices (the last is used next)
  mutable std::mutex mu_;        // one forward / slot operation at a time (stream, workspace, pool)
};

// The device this process's CUDA runtime sees: count and a description of device 0.
void probe_devices(int* n, std::string* desc);

}  // namespace cuda
}  // namespace simba
