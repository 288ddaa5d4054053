// emu.cc — the launch machinery of emu.h: blocks run one after another; a block's threads are
// fibers, resumed round-robin by a scheduler in the launching thread until each has finished. A
// fiber runs until it waits at a barrier (__syncthreads, __syncwarp, shuffles) or ends. Fibers and
// their stacks are made once per launching thread and reused by every block and launch.
//
// Switching: a fiber is entered the first time through makecontext/setcontext, afterwards with
// GCC's __builtin_setjmp / __builtin_longjmp between its stack and the scheduler's: no signal-mask
// system call per switch, and no libc longjmp, which AddressSanitizer intercepts: in a process with
// libasan preloaded (npm run test:sanitize) each intercepted jump between stacks cost as much as a
// block's work, test/cuda_slots.test.ts's child took 60 s instead of 1.3 s (120-300 s in CI).
#include <sys/mman.h>
#include <ucontext.h>

#include "emu.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

thread_local Block* blk = nullptr;

namespace {

constexpr size_t kStackBytes = 256 << 10;

// A __builtin_setjmp buffer (frame pointer, resume address, stack pointer, two spare words).
using JumpBuf = void* [5];
// __builtin_longjmp may not be called from the function that called __builtin_setjmp.
[[gnu::noinline]] void jump_to(JumpBuf& to) { __builtin_longjmp(to, 1); }

struct Fiber {
  ucontext_t start;
  JumpBuf resume;
  void* stack = nullptr;
  bool started = false, done = false;
  dim3 idx;
};

struct Scheduler {
  std::vector<std::unique_ptr<Fiber>> fibers;
  Fiber* cur = nullptr;
  JumpBuf back;  // the scheduler's side of a switch
  const std::function<void()>* body = nullptr;
  ~Scheduler() {
    for (auto& f : fibers) munmap(f->stack, kStackBytes);
  }
};

thread_local Scheduler sched;

void fiber_main() {
  for (;;) {  // one block per pass; the fiber is reused for the next block
    (*sched.body)();
    sched.cur->done = true;
    fiber_yield();
  }
}

void resume(Fiber& f) {
  sched.cur = &f;
  threadIdx = f.idx;
  if (__builtin_setjmp(sched.back) == 0) {
    if (!f.started) {
      f.started = true;
      setcontext(&f.start);
    }
    jump_to(f.resume);
  }
}

Fiber& fiber(int t) {
  while ((int)sched.fibers.size() <= t) {
    auto f = std::make_unique<Fiber>();
    f->stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f->stack == MAP_FAILED) std::abort();
    getcontext(&f->start);
    f->start.uc_stack.ss_sp = f->stack;
    f->start.uc_stack.ss_size = kStackBytes;
    f->start.uc_link = nullptr;
    makecontext(&f->start, fiber_main, 0);
    sched.fibers.push_back(std::move(f));
  }
  return *sched.fibers[t];
}

}  // namespace

void fiber_yield() {
  if (__builtin_setjmp(sched.cur->resume) == 0) jump_to(sched.back);
}

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  const int n = block.x * block.y * block.z;
  if (n == 0) return;
  for (int t = 0; t < n; t++) fiber(t).idx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
  const std::function<void()>* outer =
      sched.body;  // (launches do not nest, but stay correct if they did not return here)
  sched.body = &body;
  blockDim = block;
  gridDim = grid;
  Block b;
  blk = &b;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        b.bar = std::make_unique<FiberBarrier>(n);
        b.warp_bars.clear();
        for (int w = 0; w < (n + 31) / 32; w++)
          b.warp_bars.push_back(std::make_unique<FiberBarrier>(std::min(32, n - 32 * w)));
        b.xch.assign(n, 0.0);
        b.dyn.assign(smem + 16, 0x7f);  // garbage-ish fill: reads before writes show up
        blockIdx = dim3(bx, by, bz);
        for (int t = 0; t < n; t++) sched.fibers[t]->done = false;
        int alive = n;
        while (alive > 0)
          for (int t = 0; t < n; t++) {
            Fiber& f = *sched.fibers[t];
            if (f.done) continue;
            resume(f);
            if (f.done) {  // exited: drops out of its warp's and the block's barriers
              b.warp_bars[t / 32]->arrive_and_drop();
              b.bar->arrive_and_drop();
              alive--;
            }
          }
      }
  sched.body = outer;
}

}  // namespace emu
