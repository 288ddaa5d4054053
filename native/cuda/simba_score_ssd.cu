// simba_score_ssd.cu — Simba's token scores for Mamba-2 on the device, the twin of
// native/cpu/simba_score_ssd.cc (and of the decay pass in native/cpu/dispatch.cc ssd_score):
//   decay_kernel  one thread per (sequence, head) walks the sequence backwards:
//                 decay[r, h] = A_h sum_{k>t} dt[k, h] (accumulated in double, as the CPU)
//   row_kernel    one warp per row: per group C . B by the lanes over N, then per head of the
//                 group |dt C.B exp(decay)| times max_p or sum_p |x[t,h,p]| by the lanes over P.
// Within a head every factor but x is the same for all p, so the row costs O(G N + H P): the
// score of a layer is O(T (G N + H P)), never O(T^2).
#include "kernels.cuh"

namespace simba {
namespace cuda {

namespace {

constexpr int kRowWarps = 4;

__global__ void decay_kernel(const SsdScoreParams p) {
  const int h = blockIdx.x * blockDim.x + threadIdx.x;
  if (h >= p.H) return;
  const SeqInfo sq = p.seqs[blockIdx.y];
  const double A = p.A[h];
  double after = 0;
  for (int t = sq.T - 1; t >= 0; t--) {
    const size_t r = (size_t)sq.row0 + t;
    p.decay[r * p.H + h] = (float)(A * after);
    after += p.dt[r * p.lddt + h];
  }
}

__global__ __launch_bounds__(kRowWarps * 32) void row_kernel(const SsdScoreParams p) {
  const int lane = threadIdx.x & 31;
  const SeqInfo sq = p.seqs[blockIdx.y];
  const int t = blockIdx.x * kRowWarps + (threadIdx.x >> 5);
  if (t >= sq.T) return;  // the whole warp: no shuffle is left half-done
  const int N = p.N, P = p.P, per_group = p.H / p.G;
  const size_t r = (size_t)sq.row0 + t;
  const float* Bt = p.B + r * p.ldbc;
  const float* Cr = p.C + (p.local ? r : (size_t)sq.row0 + sq.T - 1) * p.ldbc;
  const float* x = p.x + r * p.ldx;
  float score = 0.f, cb = 0.f;
  for (int h = 0; h < p.H; h++) {
    if (h % per_group == 0) {  // C . B of this head's group
      const int g = h / per_group;
      float v = 0.f;
      for (int n = lane; n < N; n += 32) v += Cr[(size_t)g * N + n] * Bt[(size_t)g * N + n];
      cb = warp_reduce(v, true);
    }
    float coef = p.dt[r * p.lddt + h] * cb;
    if (!p.local) coef *= expf(p.decay[r * p.H + h]);
    float red = 0.f;
    for (int c = lane; c < P; c += 32) {
      const float v = fabsf(x[(size_t)h * P + c]);
      red = p.reduce_sum ? red + v : fmaxf(red, v);
    }
    const float c = fabsf(coef) * warp_reduce(red, p.reduce_sum);
    score = p.reduce_sum ? score + c : fmaxf(score, c);
  }
  if (lane == 0) p.score[r] = score;
}

}  // namespace

void ssd_score(const SsdScoreParams& p, cudaStream_t st) {
  if (p.rows <= 0 || p.nseq <= 0 || p.maxT <= 0) return;
  SIMBA_ASSERT(p.x && p.dt && p.B && p.C && p.score && p.seqs && p.H > 0 && p.P > 0 && p.G > 0 && p.H % p.G == 0 &&
               p.N >= 1);
  SIMBA_ASSERT(p.local || (p.A && p.decay));
  SIMBA_ASSERT(p.ldx >= p.H * p.P && p.lddt >= p.H && p.ldbc >= p.G * p.N);
  if (!p.local) {
    SIMBA_LAUNCH(dim3(ceil_div(p.H, 128), p.nseq), 128, 0, st, decay_kernel)(p);
    check_launch("ssd_score decay");
  }
  SIMBA_LAUNCH(dim3(ceil_div(p.maxT, kRowWarps), p.nseq), kRowWarps * 32, 0, st, row_kernel)(p);
  check_launch("ssd_score");
}

}  // namespace cuda
}  // namespace simba
