// errors.h — the one native error type: simba::Error, a message with a class (simba_status_t of
// backend_api.h, whose names are the `code`s of lib/errors.ts). Every throw in the kernels, the
// engines, the CUDA backend and the addon is a simba::Error, so the class travels as a number
// through the C ABI and as `err.code` to JavaScript; nothing downstream reads the message to
// classify it.
// Header-only and free of both engines' types: the CUDA library is built separately.
#pragma once
#include <new>
#include <stdexcept>
#include <string>

#include "common/backend_api.h"

namespace simba {

class Error : public std::runtime_error {
 public:
  Error(simba_status_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  simba_status_t code() const { return code_; }

 private:
  simba_status_t code_;
};

// Throws Error(code, message).
[[noreturn]] inline void fail(simba_status_t code, const std::string& message) { throw Error(code, message); }

// The class of a caught exception: its own for a simba::Error, E_OOM for std::bad_alloc (a failed
// std::vector growth), E_NATIVE for anything else.
inline simba_status_t status_of(const std::exception& e) {
  if (const auto* s = dynamic_cast<const Error*>(&e)) return s->code();
  if (dynamic_cast<const std::bad_alloc*>(&e)) return SIMBA_E_OOM;
  return SIMBA_E_NATIVE;
}

// "E_ARG", "E_TOKEN", ... (lib/errors.ts SIMBA_ERROR_CODES); "E_NATIVE" for an unknown value.
inline const char* status_name(simba_status_t code) {
  switch (code) {
    case SIMBA_E_ARG: return "E_ARG";
    case SIMBA_E_TOKEN: return "E_TOKEN";
    case SIMBA_E_SHAPE: return "E_SHAPE";
    case SIMBA_E_WEIGHTS: return "E_WEIGHTS";
    case SIMBA_E_CONFIG: return "E_CONFIG";
    case SIMBA_E_OOM: return "E_OOM";
    case SIMBA_E_CUDA: return "E_CUDA";
    case SIMBA_E_ABORTED: return "E_ABORTED";
    default: return "E_NATIVE";
  }
}

}  // namespace simba

// Precondition of a kernel entry point (in the style of GGML_ASSERT, but throwing an E_NATIVE
// simba::Error naming the file, line and condition instead of aborting: the addon lives inside a
// Node.js process). Callers validate user input before; a failing assert is a bug in the caller.
#define SIMBA_ASSERT(cond)                                                                                     \
  do {                                                                                                         \
    if (!(cond))                                                                                               \
      ::simba::fail(SIMBA_E_NATIVE,                                                                            \
                    std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": precondition failed: " #cond); \
  } while (0)
