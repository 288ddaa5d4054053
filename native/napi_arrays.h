// napi_arrays.h — typed-array helpers shared by the kernel test bindings (kernel_bindings.cc,
// cuda_bindings.cc): read a Float32Array of an exact length, an integer field, return a copy.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

namespace simba {

inline std::vector<float> F32(const Napi::Value& v, size_t n, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != n)
    throw Napi::RangeError::New(v.Env(), std::string(what) + ": expected " + std::to_string(n) + " values, got " + std::to_string(a.ElementLength()));
  return std::vector<float>(a.Data(), a.Data() + n);
}

inline int Int(const Napi::Object& o, const char* k) { return o.Get(k).ToNumber().Int32Value(); }

inline Napi::Float32Array Out(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

}  // namespace simba
