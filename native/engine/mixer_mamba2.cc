// mixer_mamba2.cc — the Mamba-2 (SSD) mixer of the CPU engine (mixer.h), as state-spaces/mamba's
// modules/mamba2.py with rmsnorm=True, norm_before_gate=False, step by step:
//   project  zxbcdt = xn in_proj^T (+b)                    [M, 2E+2GN+H]: z | x | B | C | dt
//   conv     xbc    = silu(conv1d(x | B | C) + conv_b)      [M, CH = E+2GN]; conv state advanced
//   scan     dt     = clamp(softplus(dt + dt_bias), dt_limit) (in place, in zxbcdt)
//            y      = SSD(xbc's x, dt, A, B, C) + D x       [M, E]; SSM state [H, P, N] advanced
//   gate     y      = rmsnorm_per_group(y * silu(z)) * gate_norm   (G groups of E/G channels)
//   out      out    = y out_proj^T (+b)                     [M, d]
// A layer's state: the conv state [CH, K-1] (x, B and C together), then the SSM state [H, P, N].
// Glossary (tensor_table.h): H heads of P = E/H channels, G groups of B and C, head h reads group
// h / (H/G), CH = E + 2GN.
#include <memory>

#include "cpu/dispatch.h"
#include "engine/model.h"

namespace simba {

// Tokens per chunk of the SSD prefill (cpu/ssd_scan.cc): bench/RESULTS.md, "Mamba-2 on the CPU".
constexpr int kSsdChunkCpu = 64;

size_t mamba2_floats_per_row(const ModelConfig& c) {
  return (size_t)in_proj_rows(c) + (size_t)conv_channels(c) + (size_t)c.E;  // zxbcdt, xbc, y
}

namespace {

class Mamba2Mixer final : public Mixer {
 public:
  Mamba2Mixer(const ModelConfig& c, const Weights& w)
      : c_(c), w_(w), IR_(in_proj_rows(c)), CH_(conv_channels(c)), GN_(c.G * c.N) {}

  size_t floats_per_row() const override { return mamba2_floats_per_row(c_); }

  void bind_scratch(float* p, size_t rows) override {
    zxbcdt_ = p;
    xbc_ = zxbcdt_ + rows * IR_;
    y_ = xbc_ + rows * CH_;
  }

  void bind_states(int layer, float* const* states, cpu::SeqSlice* seqs, int nseq) const override {
    for (int s = 0; s < nseq; s++) {
      float* st = states[s] + (size_t)layer * layer_state_floats(c_);
      seqs[s].conv = st;
      seqs[s].ssm = st + (size_t)CH_ * (c_.K - 1);
    }
  }

  void tensor_stored(const std::string&, int) override {}

  void project(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::gemm(io.xn, c_.d, l.in_proj.w, bias(l.in_proj), zxbcdt_, IR_, io.M);
  }

  void conv(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::conv1d({.xin = zxbcdt_ + c_.E,
                 .ldx = IR_,
                 .out = xbc_,
                 .ldo = CH_,
                 .wT = l.conv_wT.data(),
                 .bias = l.conv_b.empty() ? nullptr : l.conv_b.data(),
                 .E = CH_,
                 .K = c_.K,
                 .seqs = io.seqs,
                 .nseq = io.nseq});
  }

  void scan(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::ssd_scan({.x = xbc_,
                   .ldx = CH_,
                   .B = xbc_ + c_.E,
                   .C = xbc_ + c_.E + GN_,
                   .ldbc = CH_,
                   .dt = dt(),
                   .lddt = IR_,
                   .dt_bias = l.dt_bias.data(),
                   .A = l.AT.data(),
                   .D = l.D.data(),
                   .dt_min = c_.dt_min,
                   .dt_max = c_.dt_max,
                   .y = y_,
                   .ldy = c_.E,
                   .H = c_.H,
                   .P = head_dim(c_),
                   .G = c_.G,
                   .N = c_.N,
                   .chunk = kSsdChunkCpu,
                   .seqs = io.seqs,
                   .nseq = io.nseq});
  }

  void gate(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::gated_norm(
        {.y = y_, .ldy = c_.E, .z = zxbcdt_, .ldz = IR_, .w = l.gate_norm.data(), .E = c_.E, .G = c_.G, .eps = c_.eps},
        io.M);
  }

  void out(const MixerIO& io) override {
    const Layer& l = w_.layers[io.layer];
    cpu::gemm(y_, c_.E, l.out_proj.w, bias(l.out_proj), io.out, c_.d, io.M);
  }

  // From what scan() left: x, B, C (post-conv) and dt (after the softplus and clamp).
  void score(const MixerIO& io, bool local, bool reduce_sum, float* score) override {
    const Layer& l = w_.layers[io.layer];
    cpu::ssd_score({.x = xbc_,
                    .ldx = CH_,
                    .dt = dt(),
                    .lddt = IR_,
                    .B = xbc_ + c_.E,
                    .C = xbc_ + c_.E + GN_,
                    .ldbc = CH_,
                    .A = l.AT.data(),
                    .H = c_.H,
                    .P = head_dim(c_),
                    .G = c_.G,
                    .N = c_.N,
                    .local = local,
                    .reduce_sum = reduce_sum},
                   io.seqs, io.nseq, score, io.M);
  }

 private:
  float* dt() const { return zxbcdt_ + 2 * (size_t)c_.E + 2 * (size_t)GN_; }
  static const float* bias(const Linear& lin) { return lin.bias.empty() ? nullptr : lin.bias.data(); }

  const ModelConfig c_;
  const Weights& w_;
  const int IR_, CH_, GN_;                                   // in_proj rows, conv channels, G N
  float *zxbcdt_ = nullptr, *xbc_ = nullptr, *y_ = nullptr;  // bind_scratch
};

}  // namespace

std::unique_ptr<Mixer> make_mamba2_mixer(const ModelConfig& c, const Weights& w) {
  return std::make_unique<Mamba2Mixer>(c, w);
}

}  // namespace simba
