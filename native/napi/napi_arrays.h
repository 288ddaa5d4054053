// napi_arrays.h — typed-array helpers shared by the kernel test bindings (kernel_bindings.cc,
// cuda_bindings.cc): read a Float32Array of an exact length, an integer field, return a copy.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "napi/napi_errors.h"

namespace simba {

inline std::vector<float> F32(const Napi::Value& v, size_t n, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw ArgError(v.Env(), std::string(what) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != n)
    throw ArgError(v.Env(), std::string(what) + ": expected " + std::to_string(n) + " values, got " +
                                std::to_string(a.ElementLength()));
  return std::vector<float>(a.Data(), a.Data() + n);
}

// A size field: a non-negative integer (a negative one would wrap in the size_t length checks).
inline int Int(const Napi::Object& o, const char* k) {
  const double v = o.Get(k).ToNumber().DoubleValue();
  if (!(v >= 0 && v <= 2147483647.0) || v != std::floor(v))
    throw ArgError(o.Env(), std::string(k) + " must be a non-negative integer");
  return (int)v;
}

inline Napi::Float32Array Out(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

// The inputs that the scan and score test hooks share: sizes T, E, N and x, dt [T, E], A_log [E, N],
// B, C [T, N] (raw, as the caller passed them).
struct ScanTensors {
  int T, E, N;
  std::vector<float> x, dt, A_log, B, C;
};

inline ScanTensors ReadScanTensors(const Napi::Object& o) {
  ScanTensors s;
  s.T = Int(o, "T");
  s.E = Int(o, "E");
  s.N = Int(o, "N");
  if (s.T <= 0 || s.E <= 0 || s.N <= 0) throw ArgError(o.Env(), "sizes must be positive integers");
  s.x = F32(o.Get("x"), (size_t)s.T * s.E, "x");
  s.dt = F32(o.Get("dt"), (size_t)s.T * s.E, "dt");
  s.A_log = F32(o.Get("A_log"), (size_t)s.E * s.N, "A_log");
  s.B = F32(o.Get("B"), (size_t)s.T * s.N, "B");
  s.C = F32(o.Get("C"), (size_t)s.T * s.N, "C");
  return s;
}

}  // namespace simba
