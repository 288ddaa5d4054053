// common.cuh — shared pieces of the CUDA backend: error checking (CUDA errors become C++
// exceptions with a message; the C ABI in backend.cc turns them into error strings, never aborts),
// the per-sequence table every batched kernel reads, and the device math helpers.
//
// Glossary as in engine/model.h: d = dModel, E = dInner, N = dState, R = dtRank, K = dConv, L = nLayer,
// V = vocab. Activations are token-major rows ([M, X], row stride ld*), as on the CPU.
#pragma once
#ifdef SIMBA_EMU
// Host emulation of the CUDA subset used here (native/cuda/emu/): kernels run on CPU threads, so
// their logic can be checked against the CPU engine on a machine without a GPU.
#include "emu/emu.h"
#define SIMBA_LAUNCH(grid, block, smem, stream, ...) ::emu::launch(grid, block, smem, __VA_ARGS__)
#define SIMBA_DYN_SMEM(type, name) type* name = ::emu::dyn_smem<type>()
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
// kernel<<<grid, block, smem, stream>>>(args) written SIMBA_LAUNCH(grid, block, smem, stream, kernel)(args)
#define SIMBA_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define SIMBA_DYN_SMEM(type, name) extern __shared__ __align__(16) type name[]
#endif

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../common/errors.h"  // simba::Error, SIMBA_ASSERT (launcher preconditions)

namespace simba {
namespace cuda {

// Throws simba::Error (E_CUDA, or E_OOM for cudaErrorMemoryAllocation) "<what>: <cuda error string>" on failure.
void check(cudaError_t e, const char* what);
// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
void check_launch(const char* kernel);

// One sequence of a batch in one layer: rows [row0, row0 + T) of the activations. k and nrow0 are
// used by the Simba selection: k tokens are to be kept (k >= T: all), and the kept rows of this
// sequence start at row nrow0 of the compacted activations.
struct SeqInfo {
  int row0, T, k, nrow0;
};

// Recurrent state addressing on the device: sequence s's state for this layer starts at
// base + i * stride (conv state [E, K-1], or SSM state [E, N]), i = slot[s] when a slot table
// (device memory, one entry per sequence) is given (the device-resident pool), else i = s.
struct StateRef {
  float* base;
  size_t stride;
  const int* slot = nullptr;
  __host__ __device__ float* at(int s) const { return base + (size_t)(slot ? slot[s] : s) * stride; }
};

#if defined(__CUDACC__) || defined(SIMBA_EMU)
__device__ __forceinline__ float softplus_f(float v) {
  // torch.nn.functional.softplus with threshold 20 (as native/cpu/simd.h vsoftplus)
  return v > 20.f ? v : fmaxf(v, 0.f) + log1pf(expf(-fabsf(v)));
}
__device__ __forceinline__ float silu_f(float z) { return z / (1.f + expf(-z)); }
// exp(dt A) in the scan and the score: the fast exp with its input clamped at -87.3 like the CPU's
// vexp (native/cpu/simd.h), whose result never drops below ~1.2e-38. Those two files are also
// compiled with -ftz=true, as the CPU runs them with denormals flushed (FlushDenormals), so scores
// that decay to nothing are 0 on both and tie-break by position alike.
__device__ __forceinline__ float exp_decay(float x) { return __expf(fmaxf(x, -87.3f)); }
// The sum (sum) or the max of v over the 32 lanes of a warp, returned to every lane.
__device__ __forceinline__ float warp_reduce(float v, bool sum) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = sum ? v + u : fmaxf(v, u);
  }
  return v;
}
#endif

// Round-to-nearest-even f32 -> bf16 bits (host side, identical to engine/model.cc to_bf16).
inline uint16_t to_bf16_bits(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
// Workspace pieces start 256-byte aligned.
inline size_t align256(size_t b) { return (b + 255) / 256 * 256; }

}  // namespace cuda
}  // namespace simba
