// mapped_tensor.cc — see mapped_tensor.h.
#include "engine/mapped_tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "common/errors.h"
#include "cpu/threadpool.h"

namespace simba {

namespace {

// Whether a chunk of kChunk floats holds a NaN / Inf (all exponent bits set). A constant trip
// count and a branch-free test, so -O2 vectorises it.
constexpr size_t kChunk = 4096;
bool chunk_has_nonfinite(const uint32_t* u) {
  uint32_t any = 0;
  for (size_t i = 0; i < kChunk; i++) any |= (u[i] & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
  return any != 0;
}

// Index of the first NaN / Inf in x[0, n), or -1. Chunks are tested on the thread pool (the read
// of a large tensor is bound by memory bandwidth, which one core does not reach); only a chunk
// that has one is searched element by element.
int64_t first_nonfinite(const float* x, size_t n) {
  const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
  const size_t full = n / kChunk;
  std::atomic<size_t> first_chunk{SIZE_MAX};  // lowest chunk found to hold one
  auto scan = [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1 && c < first_chunk.load(std::memory_order_relaxed); c++)
      if (chunk_has_nonfinite(u + c * kChunk)) {
        size_t cur = first_chunk.load();
        while (c < cur && !first_chunk.compare_exchange_weak(cur, c)) {}
        return;
      }
  };
  if (full >= 64 && full <= (size_t)INT32_MAX) {
    cpu::ThreadPool::global().run_dynamic((int)full, [&](int, int b, int e) { scan((size_t)b, (size_t)e); });
  } else {
    scan(0, full);
  }
  const size_t from = first_chunk.load() == SIZE_MAX ? full * kChunk : first_chunk.load() * kChunk;
  const size_t to = first_chunk.load() == SIZE_MAX ? n : from + kChunk;
  for (size_t i = from; i < to; i++)
    if (!std::isfinite(x[i])) return (int64_t)i;
  return -1;
}

// Read-only mapping of [offset, offset + bytes) of a file, page-aligned underneath.
class Mapping {
 public:
  Mapping(const std::string& file, uint64_t offset, uint64_t bytes) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(SIMBA_E_WEIGHTS, file + ": cannot open (" + std::strerror(errno) + ")");
    struct stat st;
    if (::fstat(fd, &st) != 0 || (uint64_t)st.st_size < offset + bytes) {
      ::close(fd);
      fail(SIMBA_E_WEIGHTS,
           file + ": file is shorter than the tensor data it declares (" + std::to_string(offset + bytes) + " bytes)");
    }
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    base_off_ = offset / page * page;
    len_ = (size_t)(offset + bytes - base_off_);
    if (len_ == 0) {
      ::close(fd);
      return;
    }
    base_ = ::mmap(nullptr, len_, PROT_READ, MAP_PRIVATE, fd, (off_t)base_off_);
    ::close(fd);  // the mapping keeps the file
    if (base_ == MAP_FAILED) {
      base_ = nullptr;
      fail(SIMBA_E_WEIGHTS, file + ": mmap failed (" + std::strerror(errno) + ")");
    }
    ::madvise(base_, len_, MADV_SEQUENTIAL | MADV_WILLNEED);
    data_ = static_cast<const char*>(base_) + (offset - base_off_);
  }
  ~Mapping() {
    if (base_) ::munmap(base_, len_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const char* data() const { return data_; }

 private:
  void* base_ = nullptr;
  size_t len_ = 0;
  uint64_t base_off_ = 0;
  const char* data_ = nullptr;
};

}  // namespace

size_t conversion_floats(const MappedTensorRef& t) {
  const size_t n = t.pad_to > t.count ? t.pad_to : t.count;
  // F32 at a 4-byte aligned offset (safetensors aligns data to 8 in practice, GGUF to 32) is used in
  // place: the mapping starts on a page, so the data's alignment is the offset's.
  const bool in_place =
      t.dtype == FileDType::F32 && n == t.count && t.transform == ValueTransform::None && t.offset % 4 == 0;
  return in_place ? 0 : n;
}

MappedTensorCheck with_mapped_tensor(const MappedTensorRef& t, const std::function<void(const float*, size_t)>& use,
                                     ConvScratch* scratch) {
  const size_t belems = file_dtype_block_elems(t.dtype), bbytes = file_dtype_block_bytes(t.dtype);
  if (t.count % belems != 0 || t.bytes != (uint64_t)(t.count / belems) * bbytes)
    fail(SIMBA_E_ARG, t.file + ": tensor byte length does not match its element count and type");
  const size_t n = t.pad_to > t.count ? t.pad_to : t.count;
  Mapping map(t.file, t.offset, t.bytes);
  const char* p = map.data();
  const bool in_place = conversion_floats(t) == 0;
  ConvScratch own;
  const float* f = reinterpret_cast<const float*>(p);
  if (!in_place) {
    float* conv = (scratch ? scratch : &own)->get(n);
    dequantize_blocks_parallel(t.dtype, reinterpret_cast<const uint8_t*>(p), conv, t.count / belems);
    std::fill(conv + t.count, conv + n, 0.f);  // padded vocabulary rows
    if (t.transform == ValueTransform::LogOfNegated)
      for (size_t i = 0; i < t.count; i++) conv[i] = std::log(-conv[i]);
    f = conv;
  }
  MappedTensorCheck r;
  if (t.check_finite) {
    const int64_t i = first_nonfinite(f, t.count);
    if (i >= 0) {
      r.first_bad = i;
      r.bad_value = f[i];
      return r;
    }
  }
  use(f, n);
  return r;
}

}  // namespace simba
