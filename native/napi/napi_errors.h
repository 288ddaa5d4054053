// napi_errors.h — JS errors with a `code` (err.code: 'E_ARG', 'E_TOKEN', ... the names of
// lib/errors.ts SIMBA_ERROR_CODES), made from a simba::Error's class or named at the throw site.
// lib/errors.ts fromNative() takes the code from here; nothing reads the message to classify it.
#pragma once
#include <napi.h>

#include <exception>
#include <string>

#include "common/errors.h"

namespace simba {

// new Error(message) with err.code = code (a TypeError when type_error: wrong JS argument types).
inline Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message, bool type_error = false) {
  Napi::Error e =
      type_error ? static_cast<Napi::Error>(Napi::TypeError::New(env, message)) : Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code));
  return e;
}
inline Napi::Error CodedError(Napi::Env env, simba_status_t code, const std::string& message) {
  return CodedError(env, status_name(code), message);
}
// A bad argument from JavaScript (wrong type, length or range): a TypeError with code E_ARG.
inline Napi::Error ArgError(Napi::Env env, const std::string& message) {
  return CodedError(env, "E_ARG", message, true);
}
// A caught C++ exception as a JS error of its class (simba::status_of).
inline Napi::Error NativeError(Napi::Env env, const std::exception& e) {
  return CodedError(env, status_of(e), e.what());
}

}  // namespace simba
