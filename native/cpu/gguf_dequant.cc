// gguf_dequant.cc — see gguf_dequant.h. Layouts (ggml-common.h):
//   Q8_0 {f16 d; int8 q[32]}                 x = d * q
//   Q4_0 {f16 d; u8 qs[16]}                  x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8)
//   Q4_1 {f16 d, m; u8 qs[16]}               x = d * q + m (nibbles as Q4_0)
//   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32 with 6-bit scale sc and min m;
//        x = d * sc * q - dmin * m; qs[32 g + l] holds sub-block 2g (low nibble) and 2g + 1 (high)
//   Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: Q4_K's nibble plus bit j of qh[l] for
//        element l of sub-block j as bit 4
//   Q6_K {u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d}: 6-bit q - 32, 16 sub-blocks of 16 with an
//        int8 scale; x = d * scale * (q - 32)
#include "cpu/gguf_dequant.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/threadpool.h"

namespace simba {

namespace {

constexpr size_t kQK = 32;    // Q8_0, Q4_0, Q4_1
constexpr size_t kQKK = 256;  // K-quants

uint16_t u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
float f16at(const uint8_t* p) { return half_to_f32(u16(p)); }

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j from the 12 packed bytes (get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void q8_0(const uint8_t* b, float* y) {
  const float d = f16at(b);
  for (size_t j = 0; j < kQK; j++) y[j] = d * (float)(int8_t)b[2 + j];
}

void q4_0(const uint8_t* b, float* y) {
  const float d = f16at(b);
  const uint8_t* qs = b + 2;
  for (size_t j = 0; j < kQK / 2; j++) {
    y[j] = d * (float)((qs[j] & 0xF) - 8);
    y[j + kQK / 2] = d * (float)((qs[j] >> 4) - 8);
  }
}

void q4_1(const uint8_t* b, float* y) {
  const float d = f16at(b), m = f16at(b + 2);
  const uint8_t* qs = b + 4;
  for (size_t j = 0; j < kQK / 2; j++) {
    y[j] = d * (float)(qs[j] & 0xF) + m;
    y[j + kQK / 2] = d * (float)(qs[j] >> 4) + m;
  }
}

// Q4_K and Q5_K share the scales; qh is null for Q4_K.
void qk_45(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = f16at(b), dmin = f16at(b + 2);
  const uint8_t* scales = b + 4;
  for (int g = 0; g < 4; g++) {  // 64 elements: sub-blocks 2g (low nibbles) and 2g + 1 (high)
    uint8_t sc, m;
    scale_min_k4(2 * g, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(2 * g + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    const uint8_t* q = qs + 32 * g;
    for (int l = 0; l < 32; l++) {
      int lo = q[l] & 0xF, hi = q[l] >> 4;
      if (qh) {
        lo |= ((qh[l] >> (2 * g)) & 1) << 4;
        hi |= ((qh[l] >> (2 * g + 1)) & 1) << 4;
      }
      y[64 * g + l] = d1 * (float)lo - m1;
      y[64 * g + 32 + l] = d2 * (float)hi - m2;
    }
  }
}

void q4_k(const uint8_t* b, float* y) { qk_45(b, nullptr, b + 4 + 12, y); }
void q5_k(const uint8_t* b, float* y) { qk_45(b, b + 4 + 12, b + 4 + 12 + 32, y); }

void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16at(b + 208);
  for (int h = 0; h < 2; h++) {  // two halves of 128
    for (int l = 0; l < 32; l++) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * (float)sc[is] * (float)q1;
      y[l + 32] = d * (float)sc[is + 2] * (float)q2;
      y[l + 64] = d * (float)sc[is + 4] * (float)q3;
      y[l + 96] = d * (float)sc[is + 6] * (float)q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

template <void (*Block)(const uint8_t*, float*)>
void run(const uint8_t* src, float* dst, size_t nblocks, size_t bytes, size_t elems) {
  for (size_t i = 0; i < nblocks; i++) Block(src + i * bytes, dst + i * elems);
}

}  // namespace

float half_to_f32(uint16_t h) {
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

size_t file_dtype_block_elems(FileDType t) {
  switch (t) {
    case FileDType::F32:
    case FileDType::F16:
    case FileDType::BF16: return 1;
    case FileDType::Q8_0:
    case FileDType::Q4_0:
    case FileDType::Q4_1: return kQK;
    case FileDType::Q4_K:
    case FileDType::Q5_K:
    case FileDType::Q6_K: return kQKK;
  }
  return 1;
}

size_t file_dtype_block_bytes(FileDType t) {
  switch (t) {
    case FileDType::F32: return 4;
    case FileDType::F16:
    case FileDType::BF16: return 2;
    case FileDType::Q8_0: return 2 + 32;
    case FileDType::Q4_0: return 2 + 16;
    case FileDType::Q4_1: return 4 + 16;
    case FileDType::Q4_K: return 4 + 12 + 128;
    case FileDType::Q5_K: return 4 + 12 + 32 + 128;
    case FileDType::Q6_K: return 128 + 64 + 16 + 2;
  }
  return 4;
}

bool file_dtype_from_name(const char* name, FileDType* out) {
  static const struct {
    const char* name;
    FileDType t;
  } kNames[] = {{"F32", FileDType::F32},   {"F16", FileDType::F16},   {"BF16", FileDType::BF16},
                {"Q8_0", FileDType::Q8_0}, {"Q4_0", FileDType::Q4_0}, {"Q4_1", FileDType::Q4_1},
                {"Q4_K", FileDType::Q4_K}, {"Q5_K", FileDType::Q5_K}, {"Q6_K", FileDType::Q6_K}};
  for (const auto& n : kNames)
    if (std::strcmp(n.name, name) == 0) {
      *out = n.t;
      return true;
    }
  return false;
}

void dequantize_blocks(FileDType t, const uint8_t* src, float* dst, size_t nblocks) {
  const size_t bytes = file_dtype_block_bytes(t), elems = file_dtype_block_elems(t);
  switch (t) {
    case FileDType::F32: std::memcpy(dst, src, nblocks * 4); return;
    case FileDType::F16:
      for (size_t i = 0; i < nblocks; i++) dst[i] = half_to_f32(u16(src + 2 * i));
      return;
    case FileDType::BF16:
      for (size_t i = 0; i < nblocks; i++) dst[i] = bf16_to_f32(u16(src + 2 * i));
      return;
    case FileDType::Q8_0: return run<q8_0>(src, dst, nblocks, bytes, elems);
    case FileDType::Q4_0: return run<q4_0>(src, dst, nblocks, bytes, elems);
    case FileDType::Q4_1: return run<q4_1>(src, dst, nblocks, bytes, elems);
    case FileDType::Q4_K: return run<q4_k>(src, dst, nblocks, bytes, elems);
    case FileDType::Q5_K: return run<q5_k>(src, dst, nblocks, bytes, elems);
    case FileDType::Q6_K: return run<q6_k>(src, dst, nblocks, bytes, elems);
  }
}

void dequantize_blocks_parallel(FileDType t, const uint8_t* src, float* dst, size_t nblocks) {
  const size_t bytes = file_dtype_block_bytes(t), elems = file_dtype_block_elems(t);
  const size_t per_task = kDequantTaskElems / elems;  // blocks per task: large enough that scheduling is noise
  const size_t tasks = (nblocks + per_task - 1) / per_task;
  if (tasks < 2 || tasks > (size_t)INT32_MAX) return dequantize_blocks(t, src, dst, nblocks);
  cpu::ThreadPool::global().run_dynamic((int)tasks, [&](int, int b, int e) {
    const size_t b0 = (size_t)b * per_task, b1 = std::min(nblocks, (size_t)e * per_task);
    dequantize_blocks(t, src + b0 * bytes, dst + b0 * elems, b1 - b0);
  });
}

}  // namespace simba
