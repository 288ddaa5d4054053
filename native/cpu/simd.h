// simd.h — one portable vector type for the CPU kernels.
//
// Every kernel file (gemm.cc, conv1d.cc, selective_scan.cc, ...) is compiled once per
// instruction set (see CMakeLists.txt): with -mavx512f the vector is 16 floats wide, with
// -mavx2 -mfma 8, and with the x86-64 baseline (SSE2) 4. The kernels are written once against
// GCC/Clang vector extensions; the ISA build only changes SIMBA_W and the namespace, and
// dispatch.cc picks the widest build the CPU supports at run time, so one binary runs on any
// x86-64 machine.
//
// The transcendental functions (exp, log, log1p, softplus, silu) are our own polynomial
// versions: branch-free so they vectorise, accurate to a few ulp (tested against float64).
#pragma once
#include <cstdint>
#include <cstring>
#include <utility>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef SIMBA_ISA
#error "SIMBA_ISA must name the instruction-set build (avx512, avx2, sse2)"
#endif

#if defined(__AVX512F__)
#define SIMBA_W 16
#elif defined(__AVX2__)
#define SIMBA_W 8
#else
#define SIMBA_W 4
#endif

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

constexpr int W = SIMBA_W;  // floats per vector
typedef float vf __attribute__((vector_size(W * 4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));
typedef uint32_t vu __attribute__((vector_size(W * 4)));
typedef uint16_t vh __attribute__((vector_size(W * 2)));
// Unaligned views (vector loads/stores anywhere in a row).
typedef float vf_u __attribute__((vector_size(W * 4), aligned(4)));
typedef int32_t vi_u __attribute__((vector_size(W * 4), aligned(4)));
typedef uint16_t vh_u __attribute__((vector_size(W * 2), aligned(2)));

// Broadcast written as a {a, a, ...} initializer: compiles to one vbroadcastss (or a {1to16}
// memory operand), where `vf{} + a` would cost an extra add.
template <size_t... I>
static inline vf vbroadcast_(float a, std::index_sequence<I...>) {
  return vf{((void)I, a)...};
}
static inline vf vset1(float a) { return vbroadcast_(a, std::make_index_sequence<W>{}); }
static inline vf vload(const float* p) { return *reinterpret_cast<const vf_u*>(p); }
static inline void vstore(float* p, vf v) { *reinterpret_cast<vf_u*>(p) = v; }
// bfloat16 -> float: the 16 stored bits are the top half of an IEEE float.
static inline vf vload_bf16(const uint16_t* p) {
  vh h = *reinterpret_cast<const vh_u*>(p);
  vu u = __builtin_convertvector(h, vu) << 16;
  return reinterpret_cast<vf&>(u);
}
// Partial loads/stores for row tails (n < W), zero-filled.
// AVX-512 uses masked moves; a memcpy through the stack is a library call whose narrow stores the
// following vector load cannot forward from (a ~20-cycle stall per call).
static inline vf vload_n(const float* p, int n) {
#if SIMBA_W == 16
  return (vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
#else
  vf v = {};
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
#endif
}
static inline void vstore_n(float* p, vf v, int n) {
#if SIMBA_W == 16
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), (__m512)v);
#else
  std::memcpy(p, &v, sizeof(float) * n);
#endif
}

static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline vf vabs(vf a) {
  vu u = reinterpret_cast<vu&>(a) & 0x7fffffffu;
  return reinterpret_cast<vf&>(u);
}
// Flush-to-zero / denormals-are-zero for the current thread while in scope. The Simba reverse pass
// multiplies decay factors until they underflow, and denormal arithmetic is ~100x slower on x86;
// the values involved are below 1e-38, far under every tolerance. The previous mode is restored,
// so JavaScript (which needs denormals) never sees the change.
struct FlushDenormals {
  unsigned saved;
  FlushDenormals() : saved(__builtin_ia32_stmxcsr()) { __builtin_ia32_ldmxcsr(saved | 0x8040); }
  ~FlushDenormals() { __builtin_ia32_ldmxcsr(saved); }
};

static inline float hsum(vf v) {
  float s = 0.f;
  for (int i = 0; i < W; i++) s += v[i];
  return s;
}
static inline float hmax(vf v) {
  float m = v[0];
  for (int i = 1; i < W; i++) m = v[i] > m ? v[i] : m;
  return m;
}

// exp(x): x = k ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by a degree-5
// polynomial 1 + r + c2 r^2 + ... + c5 r^5, times 2^k. The c's minimise the largest relative error
// on the interval (fitted by iteratively reweighted least squares on 20001 points, float64:
// 1.05e-7; evaluated in float as below: 1.8e-7, where the degree-6 Taylor polynomial it replaces
// reached 2.4e-7 with one FMA more, and the scan runs one exp per state element).
// AVX-512 rounds with vrndscaleps and applies 2^k with vscalefps, which also saturates to 0 / inf
// outside the float range (10 instructions). Elsewhere 2^k is built in the exponent bits, with the
// input clamped to [-87.3, 88.7] so it stays a normal float: exp of very negative numbers then
// returns ~1e-38 instead of 0, below every tolerance we use.
static inline vf vexp_poly(vf r) {
  vf p = vset1(0.00831251f);
  p = p * r + 0.04189009f;
  p = p * r + 0.16667115f;
  p = p * r + 0.49999232f;
  p = p * r + 1.f;
  return p * r + 1.f;
}
#if SIMBA_W == 16
static inline vf vexp(vf x) {
  __m512 xv = reinterpret_cast<__m512&>(x);
  __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xv, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf kv = reinterpret_cast<vf&>(k);
  vf r = x - kv * 0.693359375f;  // ln2 high part (exact in float)
  r = r - kv * -2.12194440e-4f;  // ln2 low part
  vf p = vexp_poly(r);
  __m512 out = _mm512_scalef_ps(reinterpret_cast<__m512&>(p), k);
  return reinterpret_cast<vf&>(out);
}
#else
static inline vf vexp(vf x) {
  x = vmin(vmax(x, vset1(-87.3f)), vset1(88.7f));
  vf k = __builtin_convertvector(
      __builtin_convertvector(x * 1.44269504088896341f + vset1(0.5f) - (x < 0 ? vset1(1.f) : vset1(0.f)), vi), vf);
  vf r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  vf p = vexp_poly(r);
  vi e = (__builtin_convertvector(k, vi) + 127) << 23;
  return p * reinterpret_cast<vf&>(e);
}
#endif

// log(x) for x > 0 (finite): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(f),
// f = (m-1)/(m+1), by an odd series in f (|f| < 0.172, 5 terms: relative error < 1e-7).
static inline vf vlog(vf x) {
  vi xi = reinterpret_cast<vi&>(x);
  vi e = ((xi >> 23) & 0xff) - 127;
  vi mi = (xi & 0x007fffff) | 0x3f800000;  // mantissa in [1, 2)
  vf m = reinterpret_cast<vf&>(mi);
  vi big = m > 1.41421356f;  // fold [sqrt2, 2) into [sqrt2/2, 1)
  m = big ? m * 0.5f : m;
  e = e - big;  // big is -1 (true) or 0
  vf f = (m - 1.f) / (m + 1.f);
  vf f2 = f * f;
  vf s = vset1(2.f / 9.f);
  s = s * f2 + 2.f / 7.f;
  s = s * f2 + 2.f / 5.f;
  s = s * f2 + 2.f / 3.f;
  s = s * f2 + 2.f;
  return s * f + __builtin_convertvector(e, vf) * 0.693147180559945309f;
}

// log1p(u) for u > -1, accurate for tiny u: log(w) * u / (w - 1) with w = 1 + u
// (Goldberg's correction for the rounding of 1 + u).
static inline vf vlog1p(vf u) {
  vf w = u + 1.f;
  vf d = w - 1.f;
  vf l = vlog(w);
  return d == 0.f ? u : l * (u / d);
}

// softplus(v) = log(1 + e^v), as in torch.nn.functional.softplus (threshold 20: identity above).
static inline vf vsoftplus(vf v) {
  vf sp = vmax(v, vset1(0.f)) + vlog1p(vexp(-vabs(v)));
  return v > 20.f ? v : sp;
}

// silu(z) = z * sigmoid(z) = z / (1 + e^-z).
static inline vf vsilu(vf z) { return z / (vexp(-z) + 1.f); }

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
