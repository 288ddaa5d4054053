// safetensors_reader.cc — see safetensors_reader.h.
#include "tools/gpu_check/safetensors_reader.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/tensor_table.h"
#include "tools/gpu_check/json.h"

namespace simba {
namespace tools {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot be opened");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

float half_to_float(uint16_t h) {  // IEEE binary16 -> f32
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float f;
  if (exp == 0) f = std::ldexp((float)man, -24);
  else if (exp == 31) f = man ? NAN : INFINITY;
  else f = std::ldexp((float)(man | 0x400), (int)exp - 25);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u |= sign;
  std::memcpy(&f, &u, 4);
  return f;
}

// config.json (Hugging Face MambaForCausalLM / FalconMambaForCausalLM or state-spaces) -> ModelConfig;
// pad: vocabulary rounding.
ModelConfig parse_config(const Json& j, const std::string& path) {
  ModelConfig c;
  auto get_int = [&](const Json& o, const char* k) { return o.at(k).as_int(k); };
  auto opt_bool = [&](const Json& o, const char* k, bool dflt) {
    return o.has(k) && o.at(k).kind == Json::Bool ? o.at(k).b : dflt;
  };
  try {
    const bool falcon = j.has("model_type") && j.at("model_type").str == "falcon_mamba";
    if (j.has("model_type") && j.at("model_type").str != "mamba" && !falcon)
      throw std::runtime_error("model_type '" + j.at("model_type").str + "' is not Mamba-1 or Falcon-Mamba");
    if (falcon) c.mixer_rms_eps = j.has("mixer_rms_eps") ? (float)j.at("mixer_rms_eps").num : 1e-6f;
    if (j.has("hidden_size")) {  // Hugging Face layout
      c.vocab = get_int(j, "vocab_size");
      c.d = get_int(j, "hidden_size");
      c.L = get_int(j, "num_hidden_layers");
      c.E = j.has("intermediate_size") ? get_int(j, "intermediate_size") : get_int(j, "expand") * c.d;
      c.N = get_int(j, "state_size");
      c.K = get_int(j, "conv_kernel");
      const Json& r = j.at("time_step_rank");
      c.R = r.kind == Json::String ? (c.d + 15) / 16 : r.as_int("time_step_rank");
      c.proj_bias = opt_bool(j, "use_bias", false);
      c.conv_bias = opt_bool(j, "use_conv_bias", true);
      c.tie = opt_bool(j, "tie_word_embeddings", true);
      if (j.has("layer_norm_epsilon")) c.eps = (float)j.at("layer_norm_epsilon").num;
    } else {  // state-spaces layout
      c.d = get_int(j, "d_model");
      c.L = get_int(j, "n_layer");
      c.vocab = get_int(j, "vocab_size");
      const int pad = j.has("pad_vocab_size_multiple") ? get_int(j, "pad_vocab_size_multiple") : 1;
      if (pad > 1) c.vocab = (c.vocab + pad - 1) / pad * pad;
      static const Json empty = Json::parse("{}");
      const Json& ssm = j.has("ssm_cfg") ? j.at("ssm_cfg") : empty;
      c.N = ssm.has("d_state") ? get_int(ssm, "d_state") : 16;
      c.K = ssm.has("d_conv") ? get_int(ssm, "d_conv") : 4;
      c.E = (ssm.has("expand") ? get_int(ssm, "expand") : 2) * c.d;
      c.R = ssm.has("dt_rank") && ssm.at("dt_rank").kind == Json::Number ? get_int(ssm, "dt_rank") : (c.d + 15) / 16;
      c.conv_bias = opt_bool(ssm, "conv_bias", true);
      c.proj_bias = opt_bool(ssm, "bias", false);
      c.tie = opt_bool(j, "tie_embeddings", true);
      if (j.has("norm_epsilon")) c.eps = (float)j.at("norm_epsilon").num;
    }
  } catch (const std::exception& e) { throw std::runtime_error(path + ": " + e.what()); }
  return c;
}

struct Stored {
  std::string dtype;
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;
};

}  // namespace

LoadedModel load_model_dir(const std::string& dir) {
  LoadedModel out;
  out.source = dir;
  const std::string cfg_path = dir + "/config.json", st_path = dir + "/model.safetensors";
  out.cfg = parse_config(Json::parse(read_file(cfg_path)), cfg_path);
  const ModelConfig& c = out.cfg;
  const std::string blob = read_file(st_path);
  if (blob.size() < 8) throw std::runtime_error(st_path + ": too short for a safetensors file");
  uint64_t hlen;
  std::memcpy(&hlen, blob.data(), 8);
  if (hlen > blob.size() - 8)
    throw std::runtime_error(st_path + ": header length " + std::to_string(hlen) + " exceeds the file");
  Json header = Json::parse(blob.substr(8, hlen));
  const size_t data0 = 8 + hlen;
  std::map<std::string, Stored> stored;
  for (const auto& [name, v] : header.keys) {
    if (name == "__metadata__") continue;
    Stored s;
    s.dtype = v.at("dtype").str;
    for (const Json& d : v.at("shape").items) s.shape.push_back((int64_t)d.num);
    s.begin = (size_t)v.at("data_offsets").items.at(0).num;
    s.end = (size_t)v.at("data_offsets").items.at(1).num;
    if (s.end < s.begin || data0 + s.end > blob.size())
      throw std::runtime_error(st_path + ": tensor '" + name + "' lies outside the file");
    stored[name] = s;
  }
  // Reads tensor `src` as f32, checking its element count (rows of a padded vocabulary: zeros appended).
  auto take = [&](const std::string& src, size_t count, const std::string& engine, int layer, size_t row = 0) {
    auto it = stored.find(src);
    if (it == stored.end()) throw std::runtime_error(st_path + ": missing tensor '" + src + "'");
    const Stored& s = it->second;
    size_t n = 1;
    for (int64_t d : s.shape) n *= (size_t)d;
    const size_t esize = s.dtype == "F32" ? 4 : (s.dtype == "F16" || s.dtype == "BF16") ? 2 : 0;
    if (!esize)
      throw std::runtime_error(st_path + ": tensor '" + src + "' has dtype " + s.dtype +
                               " (expected F32, F16 or BF16)");
    if (n * esize != s.end - s.begin)
      throw std::runtime_error(st_path + ": tensor '" + src + "' size does not match its shape");
    if (n != count && !(row && n < count && n % row == 0))
      throw std::runtime_error(st_path + ": tensor '" + src + "' has " + std::to_string(n) +
                               " values, the config expects " + std::to_string(count));
    EngineTensor t{engine, layer, std::vector<float>(count, 0.f)};
    const char* p = blob.data() + data0 + s.begin;
    for (size_t i = 0; i < n; i++) {
      if (esize == 4) std::memcpy(&t.data[i], p + 4 * i, 4);
      else {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        if (s.dtype == "F16") t.data[i] = half_to_float(h);
        else {
          uint32_t u = (uint32_t)h << 16;
          std::memcpy(&t.data[i], &u, 4);
        }
      }
    }
    out.tensors.push_back(std::move(t));
  };
  const size_t V = c.vocab, d = c.d, E = c.E, N = c.N, R = c.R, K = c.K;
  const std::string emb =
      stored.count("backbone.embedding.weight") ? "backbone.embedding.weight" : "backbone.embeddings.weight";
  take(emb, V * d, "embedding", -1, d);
  take("backbone.norm_f.weight", d, "norm_f", -1);
  if (!c.tie) take("lm_head.weight", V * d, "lm_head", -1, d);
  for (int l = 0; l < c.L; l++) {
    const std::string p = "backbone.layers." + std::to_string(l) + ".";
    take(p + "norm.weight", d, "norm", l);
    take(p + "mixer.in_proj.weight", 2 * E * d, "in_proj", l);
    if (c.proj_bias) take(p + "mixer.in_proj.bias", 2 * E, "in_proj_bias", l);
    take(p + "mixer.conv1d.weight", E * K, "conv_w", l);
    if (c.conv_bias) take(p + "mixer.conv1d.bias", E, "conv_b", l);
    take(p + "mixer.x_proj.weight", (R + 2 * N) * E, "x_proj", l);
    take(p + "mixer.dt_proj.weight", E * R, "dt_proj_w", l);
    take(p + "mixer.dt_proj.bias", E, "dt_proj_b", l);
    take(p + "mixer.A_log", E * N, "A_log", l);
    take(p + "mixer.D", E, "D", l);
    take(p + "mixer.out_proj.weight", d * E, "out_proj", l);
    if (c.proj_bias) take(p + "mixer.out_proj.bias", d, "out_proj_bias", l);
  }
  return out;
}

}  // namespace tools
}  // namespace simba
