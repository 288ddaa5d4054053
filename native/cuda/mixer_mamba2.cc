// mixer_mamba2.cc — the Mamba-2 (SSD) mixer of the CUDA engine (cuda/mixer.h), the twin of
// engine/mixer_mamba2.cc, step by step:
//   project  zxbcdt = xn in_proj^T (+b)                    [M, 2E+2GN+H]: z | x | B | C | dt
//   conv     xbc    = silu(conv1d(x | B | C) + conv_b)      [M, CH = E+2GN]; conv state advanced
//   scan     dt     = clamp(softplus(dt + dt_bias), dt_limit) (ssd_dt, in place in zxbcdt)
//            y      = SSD(xbc's x, dt, A, B, C) + D x       [M, E]; SSM state [H, P, N] advanced
//   gate     y      = rmsnorm_per_group(y * silu(z)) * gate_norm   (G groups of E/G channels)
//   out      out    = y out_proj^T (+b)                     [M, d]
// A layer's state: the conv state [CH, K-1] (x, B and C together), then the SSM state [H, P, N].
#include <array>
#include <string>

#include "model_cuda.h"

namespace simba {
namespace cuda {

namespace {

class Mamba2DevMixer final : public DevMixer {
 public:
  Mamba2DevMixer(const ModelConfig& c, const DevWeights& w)
      : c_(c), w_(w), IR_(in_proj_rows(c)), CH_(conv_channels(c)), GN_(c.G * c.N) {
    // heads and groups are grid dimensions of the scan and the gated norm
    if (c.H > 65535)
      fail(SIMBA_E_CONFIG,
           "config: the CUDA engine runs at most 65535 Mamba-2 heads (nHeads " + std::to_string(c.H) + ")");
  }

  size_t scratch_bytes(size_t rows, bool scores) const override {
    size_t b = 0;
    for (size_t piece : pieces(rows, scores)) b += align256(piece);
    return b;
  }

  void bind_scratch(char* p, size_t rows, bool scores) override {
    float** dst[] = {&zxbcdt_, &xbc_, &y_, &decay_};
    const std::array<size_t, 4> bytes = pieces(rows, scores);
    for (size_t i = 0; i < bytes.size(); i++) {
      *dst[i] = reinterpret_cast<float*>(p);
      p += align256(bytes[i]);
    }
  }

  void project(const DevMixerIO& io) override { gemm(io.xn, c_.d, layer(io).in_proj.view, zxbcdt_, IR_, io.M, io.st); }

  void conv(const DevMixerIO& io) override {
    const DevLayer& l = layer(io);
    conv1d(zxbcdt_ + c_.E, IR_, xbc_, CH_, l.conv_wT.f(), l.conv_b.get() ? l.conv_b.f() : nullptr, CH_, c_.K, io.seqs,
           io.nseq, io.maxT, StateRef{layer_state(io), state_floats(c_), io.slots}, io.st);
  }

  void scan(const DevMixerIO& io) override {
    const DevLayer& l = layer(io);
    ssd_dt(dt(), IR_, l.dt_bias.f(), io.M, c_.H, c_.dt_min, c_.dt_max, io.st);
    ssd_scan({.x = xbc_,
              .ldx = CH_,
              .B = xbc_ + c_.E,
              .C = xbc_ + c_.E + GN_,
              .ldbc = CH_,
              .dt = dt(),
              .lddt = IR_,
              .A = l.AT.f(),
              .D = l.D.f(),
              .y = y_,
              .ldy = c_.E,
              .H = c_.H,
              .P = head_dim(c_),
              .G = c_.G,
              .N = c_.N,
              .ssm = {layer_state(io) + (size_t)CH_ * (c_.K - 1), state_floats(c_), io.slots},
              .seqs = io.seqs,
              .nseq = io.nseq,
              .maxT = io.maxT,
              .rows = io.M,
              .chunk_states = chunk_buffer(io),
              .chunk_floats = chunks_.bytes() / 4},
             io.st);
  }

  void gate(const DevMixerIO& io) override {
    gated_norm(y_, c_.E, zxbcdt_, IR_, layer(io).gate_norm.f(), io.M, c_.E, c_.G, c_.eps, io.st);
  }

  void out(const DevMixerIO& io) override { gemm(y_, c_.E, layer(io).out_proj.view, io.out, c_.d, io.M, io.st); }

  // From what scan() left: x, B, C (post-conv) and dt (after the softplus and clamp).
  void score(const DevMixerIO& io, bool local, bool reduce_sum, float* score) override {
    ssd_score({.x = xbc_,
               .ldx = CH_,
               .dt = dt(),
               .lddt = IR_,
               .B = xbc_ + c_.E,
               .C = xbc_ + c_.E + GN_,
               .ldbc = CH_,
               .A = layer(io).AT.f(),
               .H = c_.H,
               .P = head_dim(c_),
               .G = c_.G,
               .N = c_.N,
               .local = local,
               .reduce_sum = reduce_sum,
               .seqs = io.seqs,
               .nseq = io.nseq,
               .maxT = io.maxT,
               .rows = io.M,
               .decay = decay_,
               .score = score},
              io.st);
  }

 private:
  float* dt() const { return zxbcdt_ + 2 * (size_t)c_.E + 2 * (size_t)GN_; }
  // The chunk buffer of a prefill (a sequence of more than one kSsdChunk-token chunk), grown to the largest
  // call so far and kept; null for decode steps and where the device has no memory for it (the scan
  // then walks each sequence's chunks in one block: the same results, less parallel).
  float* chunk_buffer(const DevMixerIO& io) {
    if (io.maxT <= kSsdChunk) return nullptr;
    const size_t need = ssd_chunk_buffer_floats(io.M, io.nseq, c_.H, head_dim(c_), c_.N) * 4;
    if (chunks_.bytes() < need) {
      try {
        chunks_.alloc(need + need / 8, "Mamba-2 chunk states");
      } catch (const Error& e) {
        if (e.code() != SIMBA_E_OOM) throw;
        chunks_.release();
      }
    }
    return chunks_.bytes() >= need ? chunks_.f() : nullptr;
  }
  const DevLayer& layer(const DevMixerIO& io) const { return w_.layers[io.layer]; }
  // Sequence 0's state of this layer (the others at slot(i) * state_floats, StateRef).
  float* layer_state(const DevMixerIO& io) const { return io.states + (size_t)io.layer * layer_state_floats(c_); }
  // Bytes of zxbcdt, xbc, y and the score's decays ([rows, H]).
  std::array<size_t, 4> pieces(size_t rows, bool scores) const {
    return {rows * IR_ * 4, rows * CH_ * 4, rows * c_.E * 4, scores ? rows * c_.H * 4 : 0};
  }

  const ModelConfig c_;
  const DevWeights& w_;
  const int IR_, CH_, GN_;  // in_proj rows, conv channels, G N
  float *zxbcdt_ = nullptr, *xbc_ = nullptr, *y_ = nullptr, *decay_ = nullptr;
  DevBuf chunks_;  // chunk_buffer
};

}  // namespace

std::unique_ptr<DevMixer> make_mamba2_device_mixer(const ModelConfig& c, const DevWeights& w) {
  return std::make_unique<Mamba2DevMixer>(c, w);
}

}  // namespace cuda
}  // namespace simba
