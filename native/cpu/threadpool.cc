// threadpool.cc — see threadpool.h.
#include "threadpool.h"

#include <chrono>
#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SIMBA_PAUSE() _mm_pause()
#else
#define SIMBA_PAUSE() ((void)0)
#endif

namespace simba {
namespace cpu {

namespace {
// How long a worker keeps spinning for the next job before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(300);
}  // namespace

ThreadPool::ThreadPool(int threads) : nthreads_(threads < 1 ? 1 : threads) {
  for (int t = 1; t < nthreads_; t++) threads_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& th : threads_) th.join();
}

void ThreadPool::range(int tid, int items, int* b, int* e) const {
  // Contiguous split, the first (items % n) ranges one longer.
  int q = items / nthreads_, r = items % nthreads_;
  *b = tid * q + (tid < r ? tid : r);
  *e = *b + q + (tid < r ? 1 : 0);
}

void ThreadPool::run(int items, const Job& fn) { post(items, fn, false); }
void ThreadPool::run_dynamic(int items, const Job& fn) { post(items, fn, true); }

void ThreadPool::work(int tid) {
  if (!dynamic_) {
    int b, e;
    range(tid, items_, &b, &e);
    if (b < e) (*job_)(tid, b, e);
    return;
  }
  for (;;) {
    const int c = next_.fetch_add(1, std::memory_order_relaxed);
    if (c >= nchunks_) return;
    const int b = (int)((long long)c * items_ / nchunks_), e = (int)((long long)(c + 1) * items_ / nchunks_);
    if (b < e) (*job_)(tid, b, e);
  }
}

void ThreadPool::post(int items, const Job& fn, bool dynamic) {
  if (items <= 0) return;
  std::lock_guard<std::mutex> run_lock(run_mu_);
  if (nthreads_ == 1 || items == 1) {
    fn(0, 0, items);
    return;
  }
  job_ = &fn;
  items_ = items;
  dynamic_ = dynamic;
  nchunks_ = items < 4 * nthreads_ ? items : 4 * nthreads_;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(nthreads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  work(0);
  // Wait for the workers; past a short spin, yield so a worker sharing this core can run.
  for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; spins++) {
    if (spins < 4096) SIMBA_PAUSE();
    else std::this_thread::yield();
  }
  job_ = nullptr;
}
void ThreadPool::worker(int tid) {
  // Generation 0 is the state at construction. Reading generation_ here instead would race with a
  // job posted before this thread got to run: the worker would skip it and run() would wait forever.
  unsigned seen = 0;
  for (;;) {
    // Spin briefly for the next job, then sleep on the condition variable.
    auto t0 = std::chrono::steady_clock::now();
    unsigned spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      SIMBA_PAUSE();
      if (++spins % 256 == 0 && std::chrono::steady_clock::now() - t0 > kSpin) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load() != seen; });
        break;
      }
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    work(tid);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    const char* env = std::getenv("SIMBA_THREADS");
    int n = env ? std::atoi(env) : 0;
    if (n <= 0) n = (int)std::thread::hardware_concurrency();
    return n > 0 ? n : 1;
  }());
  return pool;
}

}  // namespace cpu
}  // namespace simba
