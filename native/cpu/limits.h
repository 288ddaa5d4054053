// limits.h — this machine's physical bounds, measured (simba bench --limits): streaming read
// bandwidth, FMA peak and the peaks of the int8 / bf16 dot-product and AMX kernels where they run, each
// with one thread and with the whole thread pool.
#pragma once

namespace simba {
namespace cpu {

// Streaming-read bandwidth over one buffer of about `bytes` (rounded down to 4 KiB per thread part,
// at least 4 KiB), touched once first: far larger than the last-level cache it measures memory;
// the size of a model's weights, what a decode step reading them once gets (part may stay cached).
struct ReadBandwidth {
  double read_gbs_1;    // GB/s (1e9 bytes/s), one thread
  double read_gbs_all;  // GB/s, every pool thread reading its own part
  double buffer_bytes;  // size of the streamed buffer
};

struct MachineLimits {
  int threads;            // thread-pool size used for the "all" figures
  const char* isa;        // kernel build the FMA peak was measured with
  ReadBandwidth read;     // over a buffer far larger than the caches
  double fma_gflops_1;    // GFLOP/s (an FMA = 2 flops), one thread
  double fma_gflops_all;  // GFLOP/s, every pool thread
  // The dot-product kernels' peaks (GFLOP/s: a multiply-add = 2, as for the FMA), 0 where the
  // kernel cannot run on this CPU / build (dispatch.h: vnni_usable, bf16dp_usable).
  double int8_dot_gflops_1, int8_dot_gflops_all;  // vpdpbusd
  double bf16_dot_gflops_1, bf16_dot_gflops_all;  // vdpbf16ps
  // AMX tile peaks (tdpbf16ps / tdpbusd on four 16 x 16 accumulators), 0 where AMX does not run
  // (dispatch.h: amx_usable).
  double amx_bf16_gflops_1, amx_bf16_gflops_all;
  double amx_int8_gflops_1, amx_int8_gflops_all;
};

ReadBandwidth measure_read(int reps, double bytes);

// Best (shortest-time) of `reps` runs of each read probe (buffer_mb MiB streamed per run) and of
// 10 x reps rounds of about 1 ms (at least 20 ms x reps) of each compute probe, every thread at once
// for the "all" figures (limits.cc). Takes about 0.05 s x reps per compute figure plus the reads. Throws std::bad_alloc
// on no memory.
MachineLimits measure_limits(int reps = 5, int buffer_mb = 256);

}  // namespace cpu
}  // namespace simba
