// bench.cu — the timing hook behind cudaKernels.benchScan (bench/gpu.sh): the selective scan alone
// on device-resident random inputs, and the device-to-device copy bandwidth it is compared with.
#include <vector>

#include "kernels.cuh"
#include "model_cuda.h"

namespace simba {
namespace cuda {

namespace {

__global__ void init_kernel(float* v, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    v[i] = lo + (hi - lo) * (h >> 8) * (1.0f / 16777216.0f);
  }
}

void init(float* v, size_t n, uint32_t seed, float lo, float hi) {
  SIMBA_LAUNCH(1024, 256, 0, 0, init_kernel)(v, n, seed, lo, hi);
  check_launch("bench init");
}

}  // namespace

// Times `iters` scans of n_seq sequences of T tokens (E channels, N states) and a 1 GiB
// device-to-device copy. scan_bytes: the bytes one scan must move (x, dt, z in; y out; B, C; states).
void bench_scan(int n_seq, int T, int E, int N, int iters, double* scan_ms, double* scan_bytes, double* copy_gbs) {
  if (n_seq <= 0 || T <= 0 || E <= 0 || N <= 0 || iters <= 0) fail(SIMBA_E_ARG, "bench_scan: bad sizes");
  const size_t M = (size_t)n_seq * T;
  DevBuf x, dt, z, y, bc, AT, D, states, tab;
  x.alloc(M * E * 4, "bench x");
  dt.alloc(M * E * 4, "bench dt");
  z.alloc(M * E * 4, "bench z");
  y.alloc(M * E * 4, "bench y");
  bc.alloc(M * 2 * N * 4, "bench B, C");
  AT.alloc((size_t)N * E * 4, "bench A");
  D.alloc((size_t)E * 4, "bench D");
  states.alloc((size_t)n_seq * E * N * 4, "bench states");
  init(x.f(), M * E, 1, -1.f, 1.f);
  init(dt.f(), M * E, 2, -6.f, -2.f);
  init(z.f(), M * E, 3, -2.f, 2.f);
  init(bc.f(), M * 2 * N, 4, -1.f, 1.f);
  init(AT.f(), (size_t)N * E, 5, -16.f, -1.f);
  init(D.f(), E, 6, 0.5f, 1.5f);
  check(cudaMemset(states.get(), 0, states.bytes()), "bench states");
  std::vector<SeqInfo> seqs(n_seq);
  for (int s = 0; s < n_seq; s++) seqs[s] = SeqInfo{.row0 = s * T, .T = T, .k = T, .nrow0 = 0};
  tab.upload(seqs.data(), seqs.size() * sizeof(SeqInfo), "bench table");
  const ScanParams p{.x = x.f(),
                     .ldx = E,
                     .dt = dt.f(),
                     .lddt = E,
                     .B = bc.f(),
                     .C = bc.f() + N,
                     .ldbc = 2 * N,
                     .z = z.f(),
                     .ldz = E,
                     .AT = AT.f(),
                     .D = D.f(),
                     .y = y.f(),
                     .ldy = E,
                     .E = E,
                     .N = N,
                     .write_dt = false,
                     .ssm = {.base = states.f(), .stride = (size_t)E * N},
                     .seqs = static_cast<const SeqInfo*>(tab.get()),
                     .nseq = n_seq,
                     .maxT = T};
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  selective_scan(p, 0);  // warm-up
  check(cudaEventRecord(a, 0), "event");
  for (int i = 0; i < iters; i++) selective_scan(p, 0);
  check(cudaEventRecord(b, 0), "event");
  check(cudaEventSynchronize(b), "bench scan");
  float ms = 0.f;
  check(cudaEventElapsedTime(&ms, a, b), "event time");
  *scan_ms = ms / iters;
  *scan_bytes = (double)M * E * 4 * 4 + (double)M * 2 * N * 4 + 2.0 * n_seq * E * N * 4;
  // Copy bandwidth: 1 GiB device to device, bytes read + written.
  const size_t cb = (size_t)1 << 30;
  DevBuf src, dst;
  src.alloc(cb, "bench copy source");
  dst.alloc(cb, "bench copy destination");
  check(cudaMemset(src.get(), 1, cb), "bench copy init");
  check(cudaMemcpyAsync(dst.get(), src.get(), cb, cudaMemcpyDeviceToDevice, 0), "bench copy");
  check(cudaEventRecord(a, 0), "event");
  const int reps = 10;
  for (int i = 0; i < reps; i++)
    check(cudaMemcpyAsync(dst.get(), src.get(), cb, cudaMemcpyDeviceToDevice, 0), "bench copy");
  check(cudaEventRecord(b, 0), "event");
  check(cudaEventSynchronize(b), "bench copy");
  check(cudaEventElapsedTime(&ms, a, b), "event time");
  *copy_gbs = 2.0 * cb * reps / (ms * 1e-3) / 1e9;
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

}  // namespace cuda
}  // namespace simba
