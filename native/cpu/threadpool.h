// threadpool.h — a fixed pool of worker threads for the CPU kernels.
//
// run(items, fn) splits [0, items) into size() contiguous ranges; the calling thread does range
// 0 and the workers the rest, and run returns when all are done. run_dynamic(items, fn) cuts
// [0, items) into up to 4 contiguous chunks per thread that the threads take in turn from a
// shared counter: when one thread is held up (another process, the JS thread on the same core),
// the others take its share, so a step is late by at most one chunk instead of the whole
// range. Use it for kernels whose items are independent (each item's result does not depend on
// which thread computed it, so the results are the same bits either way); fn may then be called
// several times per thread. A forward pass calls run a few
// hundred times, so waking workers through a condition variable each time would cost more than
// small decode kernels take: workers spin (with pause) for a short while after each job and only
// then sleep, so back-to-back jobs start in well under a microsecond while an idle process uses
// no CPU.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace simba {
namespace cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }
  using Job = std::function<void(int tid, int begin, int end)>;
  void run(int items, const Job& fn);
  void run_dynamic(int items, const Job& fn);

  // The process-wide pool: SIMBA_THREADS threads if set, else one per hardware thread.
  static ThreadPool& global();

 private:
  void worker(int tid);
  void range(int tid, int items, int* b, int* e) const;
  void post(int items, const Job& fn, bool dynamic);
  void work(int tid);  // this thread's share of the posted job

  int nthreads_;
  std::vector<std::thread> threads_;
  const Job* job_ = nullptr;
  int items_ = 0;
  bool dynamic_ = false;
  int nchunks_ = 0;
  std::atomic<int> next_{0};  // next chunk (run_dynamic)
  std::atomic<unsigned> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex run_mu_;  // one job at a time
};

}  // namespace cpu
}  // namespace simba
