// threadpool.cc — see threadpool.h.
#include "threadpool.h"

#include <chrono>
#include <climits>
#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SIMBA_PAUSE() _mm_pause()
#else
#define SIMBA_PAUSE() ((void)0)
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

namespace simba {
namespace cpu {

namespace {
// How long a worker keeps spinning for the next job before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(300);
// How long a caller spins for the chunks still running before it sleeps: a chunk's end is near
// unless its thread lost its core, and then the caller's core is better given up.
constexpr auto kWaitSpin = std::chrono::microseconds(50);
// Chunks per thread in run_dynamic: enough that a late thread's share is small.
constexpr int kChunksPerThread = 4;
// Chunk counts fit the claim word's halves with room to spare.
constexpr int kMaxThreads = 1024;

// Sleeps while *word == expected (for at most 1 ms: a missed wake-up costs no more than that).
void futex_wait(std::atomic<int>* word, int expected) {
#if defined(__linux__)
  struct timespec ts = {0, 1000000};
  syscall(SYS_futex, reinterpret_cast<int*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
#else
  (void)word, (void)expected;
  std::this_thread::yield();
#endif
}
void futex_wake(std::atomic<int>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<int*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads, std::function<void(int)> hook)
    : nthreads_(threads < 1             ? 1
                : threads > kMaxThreads ? kMaxThreads
                                        : threads),
      hook_(std::move(hook)) {
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

void ThreadPool::chunk_range(int c, int nchunks, int* b, int* e) const {
  if (dynamic_) {
    *b = (int)((long long)c * items_ / nchunks);
    *e = (int)((long long)(c + 1) * items_ / nchunks);
    return;
  }
  // The first (items % n) ranges one longer.
  const int q = items_ / nchunks, r = items_ % nchunks;
  *b = c * q + (c < r ? c : r);
  *e = *b + q + (c < r ? 1 : 0);
}

void ThreadPool::run(int items, const Job& fn) { post(items, fn, false); }
void ThreadPool::run_dynamic(int items, const Job& fn) { post(items, fn, true); }

void ThreadPool::work(int tid) {
  uint64_t s = claim_.load(std::memory_order_acquire);
  for (;;) {
    const int nchunks = (int)(s >> 32), c = (int)(uint32_t)s;
    if (c >= nchunks) return;
    if (!claim_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // Chunk c of the job that published this count is ours: the job stays until we report it done.
    int b, e;
    chunk_range(c, nchunks, &b, &e);
    if (b < e) (*job_)(dynamic_ ? tid : c, b, e);
    if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == nchunks && sleeping_.load(std::memory_order_seq_cst))
      futex_wake(&done_);
    s = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::post(int items, const Job& fn, bool dynamic) {
  if (items <= 0) return;
  std::lock_guard<std::mutex> run_lock(run_mu_);
  if (nthreads_ == 1 || items == 1) {
    fn(0, 0, items);
    return;
  }
  // Fixed: one range per thread (fewer for fewer items); dynamic: more, smaller chunks.
  const int per = dynamic ? kChunksPerThread : 1;
  const int nchunks = items < per * nthreads_ ? items : per * nthreads_;
  job_ = &fn;
  items_ = items;
  dynamic_ = dynamic;
  done_.store(0, std::memory_order_relaxed);
  sleeping_.store(0, std::memory_order_relaxed);
  claim_.store((uint64_t)nchunks << 32, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  work(0);
  // Every chunk is claimed; wait for the ones other threads still run.
  const auto t0 = std::chrono::steady_clock::now();
  for (unsigned spins = 0;; spins++) {
    const int d = done_.load(std::memory_order_acquire);
    if (d == nchunks) break;
    if (spins % 64 != 63 || std::chrono::steady_clock::now() - t0 < kWaitSpin) {
      SIMBA_PAUSE();
      continue;
    }
    // (seq_cst with the worker's done_ increment and sleeping_ read: either it sees the flag and
    // wakes us, or we see its increment here or in the futex's own comparison)
    sleeping_.store(1, std::memory_order_seq_cst);
    const int d2 = done_.load(std::memory_order_seq_cst);
    if (d2 == nchunks) break;
    futex_wait(&done_, d2);
  }
  job_ = nullptr;
}

void ThreadPool::worker(int tid) {
  // Generation 0 is the state at construction. Reading generation_ here instead would race with a
  // job posted before this thread got to run: the worker would skip it (harmless now, as the
  // caller takes its chunks, but slower).
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
    if (hook_) hook_(tid);
    work(tid);
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
