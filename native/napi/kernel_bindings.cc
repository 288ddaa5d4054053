// kernel_bindings.cc — synchronous entry points to single kernels, for the tests that compare each
// kernel with a float64 reference on random inputs (test/kernels.test.ts). Small inputs only:
// these run on the calling thread's event loop turn.
#include <napi.h>

#include "napi/napi_arrays.h"

#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/gguf_dequant.h"
#include "engine/model.h"

namespace simba {

void register_bench_bindings(Napi::Env env, Napi::Object kernels);         // bench_bindings.cc
cpu::WeightFormat weight_format_arg(Napi::Env env, const Napi::Value& v);  // bench_bindings.cc

namespace {

// A kernel entry point whose C++ exceptions (a failed SIMBA_ASSERT precondition, E_NATIVE; memory,
// E_OOM) become JS errors with their code.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) { throw; } catch (const std::exception& e) {
    throw NativeError(info.Env(), e);
  }
}

// gemm({A, W, bias?, M, N, K, bf16?, format?: 'f32' | 'bf16' | 'int8' | 'int4'}) -> C [M, N] = A W^T (+bias)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const int M = Int(o, "M"), N = Int(o, "N"), K = Int(o, "K");
  auto A = F32(o.Get("A"), (size_t)M * K, "A");
  auto W = F32(o.Get("W"), (size_t)N * K, "W");
  std::vector<float> bias;
  if (o.Has("bias") && o.Get("bias").IsTypedArray()) bias = F32(o.Get("bias"), N, "bias");
  const cpu::WeightFormat format = o.Has("format")             ? weight_format_arg(env, o.Get("format"))
                                   : o.Get("bf16").ToBoolean() ? cpu::WeightFormat::BF16
                                                               : cpu::WeightFormat::F32;
  Linear lin;
  pack_linear(lin, W.data(), N, K, format);
  std::vector<float> C((size_t)M * N);
  cpu::gemm(A.data(), K, lin.w, bias.empty() ? nullptr : bias.data(), C.data(), N, M);
  return Out(env, C);
}

// readPacked({W, N, K, format}) -> W [N, K] as the GEMM sees it: packed in the format, read back
// (PackedWeight::at; int8 and int4 show their quantization).
Napi::Value ReadPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const int N = Int(o, "N"), K = Int(o, "K");
  auto W = F32(o.Get("W"), (size_t)N * K, "W");
  Linear lin;
  pack_linear(lin, W.data(), N, K, weight_format_arg(env, o.Get("format")));
  std::vector<float> out((size_t)N * K);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) out[(size_t)n * K + k] = lin.w.at(n, k);
  return Out(env, out);
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
  apply_layout(Layout::kTransposed, w.data(), E, K, wT.data());  // conv_w's layout (tensor_table.h)
  cpu::SeqSlice sq{.row0 = 0, .T = T, .conv = state.data(), .ssm = nullptr};
  cpu::conv1d({.xin = x.data(),
               .ldx = E,
               .out = out.data(),
               .ldo = E,
               .wT = wT.data(),
               .bias = bias.empty() ? nullptr : bias.data(),
               .E = E,
               .K = K,
               .seqs = &sq,
               .nseq = 1});
  Napi::Object r = Napi::Object::New(env);
  r.Set("out", Out(env, out));
  r.Set("state", Out(env, state));
  return r;
}

// Scan/score inputs with A = -exp(A_log) transposed to [N][E], as the kernels take it.
// And A itself in the state's [E][N] layout (the decode scan reads that one).
struct ScanInputs : ScanTensors {
  std::vector<float> AT, A;
};
ScanInputs ReadScan(const Napi::Object& o) {
  ScanInputs s;
  static_cast<ScanTensors&>(s) = ReadScanTensors(o);
  s.AT.resize((size_t)s.N * s.E);
  apply_layout(Layout::kNegExpTransposed, s.A_log.data(), s.E, s.N, s.AT.data());  // A_log's layout (tensor_table.h)
  s.A.resize((size_t)s.E * s.N);
  apply_layout(Layout::kTransposed, s.AT.data(), s.N, s.E, s.A.data());  // back to [E][N]
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
  cpu::SeqSlice sq{.row0 = 0, .T = s.T, .conv = nullptr, .ssm = state.data()};
  cpu::scan({.x = s.x.data(),
             .ldx = s.E,
             .dt = s.dt.data(),
             .lddt = s.E,
             .B = s.B.data(),
             .C = s.C.data(),
             .ldbc = s.N,
             .z = z.data(),
             .ldz = s.E,
             .AT = s.AT.data(),
             .A = s.A.data(),
             .D = D.data(),
             .y = y.data(),
             .ldy = s.E,
             .E = s.E,
             .N = s.N,
             .seqs = &sq,
             .nseq = 1});
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
  cpu::SeqSlice sq{.row0 = 0, .T = s.T, .conv = nullptr, .ssm = nullptr};
  std::vector<float> out(s.T);
  cpu::score({.x = s.x.data(),
              .ldx = s.E,
              .dt = s.dt.data(),
              .lddt = s.E,
              .B = s.B.data(),
              .C = s.C.data(),
              .ldbc = s.N,
              .AT = s.AT.data(),
              .E = s.E,
              .N = s.N,
              .local = o.Get("local").ToBoolean(),
              .reduce_sum = o.Get("reduceSum").ToBoolean(),
              .seqs = &sq,
              .nseq = 1,
              .partial = nullptr},
             out.data(), s.T);
  return Out(env, out);
}

// dequantize({type: 'Q4_K' | ..., bytes: Uint8Array}) -> Float32Array: whole blocks of a GGUF type
// to f32 (cpu/gguf_dequant.h), for the tests that check llama.cpp's formulas.
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string type = o.Get("type").ToString().Utf8Value();
  FileDType t;
  if (!file_dtype_from_name(type.c_str(), &t)) throw ArgError(env, "dequantize: unknown type '" + type + "'");
  const Napi::Value b = o.Get("bytes");
  if (!b.IsTypedArray() || b.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw ArgError(env, "dequantize: bytes must be a Uint8Array");
  auto bytes = b.As<Napi::Uint8Array>();
  const size_t bb = file_dtype_block_bytes(t);
  if (bytes.ElementLength() % bb != 0)
    throw ArgError(env, "dequantize: " + std::to_string(bytes.ElementLength()) + " bytes are not whole " + type +
                            " blocks of " + std::to_string(bb));
  const size_t nblocks = bytes.ElementLength() / bb;
  std::vector<float> out(nblocks * file_dtype_block_elems(t));
  dequantize_blocks_parallel(t, bytes.Data(), out.data(), nblocks);
  return Out(env, out);
}

}  // namespace

void register_kernel_bindings(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("gemm", Napi::Function::New(env, Guarded<Gemm>));
  k.Set("readPacked", Napi::Function::New(env, Guarded<ReadPacked>));
  k.Set("rmsnorm", Napi::Function::New(env, Guarded<RmsNorm>));
  k.Set("conv1d", Napi::Function::New(env, Guarded<Conv1d>));
  k.Set("scan", Napi::Function::New(env, Guarded<Scan>));
  k.Set("score", Napi::Function::New(env, Guarded<Score>));
  k.Set("dequantize", Napi::Function::New(env, Guarded<Dequantize>));
  register_bench_bindings(env, k);
  exports.Set("kernels", k);
}

}  // namespace simba
