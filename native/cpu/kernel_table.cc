// kernel_table.cc — this ISA build's KernelTable (compiled once per instruction set).
#include "kernels.h"
#include "simd.h"

namespace simba {
namespace cpu {
namespace SIMBA_ISA {

void gemm_slice(const GemmArgs&, int, int);
void gemm_pack(const GemmArgs&, float*, int, int);
size_t gemm_pack_floats(const GemmArgs&);
int gemm_mr();
void rmsnorm_slice(const RmsNormArgs&, int, int);
void conv1d_slice(const Conv1dArgs&, int, int);
void scan_slice(const ScanArgs&, int, int);
void score_slice(const ScoreArgs&, int, int);
void ssd_scan_slice(const SsdArgs&, int, int);
void gated_norm_slice(const GatedNormArgs&, int, int);
void ssd_score_slice(const SsdScoreArgs&, int, int);
void gemm_q8_slice(const GemmArgs&, int, int);
void quantize_slice(const QuantizeArgs&, int, int);
void gemm_q4_slice(const GemmArgs&, int, int);
void quantize_q4_slice(const QuantizeArgs&, int, int);
float fma_loop(long);
int fma_flops_per_iter();
float read_sum(const float*, size_t);
void pack_f32(const float*, int, int, float*, int, int);

#define SIMBA_STR2(x) #x
#define SIMBA_STR(x) SIMBA_STR2(x)

const KernelTable* table() {
  static const KernelTable t = {
      .name = SIMBA_STR(SIMBA_ISA),
      .width = W,
      .gemm_mr = gemm_mr(),
      .gemm = gemm_slice,
      .gemm_pack = gemm_pack,
      .gemm_pack_floats = gemm_pack_floats,
      .rmsnorm = rmsnorm_slice,
      .conv1d = conv1d_slice,
      .scan = scan_slice,
      .score = score_slice,
      .ssd_scan = ssd_scan_slice,
      .gated_norm = gated_norm_slice,
      .ssd_score = ssd_score_slice,
      .gemm_q8 = gemm_q8_slice,
      .quantize = quantize_slice,
      .gemm_q4 = gemm_q4_slice,
      .quantize_q4 = quantize_q4_slice,
      .pack_f32 = pack_f32,
      .fma_loop = fma_loop,
      .fma_flops_per_iter = fma_flops_per_iter(),
      .read_sum = read_sum,
  };
  return &t;
}

}  // namespace SIMBA_ISA
}  // namespace cpu
}  // namespace simba
