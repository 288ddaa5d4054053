// mixer_mamba1.cc — the Mamba-1 mixer of the CUDA engine (cuda/mixer.h), the twin of
// engine/mixer_mamba1.cc, step by step:
//   project  xz  = xn in_proj^T (+b)                   [M, 2E]: x = xz[:, :E], z = xz[:, E:]
//   conv     xc  = silu(conv1d(x) + conv_b)            [M, E]; conv state advanced
//   scan     dbc = xc x_proj^T                         [M, R+2N]: dt_low | B | C
//            Falcon-Mamba (mixer_rms_eps > 0): dt_low, B and C each normed in place (norm_dbc)
//            dt  = dt_low dt_proj^T + dt_b             [M, E] (softplus inside the scan)
//            y   = scan(xc, dt, A, B, C, D) * silu(z)  [M, E]; SSM state advanced
//   gate     fused into the scan (the kernel applies silu(z) as it writes y)
//   out      out = y out_proj^T (+b)                   [M, d]
// A layer's state: the conv state [E, K-1], then the SSM state [E, N] (common/tensor_table.h).
#include <array>

#include "model_cuda.h"

namespace simba {
namespace cuda {

namespace {

class Mamba1DevMixer final : public DevMixer {
 public:
  Mamba1DevMixer(const ModelConfig& c, const DevWeights& w) : c_(c), w_(w) {}

  size_t scratch_bytes(size_t rows, bool scores) const override {
    size_t b = 0;
    for (size_t piece : pieces(rows, scores)) b += align256(piece);
    return b;
  }

  void bind_scratch(char* p, size_t rows, bool scores) override {
    float** dst[] = {&xz_, &xc_, &dbc_, &dt_, &y_, &partial_};
    const std::array<size_t, 6> bytes = pieces(rows, scores);
    for (size_t i = 0; i < bytes.size(); i++) {
      *dst[i] = reinterpret_cast<float*>(p);
      p += align256(bytes[i]);
    }
  }

  void project(const DevMixerIO& io) override { gemm(io.xn, c_.d, layer(io).in_proj.view, xz_, 2 * c_.E, io.M, io.st); }

  void conv(const DevMixerIO& io) override {
    const DevLayer& l = layer(io);
    const StateRef conv{io.states + (size_t)io.layer * layer_state_floats(c_), state_floats(c_), io.slots};
    conv1d(xz_, 2 * c_.E, xc_, c_.E, l.conv_wT.f(), l.conv_b.get() ? l.conv_b.f() : nullptr, c_.E, c_.K, io.seqs,
           io.nseq, io.maxT, conv, io.st);
  }

  void scan(const DevMixerIO& io) override {
    const DevLayer& l = layer(io);
    const int E = c_.E, N = c_.N, R = c_.R;
    const StateRef ssm{io.states + (size_t)io.layer * layer_state_floats(c_) + (size_t)E * (c_.K - 1), state_floats(c_),
                       io.slots};
    gemm(xc_, E, l.x_proj.view, dbc_, ldbc(), io.M, io.st);
    if (c_.mixer_rms_eps > 0) norm_dbc(dbc_, io.M, R, N, c_.mixer_rms_eps, io.st);
    gemm(dbc_, ldbc(), l.dt_proj.view, dt_, E, io.M, io.st);
    selective_scan({.x = xc_,
                    .ldx = E,
                    .dt = dt_,
                    .lddt = E,
                    .B = dbc_ + R,
                    .C = dbc_ + R + N,
                    .ldbc = ldbc(),
                    .z = xz_ + E,
                    .ldz = 2 * E,
                    .AT = l.AT.f(),
                    .D = l.D.f(),
                    .y = y_,
                    .ldy = E,
                    .E = E,
                    .N = N,
                    .write_dt = io.keep_scores,  // the score reads dt after softplus
                    .ssm = ssm,
                    .seqs = io.seqs,
                    .nseq = io.nseq,
                    .maxT = io.maxT},
                   io.st);
  }

  void gate(const DevMixerIO&) override {}  // fused into scan()

  void out(const DevMixerIO& io) override { gemm(y_, c_.E, layer(io).out_proj.view, io.out, c_.d, io.M, io.st); }

  // From what scan() left: xc, dt after softplus, B and C (normed for Falcon-Mamba).
  void score(const DevMixerIO& io, bool local, bool reduce_sum, float* score) override {
    const int E = c_.E, N = c_.N, R = c_.R;
    simba_score({.x = xc_,
                 .ldx = E,
                 .dt = dt_,
                 .lddt = E,
                 .B = dbc_ + R,
                 .C = dbc_ + R + N,
                 .ldbc = ldbc(),
                 .AT = layer(io).AT.f(),
                 .E = E,
                 .N = N,
                 .local = local,
                 .reduce_sum = reduce_sum,
                 .seqs = io.seqs,
                 .nseq = io.nseq,
                 .maxT = io.maxT,
                 .rows = io.M,
                 .partial = partial_,
                 .score = score},
                io.st);
  }

 private:
  int ldbc() const { return c_.R + 2 * c_.N; }
  const DevLayer& layer(const DevMixerIO& io) const { return w_.layers[io.layer]; }
  // Bytes of xz, xc, dbc, dt, y and the score's partial reductions ([ceil(E/32), rows]).
  std::array<size_t, 6> pieces(size_t rows, bool scores) const {
    const size_t E = c_.E;
    return {rows * 2 * E * 4, rows * E * 4, rows * ldbc() * 4,
            rows * E * 4,     rows * E * 4, scores ? (size_t)ceil_div(c_.E, 32) * rows * 4 : 0};
  }

  const ModelConfig c_;
  const DevWeights& w_;
  float *xz_ = nullptr, *xc_ = nullptr, *dbc_ = nullptr, *dt_ = nullptr, *y_ = nullptr, *partial_ = nullptr;
};

}  // namespace

std::unique_ptr<DevMixer> make_device_mixer(const ModelConfig& c, const DevWeights& w) {
  if (c.family == kMamba2) return make_mamba2_device_mixer(c, w);
  return std::make_unique<Mamba1DevMixer>(c, w);
}

}  // namespace cuda
}  // namespace simba
