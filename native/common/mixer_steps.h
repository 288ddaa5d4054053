// mixer_steps.h — the steps of a layer's token mixer, the same on both engines (engine/mixer.h on
// the CPU, cuda/mixer.h on the device), each over every row alive of a batch of sequences:
//   project  the input projection            (Mamba-1: xz = xn in_proj^T)
//   conv     the causal conv over time       (continues from each sequence's conv state)
//   scan     the selective scan              (continues from each sequence's SSM state)
//   gate     the output gate                 (Mamba-1: y *= silu(z), fused into its scan)
//   out      the output projection           (out = y out_proj^T)
// and, for Simba's scan-based criteria, score: a score per row from what scan left behind.
// IO is an engine's view of one layer of one forward (its buffers, sequences, states, stream).
#pragma once

namespace simba {

template <typename IO>
class MixerSteps {
 public:
  virtual ~MixerSteps() = default;

  virtual void project(const IO& io) = 0;
  virtual void conv(const IO& io) = 0;
  virtual void scan(const IO& io) = 0;
  virtual void gate(const IO& io) = 0;
  virtual void out(const IO& io) = 0;
  // score[r] for the rows alive: 'simba' (a token's contribution to the layer's last output) or
  // 'local' (to its own output), reduced over channels by max or sum.
  virtual void score(const IO& io, bool local, bool reduce_sum, float* score) = 0;

  // out = mixer(xn) for the layer: every step in order.
  void run(const IO& io) {
    project(io);
    conv(io);
    scan(io);
    gate(io);
    out(io);
  }
};

}  // namespace simba
