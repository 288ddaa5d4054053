// threadpool.h — a fixed pool of worker threads for the CPU kernels.
//
// A job is cut into chunks that the threads claim one at a time from a shared counter (the caller
// included), and run returns once every chunk is done. No thread owns a share: a worker that has
// not been scheduled yet (another process, the JS thread or an HTTP client on its core) claims
// nothing, and the others take its chunks, so a job waits at most for chunks already running, never
// for a worker to wake up.
//
// run(items, fn): size() contiguous ranges of [0, items), the first (items % size()) one longer;
// fn gets the range's index as its first argument (whatever thread runs it), so a kernel that
// keeps partial results per range and reduces them in range order gets the same bits for any
// timing. run_dynamic(items, fn): up to 4 chunks per thread; fn gets the running thread's id
// (0 = the caller, < size()), for per-thread scratch; use it where each item's result does not
// depend on which thread computed it. fn may be called several times per thread in both.
//
// A forward pass posts a few hundred jobs, so waking workers through the kernel each time would
// cost more than small decode kernels take: a worker spins (with pause) for a short while after
// each job and only then sleeps, and a caller waiting for the last running chunks spins briefly,
// then sleeps on a futex (so that on a busy machine its core goes to the thread it waits for).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace simba {
namespace cpu {

class ThreadPool {
 public:
  // hook (tests): called by each worker (never the caller) as it wakes for a job, before it claims
  // any chunk; a hook that blocks stands for a worker the OS does not schedule.
  explicit ThreadPool(int threads, std::function<void(int tid)> hook = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }
  using Job = std::function<void(int id, int begin, int end)>;
  void run(int items, const Job& fn);
  void run_dynamic(int items, const Job& fn);

  // The process-wide pool: SIMBA_THREADS threads if set, else one per hardware thread.
  static ThreadPool& global();

 private:
  void worker(int tid);
  void post(int items, const Job& fn, bool dynamic);
  void work(int tid);  // claims and runs chunks until none is left
  void chunk_range(int c, int nchunks, int* b, int* e) const;

  int nthreads_;
  std::vector<std::thread> threads_;
  // The posted job: written by the caller before it publishes claim_, read by a thread only after
  // it claimed a chunk (the job outlives every claimed chunk: run waits for them).
  const Job* job_ = nullptr;
  int items_ = 0;
  bool dynamic_ = false;
  // (chunks << 32) | next chunk: a thread claims chunk `next` by a compare-exchange that bumps it,
  // so the chunk count it read belongs to the job whose chunk it got.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};             // chunks finished (the caller sleeps on it)
  std::atomic<int> sleeping_{0};         // the caller is, or is about to be, asleep on done_
  std::atomic<unsigned> generation_{0};  // bumped per job, wakes the workers
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex run_mu_;  // one job at a time
  const std::function<void(int)> hook_;
};

}  // namespace cpu
}  // namespace simba
