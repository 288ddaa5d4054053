// limits.cc — see limits.h. Times the active kernel build's fma_loop / read_sum (limits_kernels.cc)
// and, where they run, the dot-product loops (limits_ext.cc) and the AMX tile loops (gemm_amx.cc),
// on the calling thread and on every thread of the pool; the best of N runs counts (on a shared
// machine the slowest runs measure the neighbours, not the hardware).
//
// The compute peaks run in many short rounds (about 1 ms each) rather than a few long ones: every
// thread starts a round together (a spinning barrier) and the round lasts until the last of them is
// done, so a round is timed only while all threads computed at once, and the best round counts. A
// neighbour process that holds a core for a while then costs only the rounds it overlapped, where
// one long run would have been slowed by it as a whole (a 2-core machine shared with one busy
// process read half its int8 peak, and 40% swings between runs two minutes apart).
#include "limits.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
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

// The shortest round of `threads` threads (the caller and threads - 1 started here), each calling
// work() once per round, over at least `min_rounds` rounds and `min_seconds`, then on until a round
// took at most `good_seconds` or `max_seconds` have passed: a round starts when the last thread
// reaches the barrier and ends when the last one is done.
template <typename F>
double best_round(int threads, int min_rounds, double min_seconds, double max_seconds, double good_seconds, F&& work) {
  std::atomic<int> arrived{0};
  std::atomic<unsigned> generation{0};
  std::vector<double> ends(threads, 0.0);
  double release = 0, best = 1e30, begin = now();
  int rounds = 0;
  bool done = false;
  auto body = [&](int t) {
    for (;;) {
      // barrier; the last thread to arrive closes the previous round and opens the next
      const unsigned g = generation.load(std::memory_order_acquire);
      if (arrived.fetch_add(1, std::memory_order_acq_rel) == threads - 1) {
        const double t_now = now();
        if (rounds > 0) best = std::min(best, *std::max_element(ends.begin(), ends.end()) - release);
        done = rounds >= min_rounds && t_now - begin >= min_seconds &&
               (best <= good_seconds || t_now - begin >= max_seconds);
        rounds++;
        arrived.store(0, std::memory_order_relaxed);
        release = now();
        generation.fetch_add(1, std::memory_order_release);
      } else {
        for (int spin = 0; generation.load(std::memory_order_acquire) == g; spin++)
          if (spin > 64) std::this_thread::yield();  // more threads than free cores: let the others run
      }
      if (done) return;
      work();
      ends[t] = now();
    }
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads; t++) helpers.emplace_back(body, t);
  body(0);
  for (auto& h : helpers) h.join();
  return best;
}
template <typename F>
double best_round(int threads, int min_rounds, double min_seconds, F&& work) {
  return best_round(threads, min_rounds, min_seconds, min_seconds, 0.0, work);
}

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

  // ---- Compute peaks: each loop sized to about 1 ms after a 20 ms warm-up (the clock ramps up), then
  // the best of 10 x reps rounds over at least 20 ms x reps, on one thread and on all of them.
  auto peak = [&](float (*loop)(long), long iters, int flops_per_iter, double* one, double* all) {
    long n = std::max<long>(1, iters / 1000);
    for (const double t0 = now(); now() - t0 < 0.02;) g_sink = loop(n);
    const double per_iter = best_of(3, [&] { g_sink = loop(n); }) / n;
    n = std::max<long>(1000, (long)(1e-3 / per_iter));
    const double flops = (double)n * flops_per_iter;
    const int rounds = 10 * reps;
    const double seconds = 0.02 * reps;
    *one = flops / best_round(1, rounds, seconds, [&] { g_sink = loop(n); }) / 1e9;
    // all threads: on a busy machine few rounds find every thread on a core at once, so these go on
    // (up to 20 x as long) until one reaches 90% of nt x the one-thread figure
    *all = nt * flops /
           best_round(nt, rounds, seconds, 20 * seconds, flops / (0.9 * *one * 1e9), [&] { g_sink = loop(n); }) / 1e9;
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
