// backend.cc — the C ABI of libsimba_cuda.so (native/common/backend_api.h): simba_backend_v1() returns the
// function table. Every entry catches every C++ exception and returns its class as a simba_status_t
// (simba::Error carries its own: E_CUDA, E_OOM, E_SHAPE ...; std::bad_alloc is E_OOM, anything else
// E_NATIVE) with the message in err; nothing here aborts.
#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "../common/backend_api.h"
#include "../common/errors.h"
#include "../common/tensor_table.h"
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
simba_status_t guard(char* err, size_t len, F f) {
  try {
    f();
    return SIMBA_OK;
  } catch (const std::exception& e) {
    put(err, len, e.what());
    return simba::status_of(e);
  } catch (...) { put(err, len, "unknown error in the CUDA backend"); }
  return SIMBA_E_NATIVE;
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
std::vector<float> relayout(simba::Layout l, const float* x, int rows, int cols) {  // tensor_table.h layouts
  std::vector<float> out((size_t)rows * cols);
  simba::apply_layout(l, x, rows, cols, out.data());
  return out;
}
DevBuf one_seq(int T) {
  SeqInfo s{.row0 = 0, .T = T, .k = T, .nrow0 = 0};
  return to_dev(&s, sizeof s, "sequence table");
}

simba_status_t probe(int* n_devices, char* desc, size_t desc_len, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      void* drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
      if (!drv)
        simba::fail(SIMBA_E_CUDA,
                    std::string("no NVIDIA driver: libcuda.so.1 cannot be loaded (") + cudaGetErrorString(e) + ")");
      dlclose(drv);
      simba::fail(SIMBA_E_CUDA, std::string("the NVIDIA driver reports no usable device: ") + cudaGetErrorString(e));
    }
    *n_devices = n;
    if (n == 0) simba::fail(SIMBA_E_CUDA, "the NVIDIA driver is loaded but reports no CUDA device");
    std::string d;
    probe_devices(&n, &d);
    put(desc, desc_len, d);
  });
}

simba_status_t create(const simba_config_t* cfg, int bf16, int device, simba_model** out, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    auto m = std::make_unique<simba_model>();
    m->m = std::make_unique<DeviceModel>(simba::from_abi(*cfg), bf16 != 0, device);
    *out = m.release();
  });
}

simba_status_t set_tensor(simba_model* m, const char* name, int layer, const float* data, size_t count, char* err,
                          size_t err_len) {
  return guard(err, err_len, [&] { m->m->set_tensor(name, layer, data, count); });
}
simba_status_t randomize(simba_model* m, uint64_t seed, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->randomize(seed); });
}
simba_status_t finalize(simba_model* m, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->finalize(); });
}
simba_status_t forward(simba_model* m, const simba_forward_t* req, simba_result_t* res, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->forward(*req, *res); });
}
size_t weight_bytes(simba_model* m) { return m ? m->m->weight_bytes() : 0; }
void destroy(simba_model* m) {
  try {
    delete m;
  } catch (...) {}
}

simba_status_t kernel_gemm(const float* A, const float* W, const float* bias, float* C, int M, int N, int K, int bf16,
                           char* err, size_t err_len) {
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
    const DevLinear lin{.N = N, .K = K, .bf16 = bf16 != 0, .w = dW.get(), .bias = bias ? db.f() : nullptr};
    gemm(dA.f(), K, lin, dC.f(), N, M, 0);
    check(cudaDeviceSynchronize(), "gemm");
    to_host(C, dC, (size_t)M * N * 4, "C");
  });
}

simba_status_t kernel_scan(const float* x, float* dt, const float* A_log, const float* B, const float* C,
                           const float* D, const float* z, float* state, float* y, int T, int E, int N, char* err,
                           size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t TE = (size_t)T * E * 4, TN = (size_t)T * N * 4;
    auto AT = relayout(simba::Layout::kNegExpTransposed, A_log, E, N);
    DevBuf dx = to_dev(x, TE, "x"), ddt = to_dev(dt, TE, "dt"), dB = to_dev(B, TN, "B"), dC = to_dev(C, TN, "C"),
           dz = to_dev(z, TE, "z"), dAT = to_dev(AT.data(), AT.size() * 4, "A"), dD = to_dev(D, (size_t)E * 4, "D"),
           ds = to_dev(state, (size_t)E * N * 4, "state"), dy = to_dev(nullptr, TE, "y"), tab = one_seq(T);
    selective_scan({.x = dx.f(),
                    .ldx = E,
                    .dt = ddt.f(),
                    .lddt = E,
                    .B = dB.f(),
                    .C = dC.f(),
                    .ldbc = N,
                    .z = dz.f(),
                    .ldz = E,
                    .AT = dAT.f(),
                    .D = dD.f(),
                    .y = dy.f(),
                    .ldy = E,
                    .E = E,
                    .N = N,
                    .write_dt = true,
                    .ssm = {.base = ds.f(), .stride = (size_t)E * N},
                    .seqs = static_cast<const SeqInfo*>(tab.get()),
                    .nseq = 1,
                    .maxT = T},
                   0);
    check(cudaDeviceSynchronize(), "selective scan");
    to_host(y, dy, TE, "y");
    to_host(dt, ddt, TE, "dt");
    to_host(state, ds, (size_t)E * N * 4, "state");
  });
}

simba_status_t kernel_score(const float* x, const float* dt, const float* A_log, const float* B, const float* C,
                            float* score, int T, int E, int N, int local, int reduce_sum, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t TE = (size_t)T * E * 4, TN = (size_t)T * N * 4;
    auto AT = relayout(simba::Layout::kNegExpTransposed, A_log, E, N);
    const int groups = ceil_div(E, 32);
    DevBuf dx = to_dev(x, TE, "x"), ddt = to_dev(dt, TE, "dt"), dB = to_dev(B, TN, "B"), dC = to_dev(C, TN, "C"),
           dAT = to_dev(AT.data(), AT.size() * 4, "A"), dpart = to_dev(nullptr, (size_t)groups * T * 4, "partial"),
           dsc = to_dev(nullptr, (size_t)T * 4, "score"), tab = one_seq(T);
    simba_score({.x = dx.f(),
                 .ldx = E,
                 .dt = ddt.f(),
                 .lddt = E,
                 .B = dB.f(),
                 .C = dC.f(),
                 .ldbc = N,
                 .AT = dAT.f(),
                 .E = E,
                 .N = N,
                 .local = local != 0,
                 .reduce_sum = reduce_sum != 0,
                 .seqs = static_cast<const SeqInfo*>(tab.get()),
                 .nseq = 1,
                 .maxT = T,
                 .rows = T,
                 .partial = dpart.f(),
                 .score = dsc.f()},
                0);
    check(cudaDeviceSynchronize(), "simba score");
    to_host(score, dsc, (size_t)T * 4, "score");
  });
}

simba_status_t kernel_conv1d(const float* x, const float* w, const float* bias, float* state, float* out, int T, int E,
                             int K, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    auto wT = relayout(simba::Layout::kTransposed, w, E, K);
    const size_t TE = (size_t)T * E * 4, SB = (size_t)E * (K - 1) * 4;
    DevBuf dx = to_dev(x, TE, "x"), dw = to_dev(wT.data(), wT.size() * 4, "w"), dout = to_dev(nullptr, TE, "out"),
           ds = to_dev(state, SB, "state"), tab = one_seq(T), db;
    if (bias) db = to_dev(bias, (size_t)E * 4, "bias");
    conv1d(dx.f(), E, dout.f(), E, dw.f(), bias ? db.f() : nullptr, E, K, static_cast<const SeqInfo*>(tab.get()), 1, T,
           StateRef{.base = ds.f(), .stride = (size_t)E * (K - 1)}, 0);
    check(cudaDeviceSynchronize(), "conv1d");
    to_host(out, dout, TE, "out");
    to_host(state, ds, SB, "state");
  });
}

simba_status_t bench_scan_c(int n_seq, int T, int E, int N, int iters, double* scan_ms, double* scan_bytes,
                            double* copy_gbs, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    simba::cuda::bench_scan(n_seq, T, E, N, iters, scan_ms, scan_bytes, copy_gbs);
  });
}

simba_status_t kernel_rmsnorm(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps,
                              char* err, size_t err_len) {
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

simba_status_t kernel_ssd_scan(const float* x, float* dt, const float* dt_bias, const float* A_log, const float* B,
                               const float* C, const float* D, float* state, float* y, int T, int H, int P, int G,
                               int N, float dt_min, float dt_max, int chunk_parallel, char* err, size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t TE = (size_t)T * H * P * 4, TG = (size_t)T * G * N * 4, TH = (size_t)T * H * 4, HB = (size_t)H * 4,
                 SB = (size_t)H * P * N * 4;
    auto A = relayout(simba::Layout::kNegExp, A_log, H, 1);
    DevBuf dx = to_dev(x, TE, "x"), ddt = to_dev(dt, TH, "dt"), dbias = to_dev(dt_bias, HB, "dt_bias"),
           dA = to_dev(A.data(), HB, "A"), dB = to_dev(B, TG, "B"), dC = to_dev(C, TG, "C"), dD = to_dev(D, HB, "D"),
           ds = to_dev(state, SB, "state"), dy = to_dev(nullptr, TE, "y"), tab = one_seq(T),
           chunks = to_dev(nullptr, chunk_parallel ? ssd_chunk_buffer_floats(T, 1, H, P, N) * 4 : 0, "chunk states");
    ssd_dt(ddt.f(), H, dbias.f(), T, H, dt_min, dt_max, 0);
    ssd_scan({.x = dx.f(),
              .ldx = H * P,
              .B = dB.f(),
              .C = dC.f(),
              .ldbc = G * N,
              .dt = ddt.f(),
              .lddt = H,
              .A = dA.f(),
              .D = dD.f(),
              .y = dy.f(),
              .ldy = H * P,
              .H = H,
              .P = P,
              .G = G,
              .N = N,
              .ssm = {.base = ds.f(), .stride = SB / 4},
              .seqs = static_cast<const SeqInfo*>(tab.get()),
              .nseq = 1,
              .maxT = T,
              .rows = T,
              .chunk_states = chunks.f(),
              .chunk_floats = chunks.bytes() / 4},
             0);
    check(cudaDeviceSynchronize(), "ssd scan");
    to_host(y, dy, TE, "y");
    to_host(dt, ddt, TH, "dt");
    to_host(state, ds, SB, "state");
  });
}

simba_status_t kernel_ssd_score(const float* x, const float* dt, const float* A_log, const float* B, const float* C,
                                float* score, int T, int H, int P, int G, int N, int local, int reduce_sum, char* err,
                                size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t TG = (size_t)T * G * N * 4, TH = (size_t)T * H * 4;
    auto A = relayout(simba::Layout::kNegExp, A_log, H, 1);
    DevBuf dx = to_dev(x, (size_t)T * H * P * 4, "x"), ddt = to_dev(dt, TH, "dt"), dB = to_dev(B, TG, "B"),
           dC = to_dev(C, TG, "C"), dA = to_dev(A.data(), (size_t)H * 4, "A"), ddecay = to_dev(nullptr, TH, "decay"),
           dsc = to_dev(nullptr, (size_t)T * 4, "score"), tab = one_seq(T);
    ssd_score({.x = dx.f(),
               .ldx = H * P,
               .dt = ddt.f(),
               .lddt = H,
               .B = dB.f(),
               .C = dC.f(),
               .ldbc = G * N,
               .A = dA.f(),
               .H = H,
               .P = P,
               .G = G,
               .N = N,
               .local = local != 0,
               .reduce_sum = reduce_sum != 0,
               .seqs = static_cast<const SeqInfo*>(tab.get()),
               .nseq = 1,
               .maxT = T,
               .rows = T,
               .decay = ddecay.f(),
               .score = dsc.f()},
              0);
    check(cudaDeviceSynchronize(), "ssd score");
    to_host(score, dsc, (size_t)T * 4, "score");
  });
}

simba_status_t kernel_gated_norm(float* y, const float* z, const float* w, int rows, int E, int G, float eps, char* err,
                                 size_t err_len) {
  return guard(err, err_len, [&] {
    check(cudaSetDevice(0), "cudaSetDevice");
    const size_t YB = (size_t)rows * E * 4;
    DevBuf dy = to_dev(y, YB, "y"), dz = to_dev(z, YB, "z"), dw = to_dev(w, (size_t)E * 4, "w");
    gated_norm(dy.f(), E, dz.f(), E, dw.f(), rows, E, G, eps, 0);
    check(cudaDeviceSynchronize(), "gated norm");
    to_host(y, dy, YB, "y");
  });
}

simba_status_t state_alloc(simba_model* m, int32_t* slot, char* err, size_t err_len) {
  return guard(err, err_len, [&] { *slot = m->m->state_alloc(); });
}
simba_status_t state_free(simba_model* m, int32_t slot, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->state_free(slot); });
}
simba_status_t state_read(simba_model* m, int32_t slot, float* dst, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->state_read(slot, dst); });
}
simba_status_t state_write(simba_model* m, int32_t slot, const float* src, char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->state_write(slot, src); });
}
simba_status_t forward_slots(simba_model* m, const simba_forward_t* req, const int32_t* slots, simba_result_t* res,
                             char* err, size_t err_len) {
  return guard(err, err_len, [&] { m->m->forward_slots(*req, slots, *res); });
}

const simba_backend_v1_t kTable = {
    .abi_version = 4,
    .name = "cuda",
    .probe = probe,
    .create = create,
    .set_tensor = set_tensor,
    .randomize = randomize,
    .finalize = finalize,
    .forward = forward,
    .weight_bytes = weight_bytes,
    .destroy = destroy,
    .kernel_gemm = kernel_gemm,
    .kernel_scan = kernel_scan,
    .kernel_score = kernel_score,
    .kernel_conv1d = kernel_conv1d,
    .bench_scan = bench_scan_c,
    .kernel_rmsnorm = kernel_rmsnorm,
    .state_alloc = state_alloc,
    .state_free = state_free,
    .state_read = state_read,
    .state_write = state_write,
    .forward_slots = forward_slots,
    .kernel_ssd_scan = kernel_ssd_scan,
    .kernel_ssd_score = kernel_ssd_score,
    .kernel_gated_norm = kernel_gated_norm,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const simba_backend_v1_t* simba_backend_v1(void) { return &kTable; }
extern "C" __attribute__((visibility("default"))) size_t simba_backend_v1_size(void) { return sizeof kTable; }
