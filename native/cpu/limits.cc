// limits.cc — see limits.h. Times the active kernel build's fma_loop / read_sum (limits_kernels.cc)
// and, where they run, the dot-product loops (limits_ext.cc) and the AMX tile loops (gemm_amx.cc),
// on the calling thread and on every thread of the pool; the best of N runs counts (on a shared
// machine the slowest runs measure the neighbours, not the hardware).
#include "limits.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "dispatch.h"

namespace simba {
namespace cpu {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Best seconds of `reps` calls of run(threads), each call doing the same work.
template <typename F>
double best_of(int reps, F&& run) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const double t0 = now();
    run();
    const double t = now() - t0;
    if (t < best) best = t;
  }
  return best;
}

volatile float g_sink;  // keeps the probes' results alive

}  // namespace

ReadBandwidth measure_read(int reps, double bytes) {
  const KernelTable& k = active();
  ThreadPool& pool = ThreadPool::global();
  const int nt = pool.size();
  // each thread's part a whole number of 4 KiB (1024 floats), so both figures read the same buffer
  const size_t part = std::max<size_t>(1, (size_t)(bytes / sizeof(float)) / nt / 1024) * 1024, n = part * nt;
  std::unique_ptr<float, void (*)(void*)> buf(static_cast<float*>(std::aligned_alloc(64, n * sizeof(float))),
                                              std::free);
  if (!buf) throw std::bad_alloc();
  float* x = buf.get();
  for (size_t i = 0; i < n; i++) x[i] = (float)(i & 1023) * 1e-3f;  // the pages exist before timing
  ReadBandwidth out{};
  out.buffer_bytes = (double)n * sizeof(float);
  // small buffers run many times per timing, so that each lasts well above the clock's resolution
  const int inner = (int)std::max<double>(1, (64.0 * (1 << 20)) / out.buffer_bytes);
  out.read_gbs_1 = inner * out.buffer_bytes /
                   best_of(reps,
                           [&] {
                             for (int j = 0; j < inner; j++) g_sink = k.read_sum(x, n);
                           }) /
                   1e9;
  out.read_gbs_all = inner * out.buffer_bytes /
                     best_of(reps,
                             [&] {
                               pool.run(nt, [&](int, int b, int e) {
                                 for (int j = 0; j < inner; j++)
                                   for (int i = b; i < e; i++) g_sink = k.read_sum(x + (size_t)i * part, part);
                               });
                             }) /
                     1e9;
  return out;
}

MachineLimits measure_limits(int reps, int buffer_mb) {
  const KernelTable& k = active();
  ThreadPool& pool = ThreadPool::global();
  const int nt = pool.size();
  MachineLimits out{};
  out.threads = nt;
  out.isa = k.name;

  // ---- Compute peaks, ~0.05 s per thread per run each: the FMA (2 GFLOP per call at W = 16) and,
  // where they run, the dot products.
  auto peak = [&](float (*loop)(long), long iters, int flops_per_iter, double* one, double* all) {
    const double flops = (double)iters * flops_per_iter;
    loop(iters / 10);  // warm up (clock ramp)
    *one = flops / best_of(reps, [&] { g_sink = loop(iters); }) / 1e9;
    *all = nt * flops /
           best_of(reps,
                   [&] {
                     pool.run(nt, [&](int, int b, int e) {
                       for (int i = b; i < e; i++) g_sink = loop(iters);
                     });
                   }) /
           1e9;
  };
  peak(k.fma_loop, 4000000, k.fma_flops_per_iter, &out.fma_gflops_1, &out.fma_gflops_all);
  if (vnni_usable())
    peak(avx512_ext::vnni_loop, 2000000, avx512_ext::vnni_flops_per_iter(), &out.int8_dot_gflops_1,
         &out.int8_dot_gflops_all);
  if (bf16dp_usable())
    peak(avx512_ext::bf16dp_loop, 2000000, avx512_ext::bf16dp_flops_per_iter(), &out.bf16_dot_gflops_1,
         &out.bf16_dot_gflops_all);
  if (amx_usable()) {
    peak(amx::bf16_loop, 1000000, amx::bf16_flops_per_iter(), &out.amx_bf16_gflops_1, &out.amx_bf16_gflops_all);
    peak(amx::int8_loop, 1000000, amx::int8_flops_per_iter(), &out.amx_int8_gflops_1, &out.amx_int8_gflops_all);
  }

  // ---- Read bandwidth: a buffer far larger than the last-level cache.
  out.read = measure_read(reps, (double)((size_t)buffer_mb << 20));
  return out;
}

}  // namespace cpu
}  // namespace simba
