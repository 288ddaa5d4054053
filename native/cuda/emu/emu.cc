// emu.cc — the launch machinery of emu.h: blocks run one after another; a block's threads are
// fibers, resumed round-robin by a scheduler in the launching thread until each has finished. A
// fiber runs until it waits at a barrier (__syncthreads, __syncwarp, shuffles) or ends. Fibers and
// their stacks are made once per launching thread and reused by every block and launch.
//
// Switching: a fiber is entered the first time through makecontext/setcontext, afterwards with
// _setjmp/_longjmp between its stack and the scheduler's (no signal-mask system call per switch).
#undef _FORTIFY_SOURCE  // its longjmp check rejects jumps between stacks, which is what fibers do
#include <sys/mman.h>
#include <ucontext.h>
#include <csetjmp>

#include "emu.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

thread_local Block* blk = nullptr;

namespace {

constexpr size_t kStackBytes = 256 << 10;

struct Fiber {
  ucontext_t start;
  jmp_buf resume;
  void* stack = nullptr;
  bool started = false, done = false;
  dim3 idx;
};

struct Scheduler {
  std::vector<std::unique_ptr<Fiber>> fibers;
  Fiber* cur = nullptr;
  jmp_buf back;  // the scheduler's side of a switch
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
  if (_setjmp(sched.back) == 0) {
    if (!f.started) {
      f.started = true;
      setcontext(&f.start);
    }
    _longjmp(f.resume, 1);
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
  if (_setjmp(sched.cur->resume) == 0) _longjmp(sched.back, 1);
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
