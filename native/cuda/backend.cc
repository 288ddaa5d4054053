// backend.cc — the C ABI of libsimba_cuda.so (native/backend_api.h): simba_backend_v1() returns the
// function table. Every entry catches every C++ exception (CUDA errors and out-of-memory arrive as
// std::runtime_error with a message) and returns it as an error string; nothing here aborts.
#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "../engine/backend_api.h"
#include "kernels.cuh"
#include "model_cuda.h"

struct simba_model {
  std::unique_ptr<simba::cuda::DeviceModel> m;
};

namespace simba {
namespace cuda {
void bench_scan(int n_seq, int T, int E, int N, int iters, double* scan_ms, double* scan_bytes, double* copy_gbs);
}
}  // namespace simba

namespace {

using namespace simba::cuda;

void put(char* dst, size_t len, const std::string& s) {
  if (!dst || len == 0) return;
  size_t n = std::min(len - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

template <typename F>
int guard(char* err, size_t len, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    put(err, len, e.what());
  } catch (...) {
    put(err, len, "unknown error in the CUDA backend");
  }
  return 1;
}

// A device buffer holding a copy of host data (or zeros when src is null).
DevBuf to_dev(const void* src, size_t bytes, const char* what) {
  DevBuf b;
  if (src) b.upload(src, bytes, what);
  else {
    b.alloc(bytes, what);
    if (bytes) check(cudaMemset(b.get(), 0, bytes), what);
  }
  return b;
}
void to_host(void* dst, const DevBuf& b, size_t bytes, const char* what) {
  if (bytes) check(cudaMemcpy(dst, b.get(), bytes, cudaMemcpyDeviceToHost), what);
}
std::vector<float> a_transposed(const float* A_log, int E, int N) {  // [E, N] -> AT [N][E] = -exp
  std::vector<float> AT((size_t)N * E);
  for (int e = 0; e < E; e++) for (int n = 0; n < N; n++) AT[(size_t)n * E + e] = -std::exp(A_log[(size_t)e * N + n]);
  return AT;
}
DevBuf one_seq(int T) {
  SeqInfo s{0, T, T, 0};
  return to_dev(&s, sizeof s, "sequence table");
}

int probe(int* n_devices, char* desc, size_t desc_len, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      void* drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
      if (!drv) throw std::runtime_error(std::string("no NVIDIA driver: libcuda.so.1 cannot be loaded (") + cudaGetErrorString(e) + ")");
      dlclose(drv);
      throw std::runtime_error(std::string("the NVIDIA driver reports no usable device: ") + cudaGetErrorString(e));
    }
    *n_devices = n;
    if (n == 0) throw std::runtime_error("the NVIDIA driver is loaded but reports no CUDA device");
    std::string d;
    probe_devices(&n, &d);
    put(desc, desc_len, d);
  });
}

int create(const simba_config_t* cfg, int bf16, int device, simba_model** out, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    auto m = std::make_unique<simba_model>();
    m->m = std::make_unique<DeviceModel>(*cfg, bf16 != 0, device);
    *out = m.release();
  });
}

int set_tensor(simba_model* m, const char* name, int layer, const float* data, size_t count, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->set_tensor(name, layer, data, count); });
}
int randomize(simba_model* m, uint64_t seed, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->randomize(seed); });
}
int finalize(simba_model* m, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->finalize(); });
}
int forward(simba_model* m, const simba_forward_t* req, simba_result_t* res, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->forward(*req, *res); });
}
size_t weight_bytes(simba_model* m) { return m ? m->m->weight_bytes() : 0; }
void destroy(simba_model* m) {
  try {
    delete m;
  } catch (...) {
  }
}

int kernel_gemm(const float* A, const float* W, const float* bias, float* C, int M, int N, int K, int bf16, char* err,
                size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    DevBuf dA = to_dev(A, (size_t)M * K * 4, "A"), dC = to_dev(nullptr, (size_t)M * N * 4, "C");
    DevBuf dW, db;
    if (bf16) {
      std::vector<uint16_t> h((size_t)N * K);
      for (size_t i = 0; i < h.size(); i++) h[i] = to_bf16_bits(W[i]);
      dW = to_dev(h.data(), h.size() * 2, "W");
    } else {
      dW = to_dev(W, (size_t)N * K * 4, "W");
    }
    if (bias) db = to_dev(bias, (size_t)N * 4, "bias");
    DevLinear lin;
    lin.N = N; lin.K = K; lin.bf16 = bf16 != 0; lin.w = dW.get(); lin.bias = bias ? db.f() : nullptr;
    gemm(dA.f(), K, lin, dC.f(), N, M, 0);
    check(cudaDeviceSynchronize(), "gemm");
    to_host(C, dC, (size_t)M * N * 4, "C");
  });
}

int kernel_scan(const float* x, float* dt, const float* A_log, const float* B, const float* C, const float* D,
                const float* z, float* state, float* y, int T, int E, int N, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t TE = (size_t)T * E * 4, TN = (size_t)T * N * 4;
    auto AT = a_transposed(A_log, E, N);
    DevBuf dx = to_dev(x, TE, "x"), ddt = to_dev(dt, TE, "dt"), dB = to_dev(B, TN, "B"), dC = to_dev(C, TN, "C"),
           dz = to_dev(z, TE, "z"), dAT = to_dev(AT.data(), AT.size() * 4, "A"), dD = to_dev(D, (size_t)E * 4, "D"),
           ds = to_dev(state, (size_t)E * N * 4, "state"), dy = to_dev(nullptr, TE, "y"), tab = one_seq(T);
    ScanParams p{dx.f(), E, ddt.f(), E, dB.f(), dC.f(), N, dz.f(), E, dAT.f(), dD.f(), dy.f(), E, E, N, true,
                 StateRef{ds.f(), (size_t)E * N}, static_cast<const SeqInfo*>(tab.get()), 1, T};
    selective_scan(p, 0);
    check(cudaDeviceSynchronize(), "selective scan");
    to_host(y, dy, TE, "y");
    to_host(dt, ddt, TE, "dt");
    to_host(state, ds, (size_t)E * N * 4, "state");
  });
}

int kernel_score(const float* x, const float* dt, const float* A_log, const float* B, const float* C, float* score, int T,
                 int E, int N, int local, int reduce_sum, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t TE = (size_t)T * E * 4, TN = (size_t)T * N * 4;
    auto AT = a_transposed(A_log, E, N);
    const int groups = ceil_div(E, 32);
    DevBuf dx = to_dev(x, TE, "x"), ddt = to_dev(dt, TE, "dt"), dB = to_dev(B, TN, "B"), dC = to_dev(C, TN, "C"),
           dAT = to_dev(AT.data(), AT.size() * 4, "A"), dpart = to_dev(nullptr, (size_t)groups * T * 4, "partial"),
           dsc = to_dev(nullptr, (size_t)T * 4, "score"), tab = one_seq(T);
    ScoreParams p{dx.f(), E, ddt.f(), E, dB.f(), dC.f(), N, dAT.f(), E, N, local != 0, reduce_sum != 0,
                  static_cast<const SeqInfo*>(tab.get()), 1, T, T, dpart.f(), dsc.f()};
    simba_score(p, 0);
    check(cudaDeviceSynchronize(), "simba score");
    to_host(score, dsc, (size_t)T * 4, "score");
  });
}

int kernel_conv1d(const float* x, const float* w, const float* bias, float* state, float* out, int T, int E, int K,
                  char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    std::vector<float> wT((size_t)K * E);
    for (int e = 0; e < E; e++) for (int j = 0; j < K; j++) wT[(size_t)j * E + e] = w[(size_t)e * K + j];
    const size_t TE = (size_t)T * E * 4, SB = (size_t)E * (K - 1) * 4;
    DevBuf dx = to_dev(x, TE, "x"), dw = to_dev(wT.data(), wT.size() * 4, "w"), dout = to_dev(nullptr, TE, "out"),
           ds = to_dev(state, SB, "state"), tab = one_seq(T), db;
    if (bias) db = to_dev(bias, (size_t)E * 4, "bias");
    conv1d(dx.f(), E, dout.f(), E, dw.f(), bias ? db.f() : nullptr, E, K, static_cast<const SeqInfo*>(tab.get()), 1, T,
           StateRef{ds.f(), (size_t)E * (K - 1)}, 0);
    check(cudaDeviceSynchronize(), "conv1d");
    to_host(out, dout, TE, "out");
    to_host(state, ds, SB, "state");
  });
}

int bench_scan_c(int n_seq, int T, int E, int N, int iters, double* scan_ms, double* scan_bytes, double* copy_gbs,
                 char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    simba::cuda::bench_scan(n_seq, T, E, N, iters, scan_ms, scan_bytes, copy_gbs);
  });
}

int kernel_rmsnorm(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps, char* err,
                   size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t HB = (size_t)rows * d * 4;
    DevBuf dh = to_dev(h, HB, "h"), dw = to_dev(w, (size_t)d * 4, "w"), dy = to_dev(nullptr, HB, "y"), ddl;
    if (delta) ddl = to_dev(delta, HB, "delta");
    add_rmsnorm(dh.f(), delta ? ddl.f() : nullptr, dw.f(), dy.f(), rows, d, eps, 0);
    check(cudaDeviceSynchronize(), "rmsnorm");
    to_host(y, dy, HB, "y");
    to_host(h, dh, HB, "h");
  });
}

int state_alloc(simba_model* m, int32_t* slot, char* err, size_t err_len) {
  return guard(err, err_len, [&] { *slot = m->m->state_alloc(); });
}
int state_free(simba_model* m, int32_t slot, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->state_free(slot); });
}
int state_read(simba_model* m, int32_t slot, float* dst, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->state_read(slot, dst); });
}
int state_write(simba_model* m, int32_t slot, const float* src, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->state_write(slot, src); });
}
int forward_slots(simba_model* m, const simba_forward_t* req, const int32_t* slots, simba_result_t* res, char* err,
                  size_t err_len) {
  return guard(err, err_len, [&] { m->m->forward_slots(*req, slots, *res); });
}

const simba_backend_v1_t kTable = {
    1, "cuda", probe, create, set_tensor, randomize, finalize, forward, weight_bytes, destroy,
    kernel_gemm, kernel_scan, kernel_score, kernel_conv1d, bench_scan_c,
    kernel_rmsnorm, state_alloc, state_free, state_read, state_write, forward_slots,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const simba_backend_v1_t* simba_backend_v1(void) { return &kTable; }
extern "C" __attribute__((visibility("default"))) size_t simba_backend_v1_size(void) { return sizeof kTable; }
