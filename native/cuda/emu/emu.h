// emu.h — a host emulation of the CUDA subset the kernels in native/cuda/ use, so that their logic
// (indexing, barriers, shuffles, carries, selection) can be run and compared with the CPU engine on
// a machine with no GPU. Not part of the package build: native/cuda/emu/run.sh builds and runs it.
//
// A launch runs its blocks one after another; each block's threads are fibers (own stacks, switched
// cooperatively in the launching thread, emu.cc), so __syncthreads (a barrier; exited threads drop
// out as on the GPU), warp shuffles and __syncwarp (a per-warp barrier and exchange buffer) behave
// as on the device, at the cost of a context switch rather than an OS thread wake-up. __shared__ variables
// become function statics (shared by the block's threads; blocks do not overlap). WMMA fragments
// hold the whole 16x16 tile in every lane (redundant, exact). Device memory is host memory.
// What it cannot show: speed, races between blocks, memory-model subtleties, and code generation.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

using std::max;
using std::min;

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct float2 {
  float x, y;
};
struct float4 {
  float x, y, z, w;
};
struct uint4 {
  unsigned x, y, z, w;
};
inline float2 make_float2(float a, float b) { return {a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __expf(float x) { return expf(x); }
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

struct __nv_bfloat16 {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat16 emu_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(uint16_t)(u >> 16)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {emu_to_bf16(a), emu_to_bf16(b)}; }
inline float emu_bf16_to_float(__nv_bfloat16 h) { return __uint_as_float((uint32_t)h.bits << 16); }

// ---------------------------------------------------------------- runtime API subset
typedef int cudaError_t;
typedef void* cudaStream_t;
typedef void* cudaEvent_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum { cudaStreamNonBlocking = 1 };
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline const char* cudaGetErrorName(cudaError_t) { return "emuError"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t b) {
  *p = std::aligned_alloc(256, (b + 255) / 256 * 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t b, cudaMemcpyKind) {
  std::memcpy(d, s, b);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t b, cudaMemcpyKind k, cudaStream_t = nullptr) {
  return cudaMemcpy(d, s, b, k);
}
inline cudaError_t cudaMemset(void* d, int v, size_t b) {
  std::memset(d, v, b);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t b, cudaStream_t = nullptr) { return cudaMemset(d, v, b); }
inline cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
  *f = *t = 0;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::strcpy(p->name, "emulated");
  p->totalGlobalMem = 0;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 1;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) {
  *v = 227 * 1024;
  return cudaSuccess;
}
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) {
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, int) {
  *s = nullptr;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
// Events: host clock readings (launches run synchronously, so a recorded time is when the work ended).
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new std::chrono::steady_clock::time_point();
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  *static_cast<std::chrono::steady_clock::time_point*>(e) = std::chrono::steady_clock::now();
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  using tp = std::chrono::steady_clock::time_point;
  *ms = std::chrono::duration<float, std::milli>(*static_cast<tp*>(b) - *static_cast<tp*>(a)).count();
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete static_cast<std::chrono::steady_clock::time_point*>(e);
  return cudaSuccess;
}

namespace emu {

// Gives the CPU to the next fiber of the block (emu.cc).
void fiber_yield();

// A barrier among the fibers of a block (or a warp): the last to arrive goes on, the others yield
// until the phase changes. A fiber that finishes drops out (expected shrinks).
struct FiberBarrier {
  int expected;
  int arrived = 0;
  uint64_t phase = 0;
  explicit FiberBarrier(int n) : expected(n) {}
  void arrive_and_wait() {
    if (++arrived >= expected) {
      arrived = 0;
      phase++;
      return;
    }
    const uint64_t p = phase;
    while (phase == p) fiber_yield();
  }
  void arrive_and_drop() {
    if (--expected > 0 && arrived >= expected) {
      arrived = 0;
      phase++;
    }
  }
};

struct Block {
  std::unique_ptr<FiberBarrier> bar;
  std::vector<std::unique_ptr<FiberBarrier>> warp_bars;
  std::vector<double> xch;  // per-thread shuffle slots
  std::vector<char> dyn;
};
extern thread_local Block* blk;
inline int flat_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

template <typename T>
T* dyn_smem() {
  return reinterpret_cast<T*>(blk->dyn.data());
}

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);

template <typename K>
auto launch(dim3 grid, dim3 block, size_t smem, K kernel) {
  return [=](auto... args) { run_grid(grid, block, smem, [&] { kernel(args...); }); };
}

}  // namespace emu

inline void __syncthreads() { emu::blk->bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::blk->warp_bars[emu::flat_tid() / 32]->arrive_and_wait(); }
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
  const int t = emu::flat_tid(), w = t / 32, lane = t % 32;
  emu::blk->xch[t] = (double)v;
  __syncwarp();
  T r = (T)emu::blk->xch[w * 32 + (lane ^ o)];
  __syncwarp();
  return r;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------- WMMA (whole tile per lane)
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  float v[16][16];  // (row, col) of the tile: A (m, k), B (k, n), C (m, n)
};
template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, float x) {
  for (auto& r : f.v)
    for (auto& e : r) e = x;
}
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, __nv_bfloat16, row_major>& f, const __nv_bfloat16* p,
                             unsigned ld) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.v[r][c] = emu_bf16_to_float(p[r * ld + c]);
  __syncwarp();
}
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, __nv_bfloat16, col_major>& f, const __nv_bfloat16* p,
                             unsigned ld) {
  for (int k = 0; k < 16; k++)
    for (int n = 0; n < 16; n++) f.v[k][n] = emu_bf16_to_float(p[n * ld + k]);
  __syncwarp();
}
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, row_major>& a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, col_major>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16][16];
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float s = c.v[m][n];
      for (int k = 0; k < 16; k++) s += a.v[m][k] * b.v[k][n];
      out[m][n] = s;
    }
  std::memcpy(d.v, out, sizeof out);
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ld, layout_t) {
  __syncwarp();
  if (emu::flat_tid() % 32 == 0)
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 16; c++) p[r * ld + c] = f.v[r][c];
  __syncwarp();
}
}  // namespace wmma
}  // namespace nvcuda

// ---------------------------------------------------------------- cub::BlockScan (exclusive sums)
namespace cub {
template <typename T, int THREADS>
struct BlockScan {
  struct TempStorage {
    T v[THREADS];
  };
  TempStorage& s;
  explicit BlockScan(TempStorage& t) : s(t) {}
  void ExclusiveSum(T in, T& out, T& aggregate) {
    const int t = emu::flat_tid();
    s.v[t] = in;
    __syncthreads();
    T pre = 0, tot = 0;
    for (int i = 0; i < THREADS; i++) {
      if (i < t) pre += s.v[i];
      tot += s.v[i];
    }
    out = pre;
    aggregate = tot;
    __syncthreads();
  }
};
}  // namespace cub
