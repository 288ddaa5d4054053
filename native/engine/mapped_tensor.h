// mapped_tensor.h — one checkpoint tensor read straight from its safetensors or GGUF file through
// mmap (no copy through JavaScript): F32 data is handed to the engine in place, F16 / BF16 and
// GGUF's blocks (cpu/gguf_dequant.h) converted to f32 one tensor at a time. The mapping is dropped as soon as the
// tensor is packed, so peak memory stays at the packed weights plus at most one tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cpu/gguf_dequant.h"

namespace simba {

// A conversion applied to the f32 values before they are handed over.
enum class ValueTransform {
  None,
  LogOfNegated,  // x -> log(-x): GGUF stores Mamba's A = -exp(A_log); the engine takes A_log
};

struct MappedTensorRef {
  std::string file;
  uint64_t offset = 0;  // absolute byte offset of the tensor in the file
  uint64_t bytes = 0;   // its byte length (count / block elements * block bytes)
  FileDType dtype = FileDType::F32;
  size_t count = 0;   // elements stored (a multiple of the dtype's block elements)
  size_t pad_to = 0;  // hand over this many elements, zeros appended (padded vocabulary); 0 = count
  bool check_finite = true;
  ValueTransform transform = ValueTransform::None;
};

// What with_mapped_tensor found: first_bad < 0 when every value is finite (or not checked), else
// the flat index and value of the first NaN / Inf (and use was not called).
struct MappedTensorCheck {
  int64_t first_bad = -1;
  float bad_value = 0.f;
};

// The f32 buffer conversions write into, kept across the tensors of one load: its pages are faulted
// in once per size it takes, not once per tensor. The load shrinks it to the largest conversion
// still to come (shrink_to), so a vocabulary-sized buffer (1 GB for a 7B model's embedding and
// head) is not held while the layers' smaller matrices pile up.
class ConvScratch {
 public:
  float* get(size_t n) {
    if (n > cap_) {
      buf_.reset();  // free the old one first: peak memory is one buffer
      buf_.reset(new float[n]);
      cap_ = n;
    }
    return buf_.get();
  }
  // Frees the buffer if it holds more than n floats (the next get allocates what it needs).
  void shrink_to(size_t n) {
    if (cap_ > n) {
      buf_.reset();
      cap_ = 0;
    }
  }

 private:
  std::unique_ptr<float[]> buf_;
  size_t cap_ = 0;
};

// The floats a tensor is converted into (its padded count), or 0 when its F32 data is used in place.
size_t conversion_floats(const MappedTensorRef& t);

// Maps the tensor's bytes, checks finiteness if asked, calls use(f32 data, element count) and
// unmaps. Throws std::runtime_error naming the file on I/O errors (missing file, short file).
// Conversions go to `scratch` (a buffer of its own when null).
MappedTensorCheck with_mapped_tensor(const MappedTensorRef& t, const std::function<void(const float*, size_t)>& use,
                                     ConvScratch* scratch = nullptr);

}  // namespace simba
