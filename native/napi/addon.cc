// addon.cc — the N-API surface (node-addon-api): argument checks, AsyncWorkers, error mapping.
// No numerics here. Every heavy call (tensor upload, random init, forward) runs on a libuv
// worker thread and resolves a Promise; C++ exceptions become rejected Promises / JS Errors with
// the exception's message and its class as err.code (napi_errors.h).
#include <napi.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/tensor_table.h"
#include "cpu/dispatch.h"
#include "engine/cuda_loader.h"
#include "engine/mapped_tensor.h"
#include "engine/model.h"
#include "napi/napi_errors.h"
#include "napi/sampling_bindings.h"

namespace simba {

void register_kernel_bindings(Napi::Env env, Napi::Object exports);    // kernel_bindings.cc
void register_cuda_bindings(Napi::Env env, Napi::Object exports);      // cuda_bindings.cc
void register_sampling_bindings(Napi::Env env, Napi::Object exports);  // sampling_bindings.cc
void register_grammar_bindings(Napi::Env env, Napi::Object exports);   // grammar_bindings.cc

namespace {

// Runs fn on a worker thread, resolves with make(env) on the main thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Make = std::function<Napi::Value(Napi::Env)>;
  PromiseWorker(Napi::Env env, Work work, Make make)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        make_(std::move(make)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  // Keep JS values (typed arrays whose memory the work reads or writes) alive until done.
  void Keep(Napi::Value v) { kept_.push_back(Napi::Persistent(v.As<Napi::Object>())); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      code_ = status_of(e);
      SetError(e.what());
    } catch (...) { SetError("unknown native error"); }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(make_ ? make_(env) : env.Undefined());
    } catch (const Napi::Error& e) { deferred_.Reject(e.Value()); }
  }
  void OnError(const Napi::Error& e) override {
    e.Value().Set("code", Napi::String::New(Env(), status_name(code_)));
    deferred_.Reject(e.Value());
  }

 private:
  simba_status_t code_ = SIMBA_E_NATIVE;  // the class of the error Execute caught
  Napi::Promise::Deferred deferred_;
  Work work_;
  Make make_;
  std::vector<Napi::ObjectReference> kept_;
};

int GetInt(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw ArgError(o.Env(), std::string("config.") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != (double)(int)d) throw ArgError(o.Env(), std::string("config.") + key + " must be an integer");
  return (int)d;
}
bool GetBool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) throw ArgError(o.Env(), std::string("config.") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// The engine config from a JS object with the NativeConfig fields (bindings.ts).
ModelConfig ReadConfig(const Napi::Value& v) {
  if (!v.IsObject()) throw ArgError(v.Env(), "config object required");
  Napi::Object c = v.As<Napi::Object>();
  Napi::Value eps = c.Get("eps");
  if (!eps.IsNumber()) throw ArgError(v.Env(), "config.eps must be a number");
  Napi::Value mixer_eps = c.Get("mixerRmsEps");  // optional: absent for Mamba-1
  if (!mixer_eps.IsUndefined() && !mixer_eps.IsNumber())
    throw ArgError(v.Env(), "config.mixerRmsEps must be a number (0 or absent: Mamba-1)");
  // Mamba-2's fields (bindings.ts NativeConfig.mamba2): absent for Mamba-1 and Falcon-Mamba
  int family = kMamba1, H = 0, G = 0;
  float dt_min = 0.f, dt_max = 0.f;
  Napi::Value m2 = c.Get("mamba2");
  if (!m2.IsUndefined()) {
    if (!m2.IsObject()) throw ArgError(v.Env(), "config.mamba2 must be an object { nHeads, nGroups, dtLimit }");
    Napi::Object o = m2.As<Napi::Object>();
    family = kMamba2;
    H = GetInt(o, "nHeads");
    G = GetInt(o, "nGroups");
    Napi::Value lim = o.Get("dtLimit");
    Napi::Value lo = lim.IsArray() ? lim.As<Napi::Array>().Get(0u) : Napi::Value(),
                hi = lim.IsArray() ? lim.As<Napi::Array>().Get(1u) : Napi::Value();
    if (!lim.IsArray() || lim.As<Napi::Array>().Length() != 2 || !lo.IsNumber() || !hi.IsNumber())
      throw ArgError(v.Env(), "config.mamba2.dtLimit must be an array of two numbers [low, high]");
    dt_min = lo.As<Napi::Number>().FloatValue();
    dt_max = hi.As<Napi::Number>().FloatValue();
  }
  return {.vocab = GetInt(c, "vocabSize"),
          .d = GetInt(c, "dModel"),
          .L = GetInt(c, "nLayer"),
          .E = GetInt(c, "dInner"),
          .N = GetInt(c, "dState"),
          .R = GetInt(c, "dtRank"),
          .K = GetInt(c, "dConv"),
          .conv_bias = GetBool(c, "convBias"),
          .proj_bias = GetBool(c, "projBias"),
          .tie = GetBool(c, "tieEmbeddings"),
          .eps = eps.As<Napi::Number>().FloatValue(),
          .mixer_rms_eps = mixer_eps.IsNumber() ? mixer_eps.As<Napi::Number>().FloatValue() : 0.f,
          .family = family,
          .H = H,
          .G = G,
          .dt_min = dt_min,
          .dt_max = dt_max};
}

template <typename T>
constexpr napi_typedarray_type kArrayType = napi_float32_array;
template <>
constexpr napi_typedarray_type kArrayType<int32_t> = napi_int32_array;

template <typename T>
Napi::TypedArrayOf<T> ExpectArray(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kArrayType<T>)
    throw ArgError(v.Env(), std::string(what) + (kArrayType<T> == napi_int32_array ? " must be an Int32Array"
                                                                                   : " must be a Float32Array"));
  return v.As<Napi::TypedArrayOf<T>>();
}

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Engine",
        {InstanceMethod("setTensor", &Engine::SetTensor),
         InstanceMethod("setTensorsFromFiles", &Engine::SetTensorsFromFiles),
         InstanceMethod("randomize", &Engine::Randomize), InstanceMethod("finalize", &Engine::Finalize),
         InstanceMethod("forward", &Engine::Forward), InstanceMethod("info", &Engine::Info),
         InstanceMethod("dispose", &Engine::Dispose), InstanceMethod("allocState", &Engine::AllocState),
         InstanceMethod("freeState", &Engine::FreeState), InstanceMethod("readState", &Engine::ReadState),
         InstanceMethod("writeState", &Engine::WriteState)});
  }

  // new Engine(config, {bf16, device?: 'cpu' | 'cuda'})
  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject())
      throw ArgError(env, "Engine(config, options): config object required");
    const ModelConfig cfg = ReadConfig(info[0]);
    bool bf16 = false, int8 = false, int4 = false, cuda = false;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Value b = info[1].As<Napi::Object>().Get("bf16");
      bf16 = b.IsBoolean() && b.As<Napi::Boolean>().Value();
      Napi::Value q = info[1].As<Napi::Object>().Get("int8");  // int8 weights (CPU only)
      int8 = q.IsBoolean() && q.As<Napi::Boolean>().Value();
      Napi::Value q4 = info[1].As<Napi::Object>().Get("int4");  // int4 weights (CPU only)
      int4 = q4.IsBoolean() && q4.As<Napi::Boolean>().Value();
      Napi::Value dev = info[1].As<Napi::Object>().Get("device");
      if (dev.IsString()) {
        std::string d = dev.As<Napi::String>();
        if (d != "cpu" && d != "cuda") throw ArgError(env, "Engine: options.device must be 'cpu' or 'cuda'");
        cuda = d == "cuda";
      }
    }
    try {
      if (cuda && (int8 || int4))
        fail(SIMBA_E_ARG, std::string(int4 ? "int4" : "int8") +
                              " weights run on the CPU only (use weights 'bf16' with device 'cuda')");
      if (cuda) cuda_ = std::make_shared<CudaModel>(cfg, bf16);  // throws the reason CUDA is not available
      else
        model_ = std::make_shared<Model>(cfg, int4   ? cpu::WeightFormat::Q4
                                              : int8 ? cpu::WeightFormat::Q8
                                              : bf16 ? cpu::WeightFormat::BF16
                                                     : cpu::WeightFormat::F32);
    } catch (const std::exception& e) { throw NativeError(env, e); }
  }

 private:
  std::shared_ptr<Model> Live(Napi::Env env) {
    if (!model_) throw CodedError(env, "E_DISPOSED", "the model has been disposed");
    return model_;
  }
  // Calls f with the live engine: the CUDA model (device 'cuda') or the CPU model. Both have the
  // same method names, so f is written once (a generic lambda).
  template <typename F>
  Napi::Value Visit(Napi::Env env, F&& f) {
    if (cuda_) return f(cuda_);
    return f(Live(env));
  }

  // setTensor(name, layer, Float32Array) -> Promise<void>
  Napi::Value SetTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Visit(env, [&](auto m) -> Napi::Value {
      if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber())
        throw ArgError(env, "setTensor(name, layer, data: Float32Array)");
      auto data = ExpectArray<float>(info[2], "tensor data");
      std::string name = info[0].As<Napi::String>();
      int layer = info[1].As<Napi::Number>().Int32Value();
      const float* p = data.Data();
      size_t n = data.ElementLength();
      auto* w = new PromiseWorker(
          env, [m, name, layer, p, n] { m->set_tensor(name, layer, p, n); }, nullptr);
      w->Keep(data);
      w->Queue();
      return w->Promise();
    });
  }

  // setTensorsFromFiles([{name, layer, file, offset, bytes, dtype: 'F32'|'F16'|'BF16'|'Q8_0'|'Q4_0'|'Q4_1'|
  //   'Q4_K'|'Q5_K'|'Q6_K', count, padTo?, checkFinite?, transform?: 'logOfNegated'}], onDone?: (done) => void) ->
  //   Promise<{index, firstBad, badValue}>: the tensors read through mmap (engine/mapped_tensor.h), in order, by one
  //   job off the JS thread (so the JS thread can build the tokenizer meanwhile). onDone(n) is queued after each tensor
  //   (calls may arrive after the promise settles). index >= 0 when tensor `index` holds a NaN / Inf at flat position
  //   firstBad (that tensor and those after it are not set); else index = -1.
  Napi::Value SetTensorsFromFiles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Visit(env, [&](auto m) -> Napi::Value {
      const char* sig = "setTensorsFromFiles(tensors: [{name, layer, file, offset, bytes, dtype, count}], onDone?)";
      if (info.Length() < 1 || !info[0].IsArray() ||
          (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsFunction()))
        throw ArgError(env, sig);
      Napi::Array list = info[0].As<Napi::Array>();
      struct Job {
        std::string name;
        int layer;
        MappedTensorRef ref;
      };
      std::vector<Job> jobs;
      jobs.reserve(list.Length());
      for (uint32_t i = 0; i < list.Length(); i++) {
        if (!list.Get(i).IsObject()) throw ArgError(env, sig);
        Napi::Object o = list.Get(i).As<Napi::Object>();
        const std::string at = "setTensorsFromFiles: tensors[" + std::to_string(i) + "].";
        auto num = [&](const char* k) -> double {
          Napi::Value v = o.Get(k);
          if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0)
            throw ArgError(env, at + k + " must be a number >= 0");
          return v.As<Napi::Number>().DoubleValue();
        };
        Job j;
        if (!o.Get("name").IsString() || !o.Get("layer").IsNumber() || !o.Get("file").IsString())
          throw ArgError(env, at + "name and file must be strings, layer a number");
        j.name = o.Get("name").As<Napi::String>().Utf8Value();
        j.layer = o.Get("layer").As<Napi::Number>().Int32Value();
        MappedTensorRef& t = j.ref;
        t.file = o.Get("file").As<Napi::String>().Utf8Value();
        t.offset = (uint64_t)num("offset");
        t.bytes = (uint64_t)num("bytes");
        t.count = (size_t)num("count");
        t.pad_to = o.Get("padTo").IsNumber() ? (size_t)num("padTo") : 0;
        t.check_finite = !o.Get("checkFinite").IsBoolean() || o.Get("checkFinite").As<Napi::Boolean>().Value();
        const std::string dt = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "";
        if (!file_dtype_from_name(dt.c_str(), &t.dtype))
          throw ArgError(
              env, at + "dtype must be 'F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_K' or 'Q6_K', got '" +
                       dt + "'");
        const Napi::Value tr = o.Get("transform");
        if (tr.IsString() && tr.As<Napi::String>().Utf8Value() == "logOfNegated")
          t.transform = ValueTransform::LogOfNegated;
        else if (!tr.IsUndefined()) throw ArgError(env, at + "transform must be 'logOfNegated' or absent");
        jobs.push_back(std::move(j));
      }
      std::shared_ptr<Napi::ThreadSafeFunction> progress;
      if (info.Length() > 1 && info[1].IsFunction())
        progress = std::make_shared<Napi::ThreadSafeFunction>(
            Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "simba-load-progress", 0, 1));
      struct Found {
        int64_t index = -1;
        MappedTensorCheck check;
      };
      auto found = std::make_shared<Found>();
      auto* w = new PromiseWorker(
          env,
          [m, jobs = std::move(jobs), found, progress] {
            struct Release {  // the progress function is released however the job ends
              std::shared_ptr<Napi::ThreadSafeFunction> f;
              ~Release() {
                if (f) f->Release();
              }
            } release{progress};
            // One conversion buffer for the whole load, shrunk to the largest conversion still to come
            std::vector<size_t> later(jobs.size() + 1, 0);
            for (size_t i = jobs.size(); i-- > 0;) later[i] = std::max(later[i + 1], conversion_floats(jobs[i].ref));
            ConvScratch scratch;
            for (size_t i = 0; i < jobs.size(); i++) {
              const Job& j = jobs[i];
              MappedTensorCheck c = with_mapped_tensor(
                  j.ref, [&](const float* p, size_t n) { m->set_tensor(j.name, j.layer, p, n); }, &scratch);
              if (c.first_bad >= 0) {
                found->index = (int64_t)i;
                found->check = c;
                return;
              }
              scratch.shrink_to(later[i + 1]);
              if (progress) {
                const double done = (double)(i + 1);
                progress->NonBlockingCall(
                    [done](Napi::Env e, Napi::Function fn) { fn.Call({Napi::Number::New(e, done)}); });
              }
            }
          },
          [found](Napi::Env e) -> Napi::Value {
            Napi::Object r = Napi::Object::New(e);
            r.Set("index", (double)found->index);
            r.Set("firstBad", (double)found->check.first_bad);
            r.Set("badValue", found->check.bad_value);
            return r;
          });
      w->Queue();
      return w->Promise();
    });
  }

  // randomize(seed) -> Promise<void>
  Napi::Value Randomize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Visit(env, [&](auto m) -> Napi::Value {
      uint64_t seed = info.Length() > 0 && info[0].IsNumber() ? (uint64_t)info[0].As<Napi::Number>().Int64Value() : 0;
      auto* w = new PromiseWorker(
          env,
          [m, seed] {
            m->randomize(seed);
            m->finalize();
          },
          nullptr);
      w->Queue();
      return w->Promise();
    });
  }

  Napi::Value Finalize(const Napi::CallbackInfo& info) {
    return Visit(info.Env(), [&](auto m) -> Napi::Value {
      try {
        m->finalize();
      } catch (const std::exception& e) { throw NativeError(info.Env(), e); }
      return info.Env().Undefined();
    });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    if (cuda_) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("stateFloats", (double)cuda_->state_floats());
      o.Set("paramCount", (double)cuda_->param_count());
      o.Set("weightBytes", (double)cuda_->weight_bytes());
      o.Set("bf16", cuda_->bf16());
      o.Set("isa", "cuda");
      o.Set("threads", 1);
      o.Set("device", "cuda");
      o.Set("deviceName", cuda_->device_name());
      // State bytes copied between host and device so far (host-state forwards, readState, writeState).
      o.Set("stateBytesToDevice", (double)cuda_->state_bytes_to_device());
      o.Set("stateBytesToHost", (double)cuda_->state_bytes_to_host());
      return o;
    }
    auto m = Live(info.Env());
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("device", "cpu");
    o.Set("stateFloats", (double)m->state_floats());
    o.Set("paramCount", (double)m->param_count());
    o.Set("weightBytes", (double)m->weight_bytes());
    o.Set("bf16", m->bf16());
    o.Set("int8", m->format() == cpu::WeightFormat::Q8);
    o.Set("int4", m->format() == cpu::WeightFormat::Q4);
    o.Set("isa", cpu::active().name);
    o.Set("threads", cpu::ThreadPool::global().size());
    return o;
  }

  // ---- Device-resident states (device 'cuda' only): a slot per running sequence, kept on the GPU
  // between forward calls (pass the slots as an Int32Array in place of the states array).
  std::shared_ptr<CudaModel> Device(Napi::Env env, const char* what) {
    if (!cuda_)
      throw CodedError(
          env, model_ ? "E_ARG" : "E_DISPOSED",
          model_ ? std::string(what) + ": device states exist only on device 'cuda'" : "the model has been disposed");
    if (!cuda_->has_device_states())
      throw CodedError(env, "E_CUDA",
                       std::string(what) + ": the loaded CUDA library predates device states; rebuild it");
    return cuda_;
  }
  static int SlotArg(const Napi::CallbackInfo& info, const char* what) {
    if (info.Length() < 1 || !info[0].IsNumber()) throw ArgError(info.Env(), std::string(what) + "(slot: number)");
    return info[0].As<Napi::Number>().Int32Value();
  }

  // allocState() -> Promise<number>: a zeroed state slot on the device
  Napi::Value AllocState(const Napi::CallbackInfo& info) {
    auto m = Device(info.Env(), "allocState");
    auto slot = std::make_shared<int>(-1);
    auto* w = new PromiseWorker(
        info.Env(), [m, slot] { *slot = m->alloc_state(); },
        [slot](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *slot); });
    w->Queue();
    return w->Promise();
  }

  // freeState(slot) -> Promise<void>
  Napi::Value FreeState(const Napi::CallbackInfo& info) {
    auto m = Device(info.Env(), "freeState");
    const int slot = SlotArg(info, "freeState");
    auto* w = new PromiseWorker(
        info.Env(), [m, slot] { m->free_state(slot); }, nullptr);
    w->Queue();
    return w->Promise();
  }

  // readState(slot, out: Float32Array[stateFloats]) -> Promise<void>: copies that slot only (snapshot)
  // writeState(slot, src: Float32Array | null) -> Promise<void>: restore (null: zeros)
  Napi::Value ReadState(const Napi::CallbackInfo& info) { return CopyState(info, true); }
  Napi::Value WriteState(const Napi::CallbackInfo& info) { return CopyState(info, false); }
  Napi::Value CopyState(const Napi::CallbackInfo& info, bool read) {
    Napi::Env env = info.Env();
    const char* what = read ? "readState" : "writeState";
    auto m = Device(env, what);
    const int slot = SlotArg(info, what);
    float* p = nullptr;
    Napi::Value arr;
    if (read || (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined())) {
      auto a = ExpectArray<float>(info.Length() > 1 ? info[1] : env.Undefined(), "state");
      if (a.ElementLength() != m->state_floats())
        throw ArgError(env, std::string(what) + ": the state has " + std::to_string(a.ElementLength()) +
                                " floats; this model's state has " + std::to_string(m->state_floats()));
      p = a.Data();
      arr = a;
    }
    auto* w = new PromiseWorker(
        env,
        [m, slot, p, read] {
          if (read) m->read_state(slot, p);
          else m->write_state(slot, p);
        },
        nullptr);
    if (p) w->Keep(arr);
    w->Queue();
    return w->Promise();
  }

  // forward(tokens: Int32Array, lengths: Int32Array, states: Float32Array[] | slots: Int32Array, want: Int32Array,
  //         simba?: {keep: Int32Array, criterion: number, reduceSum: boolean, protectFirst, protectLast, seed},
  //         sampling?: see sampling_bindings.h)
  //   -> Promise<{logits: Float32Array, processed: Int32Array, exitLayer: Int32Array}>; with sampling,
  //      logits is empty and the sampled tokens are added (SetSampleResult)
  // States are host arrays read and updated in place, or (device 'cuda') device slots (allocState).
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 2 && info[2].IsTypedArray()) return ForwardSlots(info);
    return Visit(env, [&](auto m) -> Napi::Value {
      if (info.Length() < 4 || !info[2].IsArray())
        throw ArgError(env, "forward(tokens, lengths, states[], want, simba?)");
      auto req = std::make_shared<ForwardRequest>();
      auto tokens = ExpectArray<int32_t>(info[0], "tokens");
      auto lengths = ExpectArray<int32_t>(info[1], "lengths");
      auto want = ExpectArray<int32_t>(info[3], "want");
      req->tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
      req->lengths.assign(lengths.Data(), lengths.Data() + lengths.ElementLength());
      req->want.assign(want.Data(), want.Data() + want.ElementLength());
      Napi::Array states = info[2].As<Napi::Array>();
      std::vector<Napi::Value> keep;
      for (uint32_t i = 0; i < states.Length(); i++) {
        auto s = ExpectArray<float>(states.Get(i), "state");
        if (s.ElementLength() != m->state_floats())
          throw ArgError(env, "state " + std::to_string(i) + " has " + std::to_string(s.ElementLength()) +
                                  " floats; this model's state has " + std::to_string(m->state_floats()));
        req->states.push_back(s.Data());
        keep.push_back(s);
      }
      ReadSimba(info, *req);
      ReadCancel(info, *req, keep);
      return QueueForward(
          info, *req, m->config().vocab, [m, req] { return m->forward(*req); }, keep);
    });
  }

  // Queues run() (a forward of req) on a worker, then the native sampling of forward's optional 6th
  // argument (the logits then stay native); keep: arrays the work uses.
  static Napi::Value QueueForward(const Napi::CallbackInfo& info, const ForwardRequest& req, int V,
                                  std::function<ForwardResult()> run, const std::vector<Napi::Value>& keep) {
    std::shared_ptr<SampleBatch> samp;
    if (info.Length() > 5 && info[5].IsObject()) samp = ParseSampleBatch(info[5], req.want.size());
    auto res = std::make_shared<ForwardResult>();
    const size_t rows = req.want.size();
    auto* w = new PromiseWorker(
        info.Env(),
        [run, res, samp, rows, V] {
          *res = run();
          if (samp) {
            RunSampleBatch(*samp, res->logits.data(), rows, V);
            res->logits.clear();
          }
        },
        [res, samp](Napi::Env e) {
          Napi::Value o = ResultObject(e, *res);
          if (samp) SetSampleResult(e, *samp, o.As<Napi::Object>());
          return o;
        });
    for (auto& v : keep) w->Keep(v);
    w->Queue();
    return w->Promise();
  }

  // forward with slots (Int32Array, one per sequence) in place of the states: device 'cuda' only;
  // simba and sampling as for host states (no state crosses to the host).
  Napi::Value ForwardSlots(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = Device(env, "forward with state slots");
    if (info.Length() < 4) throw ArgError(env, "forward(tokens, lengths, slots: Int32Array, want, simba?, sampling?)");
    auto req = std::make_shared<ForwardRequest>();
    auto tokens = ExpectArray<int32_t>(info[0], "tokens");
    auto lengths = ExpectArray<int32_t>(info[1], "lengths");
    auto slots_arr = ExpectArray<int32_t>(info[2], "state slots");
    auto want = ExpectArray<int32_t>(info[3], "want");
    req->tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
    req->lengths.assign(lengths.Data(), lengths.Data() + lengths.ElementLength());
    req->want.assign(want.Data(), want.Data() + want.ElementLength());
    auto slots = std::make_shared<std::vector<int32_t>>(slots_arr.Data(), slots_arr.Data() + slots_arr.ElementLength());
    ReadSimba(info, *req);
    std::vector<Napi::Value> keep;
    ReadCancel(info, *req, keep);
    return QueueForward(
        info, *req, m->config().vocab, [m, req, slots] { return m->forward_slots(*req, *slots); }, keep);
  }

  // forward's optional 7th argument: a cancel flag, an Int32Array whose element 0 the caller sets
  // to stop the forward at its next layer (ForwardRequest::cancel); kept alive with the call.
  static void ReadCancel(const Napi::CallbackInfo& info, ForwardRequest& req, std::vector<Napi::Value>& keep) {
    if (info.Length() < 7 || info[6].IsUndefined() || info[6].IsNull()) return;
    auto flag = ExpectArray<int32_t>(info[6], "cancel flag");
    if (flag.ElementLength() < 1) throw ArgError(info.Env(), "cancel flag must hold at least one element");
    req.cancel = flag.Data();
    keep.push_back(flag);
  }

  // forward's optional 5th argument: the Simba options, passed on as given: the engines check them
  // once (common/request_check.h), the keep counts against the sequences and the criterion's range.
  static void ReadSimba(const Napi::CallbackInfo& info, ForwardRequest& req) {
    if (info.Length() > 4 && info[4].IsObject()) {
      Napi::Object so = info[4].As<Napi::Object>();
      SimbaOptions& o = req.simba;
      o.enabled = true;
      auto kc = ExpectArray<int32_t>(so.Get("keep"), "simba.keep");
      o.keep.assign(kc.Data(), kc.Data() + kc.ElementLength());
      o.criterion = so.Get("criterion").ToNumber().Int32Value();
      o.reduce_sum = so.Get("reduceSum").ToBoolean().Value();
      o.protect_first = so.Get("protectFirst").ToNumber().Int32Value();
      o.protect_last = so.Get("protectLast").ToNumber().Int32Value();
      o.seed = (uint64_t)so.Get("seed").ToNumber().Int64Value();
    }
  }

  static Napi::Value ResultObject(Napi::Env e, const ForwardResult& res) {
    Napi::Object o = Napi::Object::New(e);
    auto lg = Napi::Float32Array::New(e, res.logits.size());
    std::copy(res.logits.begin(), res.logits.end(), lg.Data());
    auto pr = Napi::Int32Array::New(e, res.processed.size());
    std::copy(res.processed.begin(), res.processed.end(), pr.Data());
    auto ex = Napi::Int32Array::New(e, res.exit_layer.size());
    std::copy(res.exit_layer.begin(), res.exit_layer.end(), ex.Data());
    o.Set("logits", lg);
    o.Set("processed", pr);
    o.Set("exitLayer", ex);
    return o;
  }

  // Frees the weights once no call is in flight (in-flight workers hold their own reference).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    cuda_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Model> model_;
  std::shared_ptr<CudaModel> cuda_;  // device 'cuda' (then model_ is null)
};

Napi::Value AvailableIsas(const Napi::CallbackInfo& info) {
  auto v = cpu::available_isas();
  Napi::Array a = Napi::Array::New(info.Env(), v.size());
  for (size_t i = 0; i < v.size(); i++) a.Set((uint32_t)i, v[i]);
  return a;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw ArgError(info.Env(), "setIsa(name)");
  try {
    cpu::set_isa(info[0].As<Napi::String>());
  } catch (const std::exception& e) {  // an unknown or unsupported instruction set
    throw CodedError(info.Env(), "E_ARG", e.what());
  }
  return Napi::String::New(info.Env(), cpu::active().name);
}

// amxAvailable() -> whether this CPU and OS run the AMX GEMMs; amxActive() -> whether they run now;
// setAmx(on) -> whether they now run.
Napi::Value AmxAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cpu::amx_available());
}

Napi::Value AmxActive(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), cpu::amx_usable()); }

Napi::Value SetAmx(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) throw ArgError(info.Env(), "setAmx(on: boolean)");
  try {
    cpu::set_amx(info[0].As<Napi::Boolean>());
  } catch (const std::exception& e) {  // turning on where AMX cannot run
    throw CodedError(info.Env(), "E_ARG", e.what());
  }
  return Napi::Boolean::New(info.Env(), cpu::amx_usable());
}

Napi::Value ActiveIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cpu::active().name); }

// memoryStats() -> {models, alignedBytes}: live CPU models and their weight storage (leak checks).
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  const NativeMemoryStats s = native_memory_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("models", (double)s.models);
  o.Set("alignedBytes", (double)s.aligned_bytes);
  return o;
}

// memoryPlan(config, format: 'f32' | 'bf16' | 'int8' | 'int4') -> the bytes the CPU engine needs for the
// config (MemoryPlan), computed without allocating: weightBytes, otherBytes, stagingBytes,
// stateBytes, tokenBytes, logitsRowBytes.
Napi::Value MemoryPlanOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsString()) throw ArgError(env, "memoryPlan(config, format)");
  const ModelConfig cfg = ReadConfig(info[0]);
  const std::string f = info[1].As<Napi::String>();
  if (f != "f32" && f != "bf16" && f != "int8" && f != "int4")
    throw ArgError(env, "memoryPlan: format must be 'f32', 'bf16', 'int8' or 'int4'");
  MemoryPlan m;
  try {
    check_config(cfg);
    m = plan_memory(cfg, f == "int4"   ? cpu::WeightFormat::Q4
                         : f == "int8" ? cpu::WeightFormat::Q8
                         : f == "bf16" ? cpu::WeightFormat::BF16
                                       : cpu::WeightFormat::F32);
  } catch (const std::exception& e) { throw NativeError(env, e); }
  Napi::Object o = Napi::Object::New(env);
  o.Set("weightBytes", (double)m.weight_bytes);
  o.Set("otherBytes", (double)m.other_bytes);
  o.Set("stagingBytes", (double)m.staging_bytes);
  o.Set("stateBytes", (double)m.state_bytes);
  o.Set("tokenBytes", (double)m.token_bytes);
  o.Set("logitsRowBytes", (double)m.logits_row_bytes);
  return o;
}

// tensorTable(config) -> [{name, layer, shape, required, layout}]: every tensor of the config, in
// the order checkpoints are read (tensor_table.h); required false for those the config lacks.
Napi::Value TensorTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ModelConfig cfg = ReadConfig(info[0]);
  std::vector<TensorSpec> table;
  try {
    check_config(cfg);
    table = tensor_table(cfg);
  } catch (const std::exception& e) { throw NativeError(env, e); }
  Napi::Array out = Napi::Array::New(env, table.size());
  for (size_t i = 0; i < table.size(); i++) {
    const TensorSpec& t = table[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name());
    o.Set("layer", t.layer);
    Napi::Array shape = Napi::Array::New(env, t.cols ? 2 : 1);
    shape.Set(0u, t.rows);
    if (t.cols) shape.Set(1u, t.cols);
    o.Set("shape", shape);
    o.Set("required", t.required);
    o.Set("layout", layout_name(t.layout));
    out.Set((uint32_t)i, o);
  }
  return out;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", Engine::Define(env));
  exports.Set("availableIsas", Napi::Function::New(env, AvailableIsas));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("amxAvailable", Napi::Function::New(env, AmxAvailable));
  exports.Set("setAmx", Napi::Function::New(env, SetAmx));
  exports.Set("amxActive", Napi::Function::New(env, AmxActive));
  exports.Set("activeIsa", Napi::Function::New(env, ActiveIsa));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("tensorTable", Napi::Function::New(env, TensorTable));
  exports.Set("memoryPlan", Napi::Function::New(env, MemoryPlanOf));
  register_kernel_bindings(env, exports);
  register_cuda_bindings(env, exports);
  register_sampling_bindings(env, exports);
  register_grammar_bindings(env, exports);
  return exports;
}

}  // namespace simba

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return simba::Init(env, exports); }
NODE_API_MODULE(simba_ssm, InitAddon)
