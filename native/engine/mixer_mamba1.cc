// mixer_mamba1.cc — the Mamba-1 mixer of the CPU engine (mixer.h), step by step:
//   project  xz  = xn in_proj^T (+b)                   [M, 2E]: x = xz[:, :E], z = xz[:, E:]
//   conv     xc  = silu(conv1d(x) + conv_b)            [M, E]; conv state advanced
//   scan     dbc = xc x_proj^T                         [M, R+2N]: dt_low | B | C
//            Falcon-Mamba (mixer_rms_eps > 0): dt_low, B and C each /= sqrt(mean(v^2) + mixer_rms_eps),
//            in place, so dt_proj, the scan and the Simba score all read the normed values
//            dt  = dt_low dt_proj^T + dt_b             [M, E] (softplus inside the scan)
//            y   = scan(xc, dt, A, B, C, D) * silu(z)  [M, E]; SSM state advanced
//   gate     fused into the scan (the kernel applies silu(z) as it writes y)
//   out      out = y out_proj^T (+b)                   [M, d]
// A layer's state: the conv state [E, K-1], then the SSM state [E, N] (common/tensor_table.h).
#include <cmath>
#include <memory>
#include <vector>

#include "cpu/dispatch.h"
#include "engine/model.h"

namespace simba {

size_t mamba1_floats_per_row(const ModelConfig& c) {
  return 2 * (size_t)c.E + (size_t)c.E + ((size_t)c.R + 2 * (size_t)c.N) + 2 * (size_t)c.E;  // xz, xc, dbc, dt, y
}

namespace {

// Falcon-Mamba's weightless RMSNorm of each row's three slices of dbc [M, R+2N]: dt_low [0, R),
// B [R, R+N), C [R+N, R+2N), each over its own width. Sums in double: R reaches 256 (falcon-mamba-7b).
void norm_dbc(float* dbc, int M, int R, int N, float eps) {
  const int start[3] = {0, R, R + N}, width[3] = {R, N, N};
  const size_t ld = (size_t)R + 2 * (size_t)N;
  for (int r = 0; r < M; r++)
    for (int p = 0; p < 3; p++) {
      float* v = dbc + r * ld + start[p];
      double ss = 0;
      for (int i = 0; i < width[p]; i++) ss += (double)v[i] * v[i];
      const float inv = (float)(1.0 / std::sqrt(ss / width[p] + eps));
      for (int i = 0; i < width[p]; i++) v[i] *= inv;
    }
}

class Mamba1Mixer final : public Mixer {
 public:
  Mamba1Mixer(const ModelConfig& c, const Weights& w) : c_(c), w_(w), a_state_(c.L) {}

  size_t floats_per_row() const override { return mamba1_floats_per_row(c_); }

  void bind_scratch(float* p, size_t rows) override {
    auto carve = [&p](size_t n) {
      float* q = p;
      p += n;
      return q;
    };
    xz_ = carve(rows * 2 * c_.E);
    xc_ = carve(rows * c_.E);
    dbc_ = carve(rows * ldbc());
    dt_ = carve(rows * c_.E);
    y_ = carve(rows * c_.E);
  }

  void bind_states(int layer, float* const* states, cpu::SeqSlice* seqs, int nseq) const override {
    for (int s = 0; s < nseq; s++) {
      float* st = states[s] + (size_t)layer * layer_state_floats(c_);
      seqs[s].conv = st;
      seqs[s].ssm = st + (size_t)c_.E * (c_.K - 1);
    }
  }

  // The decode scan reads A in the state's [E][N] layout; the weights hold A^T [N][E].
  void tensor_stored(const std::string& name, int layer) override {
    if (layer < 0 || name != tensor_name(TensorId::kALog)) return;
    a_state_[layer].resize((size_t)c_.E * c_.N);
    apply_layout(Layout::kTransposed, w_.layers[layer].AT.data(), c_.N, c_.E, a_state_[layer].data());
  }

  void project(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::gemm(io.xn, c_.d, l.in_proj.w, bias(l.in_proj), xz_, 2 * c_.E, io.M);
  }

  void conv(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::conv1d({.xin = xz_,
                 .ldx = 2 * c_.E,
                 .out = xc_,
                 .ldo = c_.E,
                 .wT = l.conv_wT.data(),
                 .bias = l.conv_b.empty() ? nullptr : l.conv_b.data(),
                 .E = c_.E,
                 .K = c_.K,
                 .seqs = io.seqs,
                 .nseq = io.nseq});
  }

  void scan(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    const int E = c_.E, N = c_.N, R = c_.R;
    cpu::gemm(xc_, E, l.x_proj.w, nullptr, dbc_, ldbc(), io.M);
    if (c_.mixer_rms_eps > 0) norm_dbc(dbc_, io.M, R, N, c_.mixer_rms_eps);
    cpu::gemm(dbc_, ldbc(), l.dt_proj.w, l.dt_proj.bias.data(), dt_, E, io.M);
    cpu::scan({.x = xc_,
               .ldx = E,
               .dt = dt_,
               .lddt = E,
               .B = dbc_ + R,
               .C = dbc_ + R + N,
               .ldbc = ldbc(),
               .z = xz_ + E,
               .ldz = 2 * E,
               .AT = l.AT.data(),
               .A = a_state_[io.layer].data(),
               .D = l.D.data(),
               .y = y_,
               .ldy = E,
               .E = E,
               .N = N,
               .seqs = io.seqs,
               .nseq = io.nseq});
  }

  void gate(const MixerIO&) override {}  // fused into scan()

  void out(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::gemm(y_, c_.E, l.out_proj.w, bias(l.out_proj), io.out, c_.d, io.M);
  }

  // From what scan() left: xc, dt after softplus, B and C (normed for Falcon-Mamba).
  void score(const MixerIO& io, bool local, bool reduce_sum, float* score) override {
    const Layer& l = w_.layers[io.layer];
    const int E = c_.E, N = c_.N, R = c_.R;
    cpu::score({.x = xc_,
                .ldx = E,
                .dt = dt_,
                .lddt = E,
                .B = dbc_ + R,
                .C = dbc_ + R + N,
                .ldbc = ldbc(),
                .AT = l.AT.data(),
                .E = E,
                .N = N,
                .local = local,
                .reduce_sum = reduce_sum,
                .seqs = io.seqs,
                .nseq = io.nseq,
                .partial = nullptr},
               score, io.M);
  }

 private:
  int ldbc() const { return c_.R + 2 * c_.N; }
  static const float* bias(const Linear& lin) { return lin.bias.empty() ? nullptr : lin.bias.data(); }

  const ModelConfig c_;
  const Weights& w_;
  std::vector<std::vector<float>> a_state_;  // per layer, A = -exp(A_log) in the state's [E][N] layout
  float *xz_ = nullptr, *xc_ = nullptr, *dbc_ = nullptr, *dt_ = nullptr, *y_ = nullptr;  // bind_scratch
};

}  // namespace

std::unique_ptr<Mixer> make_mamba1_mixer(const ModelConfig& c, const Weights& w) {
  return std::make_unique<Mamba1Mixer>(c, w);
}

}  // namespace simba
