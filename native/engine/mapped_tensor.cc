// mapped_tensor.cc — see mapped_tensor.h.
#include "engine/mapped_tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/errors.h"

namespace simba {

namespace {

float half_to_f32(uint16_t h) {  // IEEE binary16 -> float, subnormals included
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t u;
  if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
  else if (exp != 0) u = sign | ((exp + 112) << 23) | (man << 13);
  else if (man == 0) u = sign;
  else {  // subnormal: normalise
    int e = -1;
    uint32_t m = man;
    do {
      m <<= 1;
      e++;
    } while (!(m & 0x400));
    u = sign | ((uint32_t)(112 - e) << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float bf16_to_f32(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
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

MappedTensorCheck with_mapped_tensor(const MappedTensorRef& t, const std::function<void(const float*, size_t)>& use) {
  const size_t esize = t.dtype == FileDType::F32 ? 4 : 2;
  if (t.bytes != (uint64_t)t.count * esize)
    fail(SIMBA_E_ARG, t.file + ": tensor byte length does not match its element count");
  const size_t n = t.pad_to > t.count ? t.pad_to : t.count;
  Mapping map(t.file, t.offset, t.bytes);
  const char* p = map.data();
  // F32 at a 4-byte aligned offset (safetensors aligns data to 8 in practice) is used in place.
  const bool in_place = t.dtype == FileDType::F32 && n == t.count && (reinterpret_cast<uintptr_t>(p) & 3) == 0;
  std::vector<float> conv;
  const float* f = reinterpret_cast<const float*>(p);
  if (!in_place) {
    conv.assign(n, 0.f);
    if (t.dtype == FileDType::F32) std::memcpy(conv.data(), p, t.count * 4);
    else {
      const bool f16 = t.dtype == FileDType::F16;
      for (size_t i = 0; i < t.count; i++) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);  // any alignment
        conv[i] = f16 ? half_to_f32(h) : bf16_to_f32(h);
      }
    }
    f = conv.data();
  }
  MappedTensorCheck r;
  if (t.check_finite) {
    // NaN / Inf have all exponent bits set. Chunks of 4096 with a branch-free test (vectorises);
    // only a chunk that has one is searched.
    const uint32_t* u = reinterpret_cast<const uint32_t*>(f);
    for (size_t c0 = 0; c0 < t.count; c0 += 4096) {
      const size_t c1 = std::min(t.count, c0 + 4096);
      uint32_t any = 0;
      for (size_t i = c0; i < c1; i++) any |= (uint32_t)((u[i] & 0x7f800000u) == 0x7f800000u);
      if (!any) continue;
      for (size_t i = c0; i < c1; i++)
        if (!std::isfinite(f[i])) {
          r.first_bad = (int64_t)i;
          r.bad_value = f[i];
          return r;
        }
    }
  }
  use(f, n);
  return r;
}

}  // namespace simba
