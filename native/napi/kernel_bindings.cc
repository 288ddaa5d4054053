// kernel_bindings.cc — synchronous entry points to single kernels, for the tests that compare each
// kernel with a float64 reference on random inputs (test/kernels.test.ts). Small inputs only:
// these run on the calling thread's event loop turn.
#include <napi.h>

#include "napi/napi_arrays.h"

#include <cmath>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "engine/model.h"

namespace simba {

void register_bench_bindings(Napi::Env env, Napi::Object kernels);        // bench_bindings.cc
cpu::WeightFormat weight_format_arg(Napi::Env env, const Napi::Value& v);  // bench_bindings.cc

namespace {

template <typename F>
Napi::Value Guard(Napi::Env env, F f) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// gemm({A, W, bias?, M, N, K, bf16?, format?: 'f32' | 'bf16' | 'int8'}) -> C [M, N] = A W^T (+bias)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const int M = Int(o, "M"), N = Int(o, "N"), K = Int(o, "K");
  auto A = F32(o.Get("A"), (size_t)M * K, "A");
  auto W = F32(o.Get("W"), (size_t)N * K, "W");
  std::vector<float> bias;
  if (o.Has("bias") && o.Get("bias").IsTypedArray()) bias = F32(o.Get("bias"), N, "bias");
  const cpu::WeightFormat format = o.Has("format") ? weight_format_arg(env, o.Get("format"))
                                   : o.Get("bf16").ToBoolean() ? cpu::WeightFormat::BF16 : cpu::WeightFormat::F32;
  return Guard(env, [&]() -> Napi::Value {
    Linear lin;
    pack_linear(lin, W.data(), N, K, format);
    std::vector<float> C((size_t)M * N);
    cpu::gemm(A.data(), K, lin.w, bias.empty() ? nullptr : bias.data(), C.data(), N, M);
    return Out(env, C);
  });
}

// rmsnorm({x, w, rows, d, eps}) -> y
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const int rows = Int(o, "rows"), d = Int(o, "d");
  auto x = F32(o.Get("x"), (size_t)rows * d, "x");
  auto w = F32(o.Get("w"), d, "w");
  std::vector<float> y((size_t)rows * d);
  cpu::rmsnorm(x.data(), d, w.data(), y.data(), d, rows, d, o.Get("eps").ToNumber().FloatValue());
  return Out(env, y);
}

// conv1d({x [T,E], w [E,K], bias? [E], state [E,K-1], T, E, K}) -> {out [T,E], state}
Napi::Value Conv1d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const int T = Int(o, "T"), E = Int(o, "E"), K = Int(o, "K");
  auto x = F32(o.Get("x"), (size_t)T * E, "x");
  auto w = F32(o.Get("w"), (size_t)E * K, "w");
  auto state = F32(o.Get("state"), (size_t)E * (K - 1), "state");
  std::vector<float> bias;
  if (o.Get("bias").IsTypedArray()) bias = F32(o.Get("bias"), E, "bias");
  std::vector<float> wT((size_t)K * E), out((size_t)T * E);
  for (int e = 0; e < E; e++) for (int j = 0; j < K; j++) wT[(size_t)j * E + e] = w[(size_t)e * K + j];
  cpu::SeqSlice sq{0, T, state.data(), nullptr};
  cpu::Conv1dArgs a{x.data(), E, out.data(), E, wT.data(), bias.empty() ? nullptr : bias.data(), E, K, &sq, 1};
  cpu::conv1d(a);
  Napi::Object r = Napi::Object::New(env);
  r.Set("out", Out(env, out));
  r.Set("state", Out(env, state));
  return r;
}

// Scan/score inputs with A = -exp(A_log) transposed to [N][E], as the kernels take it.
struct ScanInputs : ScanTensors {
  std::vector<float> AT;
};
ScanInputs ReadScan(const Napi::Object& o) {
  ScanInputs s;
  static_cast<ScanTensors&>(s) = ReadScanTensors(o);
  s.AT.resize((size_t)s.N * s.E);
  for (int e = 0; e < s.E; e++) for (int n = 0; n < s.N; n++) s.AT[(size_t)n * s.E + e] = -std::exp(s.A_log[(size_t)e * s.N + n]);
  return s;
}

// scan({x, dt (raw, before softplus), A_log, B, C, D, z, state [E,N], T, E, N}) -> {y, dt (softplus'd), state}
Napi::Value Scan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  ScanInputs s = ReadScan(o);
  auto D = F32(o.Get("D"), s.E, "D");
  auto z = F32(o.Get("z"), (size_t)s.T * s.E, "z");
  auto state = F32(o.Get("state"), (size_t)s.E * s.N, "state");
  std::vector<float> y((size_t)s.T * s.E);
  cpu::SeqSlice sq{0, s.T, nullptr, state.data()};
  cpu::ScanArgs a{s.x.data(), s.E, s.dt.data(), s.E, s.B.data(), s.C.data(), s.N, z.data(), s.E,
                  s.AT.data(), D.data(), y.data(), s.E, s.E, s.N, &sq, 1};
  cpu::scan(a);
  Napi::Object r = Napi::Object::New(env);
  r.Set("y", Out(env, y));
  r.Set("dt", Out(env, s.dt));
  r.Set("state", Out(env, state));
  return r;
}

// score({x, dt (after softplus), A_log, B, C, T, E, N, local, reduceSum}) -> scores [T]
Napi::Value Score(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  ScanInputs s = ReadScan(o);
  cpu::SeqSlice sq{0, s.T, nullptr, nullptr};
  cpu::ScoreArgs a{s.x.data(), s.E, s.dt.data(), s.E, s.B.data(), s.C.data(), s.N, s.AT.data(), s.E, s.N,
                   o.Get("local").ToBoolean(), o.Get("reduceSum").ToBoolean(), &sq, 1, nullptr};
  std::vector<float> out(s.T);
  cpu::score(a, out.data(), s.T);
  return Out(env, out);
}

}  // namespace

void register_kernel_bindings(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("gemm", Napi::Function::New(env, Gemm));
  k.Set("rmsnorm", Napi::Function::New(env, RmsNorm));
  k.Set("conv1d", Napi::Function::New(env, Conv1d));
  k.Set("scan", Napi::Function::New(env, Scan));
  k.Set("score", Napi::Function::New(env, Score));
  register_bench_bindings(env, k);
  exports.Set("kernels", k);
}

}  // namespace simba
