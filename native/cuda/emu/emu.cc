// emu.cc — the launch machinery of emu.h.
#include "emu.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

thread_local Block* blk = nullptr;

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  const int n = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        Block b;
        b.bar = std::make_unique<std::barrier<>>(n);
        for (int w = 0; w < (n + 31) / 32; w++) b.warp_bars.push_back(std::make_unique<std::barrier<>>(std::min(32, n - 32 * w)));
        b.xch.assign(n, 0.0);
        b.dyn.assign(smem + 16, 0x7f);  // garbage-ish fill: reads before writes show up
        std::vector<std::thread> th;
        th.reserve(n);
        for (int t = 0; t < n; t++)
          th.emplace_back([&, t] {
            threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            blockIdx = dim3(bx, by, bz);
            blockDim = block;
            gridDim = grid;
            blk = &b;
            body();
            b.warp_bars[t / 32]->arrive_and_drop();
            b.bar->arrive_and_drop();
          });
        for (auto& x : th) x.join();
      }
}

}  // namespace emu
