// cuda_bindings.cc — N-API surface of the CUDA backend: cudaAvailable() and cudaKernels, the
// single-kernel entry points that mirror `kernels` (kernel_bindings.cc) for the CUDA-vs-CPU tests,
// plus benchScan for bench/gpu.sh. Synchronous and small: test and benchmark use only.
#include <napi.h>

#include "napi/napi_arrays.h"

#include <string>
#include <vector>

#include "engine/cuda_loader.h"

namespace simba {

namespace {

const simba_backend_v1_t& Backend(Napi::Env env) {
  try {
    return cuda_backend();
  } catch (const std::exception& e) { throw NativeError(env, e); }
}

void Check(Napi::Env env, simba_status_t rc, const char* err) {
  if (rc != SIMBA_OK) throw CodedError(env, rc, std::string("CUDA: ") + err);
}

void PositiveSizes(Napi::Env env, std::initializer_list<int> v) {
  for (int x : v)
    if (x <= 0) throw ArgError(env, "sizes must be positive integers");
}

// cudaAvailable() -> {available, reason, device?}
Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  const CudaStatus& s = cuda_status();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("available", s.available);
  o.Set("reason", s.reason);
  if (s.available) {
    o.Set("device", s.device);
    o.Set("library", s.library);
  }
  return o;
}

// gemm({A, W, bias?, M, N, K, bf16}) -> C [M, N] = A W^T (+bias)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& b = Backend(env);
  Napi::Object o = info[0].As<Napi::Object>();
  const int M = Int(o, "M"), N = Int(o, "N"), K = Int(o, "K");
  PositiveSizes(env, {M, N, K});
  auto A = F32(o.Get("A"), (size_t)M * K, "A");
  auto W = F32(o.Get("W"), (size_t)N * K, "W");
  std::vector<float> bias;
  if (o.Has("bias") && o.Get("bias").IsTypedArray()) bias = F32(o.Get("bias"), N, "bias");
  std::vector<float> C((size_t)M * N);
  char err[1024] = {0};
  Check(env,
        b.kernel_gemm(A.data(), W.data(), bias.empty() ? nullptr : bias.data(), C.data(), M, N, K,
                      o.Get("bf16").ToBoolean() ? 1 : 0, err, sizeof err),
        err);
  return Out(env, C);
}

// conv1d({x [T,E], w [E,K], bias? [E], state [E,K-1], T, E, K}) -> {out [T,E], state}
Napi::Value Conv1d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& b = Backend(env);
  Napi::Object o = info[0].As<Napi::Object>();
  const int T = Int(o, "T"), E = Int(o, "E"), K = Int(o, "K");
  PositiveSizes(env, {T, E, K});
  auto x = F32(o.Get("x"), (size_t)T * E, "x");
  auto w = F32(o.Get("w"), (size_t)E * K, "w");
  auto state = F32(o.Get("state"), (size_t)E * (K - 1), "state");
  std::vector<float> bias;
  if (o.Get("bias").IsTypedArray()) bias = F32(o.Get("bias"), E, "bias");
  std::vector<float> out((size_t)T * E);
  char err[1024] = {0};
  Check(env,
        b.kernel_conv1d(x.data(), w.data(), bias.empty() ? nullptr : bias.data(), state.data(), out.data(), T, E, K,
                        err, sizeof err),
        err);
  Napi::Object r = Napi::Object::New(env);
  r.Set("out", Out(env, out));
  r.Set("state", Out(env, state));
  return r;
}

// scan({x, dt (raw), A_log, B, C, D, z, state [E,N], T, E, N}) -> {y, dt (softplus'd), state}
Napi::Value Scan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& b = Backend(env);
  Napi::Object o = info[0].As<Napi::Object>();
  ScanTensors s = ReadScanTensors(o);
  const int T = s.T, E = s.E, N = s.N;
  auto &x = s.x, &dt = s.dt, &alog = s.A_log, &B = s.B, &C = s.C;
  auto D = F32(o.Get("D"), E, "D");
  auto z = F32(o.Get("z"), (size_t)T * E, "z");
  auto state = F32(o.Get("state"), (size_t)E * N, "state");
  std::vector<float> y((size_t)T * E);
  char err[1024] = {0};
  Check(env,
        b.kernel_scan(x.data(), dt.data(), alog.data(), B.data(), C.data(), D.data(), z.data(), state.data(), y.data(),
                      T, E, N, err, sizeof err),
        err);
  Napi::Object r = Napi::Object::New(env);
  r.Set("y", Out(env, y));
  r.Set("dt", Out(env, dt));
  r.Set("state", Out(env, state));
  return r;
}

// score({x, dt (after softplus), A_log, B, C, T, E, N, local, reduceSum}) -> scores [T]
Napi::Value Score(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& b = Backend(env);
  Napi::Object o = info[0].As<Napi::Object>();
  ScanTensors s = ReadScanTensors(o);
  const int T = s.T, E = s.E, N = s.N;
  auto &x = s.x, &dt = s.dt, &alog = s.A_log, &B = s.B, &C = s.C;
  std::vector<float> out(T);
  char err[1024] = {0};
  Check(env,
        b.kernel_score(x.data(), dt.data(), alog.data(), B.data(), C.data(), out.data(), T, E, N,
                       o.Get("local").ToBoolean() ? 1 : 0, o.Get("reduceSum").ToBoolean() ? 1 : 0, err, sizeof err),
        err);
  return Out(env, out);
}

// benchScan({nSeq, T, E, N, iters}) -> {scanMs, scanBytes, copyGBs}
Napi::Value BenchScan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& b = Backend(env);
  Napi::Object o = info[0].As<Napi::Object>();
  double ms = 0, bytes = 0, gbs = 0;
  char err[1024] = {0};
  Check(env,
        b.bench_scan(Int(o, "nSeq"), Int(o, "T"), Int(o, "E"), Int(o, "N"), Int(o, "iters"), &ms, &bytes, &gbs, err,
                     sizeof err),
        err);
  Napi::Object r = Napi::Object::New(env);
  r.Set("scanMs", ms);
  r.Set("scanBytes", bytes);
  r.Set("copyGBs", gbs);
  return r;
}

}  // namespace

void register_cuda_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaAvailable", Napi::Function::New(env, CudaAvailable));
  Napi::Object k = Napi::Object::New(env);
  k.Set("gemm", Napi::Function::New(env, Gemm));
  k.Set("conv1d", Napi::Function::New(env, Conv1d));
  k.Set("scan", Napi::Function::New(env, Scan));
  k.Set("score", Napi::Function::New(env, Score));
  k.Set("benchScan", Napi::Function::New(env, BenchScan));
  exports.Set("cudaKernels", k);
}

}  // namespace simba
