// bench_bindings.cc — asynchronous probes for `simba bench --limits` and `--gemm`: the machine's
// read bandwidth, FMA and dot-product peaks (cpu/limits.h), and the best time of one GEMM shape.
// Both run for seconds, so they run on a libuv worker thread and resolve a Promise.
#include <napi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "cpu/dispatch.h"
#include "cpu/limits.h"
#include "engine/model.h"
#include "napi/napi_errors.h"

namespace simba {

namespace {

class Job : public Napi::AsyncWorker {
 public:
  using Make = std::function<Napi::Value(Napi::Env)>;
  Job(Napi::Env env, std::function<void()> work, Make make)
      : Napi::AsyncWorker(env), d_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), make_(std::move(make)) {}
  Napi::Promise Promise() { return d_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      code_ = status_of(e);
      SetError(e.what());
    }
  }
  void OnOK() override { d_.Resolve(make_(Env())); }
  void OnError(const Napi::Error& e) override {
    e.Value().Set("code", Napi::String::New(Env(), status_name(code_)));
    d_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred d_;
  std::function<void()> work_;
  Make make_;
  simba_status_t code_ = SIMBA_E_NATIVE;
};

int IntOr(const Napi::Object& o, const char* key, int dflt, int lo, int hi) {
  Napi::Value v = o.Has(key) ? o.Get(key) : o.Env().Undefined();
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) throw ArgError(o.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != (double)(int)d || d < lo || d > hi)
    throw ArgError(
        o.Env(), std::string(key) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return (int)d;
}

// The read-bandwidth fields of limits() and readBandwidth().
void SetRead(Napi::Object& r, const cpu::ReadBandwidth& b) {
  r.Set("readGBs1", b.read_gbs_1);
  r.Set("readGBsAll", b.read_gbs_all);
  r.Set("bufferBytes", b.buffer_bytes);
}

// limits({reps?, bufferMB?}) -> Promise<{threads, isa, readGBs1, readGBsAll, fmaGflops1, fmaGflopsAll,
//   int8DotGflops1?, int8DotGflopsAll?, bf16DotGflops1?, bf16DotGflopsAll?, amxBf16Gflops1?,
//   amxBf16GflopsAll?, amxInt8Gflops1?, amxInt8GflopsAll?, bufferBytes}>
Napi::Value Limits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const int reps = IntOr(o, "reps", 5, 1, 100), mb = IntOr(o, "bufferMB", 256, 16, 4096);
  auto res = std::make_shared<cpu::MachineLimits>();
  auto* w = new Job(
      env, [res, reps, mb] { *res = cpu::measure_limits(reps, mb); },
      [res](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        r.Set("threads", res->threads);
        r.Set("isa", res->isa);
        SetRead(r, res->read);
        r.Set("fmaGflops1", res->fma_gflops_1);
        r.Set("fmaGflopsAll", res->fma_gflops_all);
        // dot-product peaks only where their kernels run
        if (res->int8_dot_gflops_all > 0) {
          r.Set("int8DotGflops1", res->int8_dot_gflops_1);
          r.Set("int8DotGflopsAll", res->int8_dot_gflops_all);
        }
        if (res->bf16_dot_gflops_all > 0) {
          r.Set("bf16DotGflops1", res->bf16_dot_gflops_1);
          r.Set("bf16DotGflopsAll", res->bf16_dot_gflops_all);
        }
        if (res->amx_bf16_gflops_all > 0) {
          r.Set("amxBf16Gflops1", res->amx_bf16_gflops_1);
          r.Set("amxBf16GflopsAll", res->amx_bf16_gflops_all);
          r.Set("amxInt8Gflops1", res->amx_int8_gflops_1);
          r.Set("amxInt8GflopsAll", res->amx_int8_gflops_all);
        }
        return r;
      });
  w->Queue();
  return w->Promise();
}

// readBandwidth({bytes, reps?}) -> Promise<{readGBs1, readGBsAll, bufferBytes}>: the streaming-read
// probe of limits() over a buffer of about `bytes` (4 KiB to 16 GiB), e.g. a model's weight bytes.
Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw ArgError(env, "readBandwidth({bytes, reps?})");
  Napi::Object o = info[0].As<Napi::Object>();
  const Napi::Value b = o.Get("bytes");
  const double bytes = b.IsNumber() ? b.As<Napi::Number>().DoubleValue() : -1;
  if (!(bytes >= 4096 && bytes <= 16.0 * (1 << 30)))
    throw ArgError(env, "readBandwidth: bytes must be a number in [4096, 16 GiB]");
  const int reps = IntOr(o, "reps", 5, 1, 100);
  auto res = std::make_shared<cpu::ReadBandwidth>();
  auto* w = new Job(
      env, [res, reps, bytes] { *res = cpu::measure_read(reps, bytes); },
      [res](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        SetRead(r, *res);
        return r;
      });
  w->Queue();
  return w->Promise();
}

cpu::WeightFormat FormatOf(Napi::Env env, const Napi::Value& v) {
  const std::string f = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string("f32");
  if (f == "f32") return cpu::WeightFormat::F32;
  if (f == "bf16") return cpu::WeightFormat::BF16;
  if (f == "int8") return cpu::WeightFormat::Q8;
  if (f == "int4") return cpu::WeightFormat::Q4;
  throw ArgError(env, "format must be 'f32', 'bf16', 'int8' or 'int4', got '" + f + "'");
}

// gemmTime({M, N, K, format, reps?, minSeconds?}) -> Promise<{seconds (best of reps), path}>: random
// A and W, C = A W^T timed `reps` times (each repeated until minSeconds), the best run counts.
Napi::Value GemmTime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw ArgError(env, "gemmTime({M, N, K, format})");
  Napi::Object o = info[0].As<Napi::Object>();
  const int M = IntOr(o, "M", 1, 1, 1 << 16), N = IntOr(o, "N", 1, 1, 1 << 20), K = IntOr(o, "K", 1, 1, 1 << 16);
  const int reps = IntOr(o, "reps", 5, 1, 1000);
  const cpu::WeightFormat fmt = FormatOf(env, o.Get("format"));
  const double minSec = o.Has("minSeconds") && o.Get("minSeconds").IsNumber()
                            ? o.Get("minSeconds").As<Napi::Number>().DoubleValue()
                            : 0.05;
  if ((double)M * K + (double)N * K + (double)M * N > 4e8) throw ArgError(env, "gemmTime: shape too large");
  auto best = std::make_shared<double>(0);
  auto path = std::make_shared<std::string>();
  auto* w = new Job(
      env,
      [=] {
        std::vector<float> A((size_t)M * K), W((size_t)N * K), C((size_t)M * N);
        uint32_t s = 12345;
        auto rnd = [&s] {
          s = s * 1664525u + 1013904223u;
          return (float)(s >> 8) * (2.f / 16777216.f) - 1.f;
        };
        for (auto& x : A) x = rnd();
        for (auto& x : W) x = rnd();
        Linear lin;
        pack_linear(lin, W.data(), N, K, fmt);
        *path = cpu::gemm_path_name(cpu::gemm_path(lin.w, M));
        cpu::gemm(A.data(), K, lin.w, nullptr, C.data(), N, M);  // warm-up
        double b = 1e30;
        for (int r = 0; r < reps; r++) {
          int calls = 0;
          const auto t0 = std::chrono::steady_clock::now();
          double t = 0;
          do {
            cpu::gemm(A.data(), K, lin.w, nullptr, C.data(), N, M);
            calls++;
            t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          } while (t < minSec);
          b = std::min(b, t / calls);
        }
        *best = b;
      },
      [best, path](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        r.Set("seconds", *best);
        r.Set("path", *path);
        return r;
      });
  w->Queue();
  return w->Promise();
}

// poolCheck({threads, items, dynamic, hold}) -> {ids, runs: Int32Array [items], returnedWhileHeld}:
// runs 4 jobs of `items` items on a pool of its own (test/threadpool.test.ts); ids[i] is the id the
// last job's function got for item i (dynamic: the thread; fixed: the range), runs[i] how often
// item i ran in all. With hold, worker 1 stops as it
// wakes for the first job, until that job has returned (at most 5 s), standing for a worker the OS
// does not schedule; returnedWhileHeld says whether the job came back without it. Synchronous.
Napi::Value PoolCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "poolCheck: give {threads, items, dynamic, hold}");
  Napi::Object o = info[0].As<Napi::Object>();
  const int threads = IntOr(o, "threads", 2, 1, 64), items = IntOr(o, "items", 100, 1, 1 << 20);
  const bool dynamic = o.Get("dynamic").ToBoolean(), hold = o.Get("hold").ToBoolean();
  constexpr auto kBound = std::chrono::seconds(5);
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, held = false, released = false;
  auto hook = [&](int tid) {
    std::unique_lock<std::mutex> lk(mu);
    if (!hold || tid != 1 || entered) return;
    entered = held = true;
    cv.notify_all();
    cv.wait_for(lk, kBound, [&] { return released; });
    held = false;
  };
  std::vector<int> ids(items, -1);
  std::vector<std::atomic<int>> runs(items);
  bool returned_while_held = false;
  {
    cpu::ThreadPool pool(threads, hook);
    const std::thread::id caller = std::this_thread::get_id();
    bool first = true;
    const cpu::ThreadPool::Job fn = [&](int id, int b, int e) {
      if (hold && first && std::this_thread::get_id() == caller) {
        first = false;
        std::unique_lock<std::mutex> lk(mu);
        cv.wait_for(lk, kBound, [&] { return entered; });
      }
      for (int i = b; i < e; i++) {
        ids[i] = id;
        runs[i].fetch_add(1, std::memory_order_relaxed);
      }
    };
    dynamic ? pool.run_dynamic(items, fn) : pool.run(items, fn);
    {
      std::lock_guard<std::mutex> lk(mu);
      returned_while_held = held;
      released = true;
    }
    cv.notify_all();
    // the pool goes on working once the late worker has woken
    for (int r = 0; r < 3; r++) dynamic ? pool.run_dynamic(items, fn) : pool.run(items, fn);
  }
  auto out = Napi::Int32Array::New(env, items), nruns = Napi::Int32Array::New(env, items);
  std::copy(ids.begin(), ids.end(), out.Data());
  for (int i = 0; i < items; i++) nruns[i] = runs[i].load();
  Napi::Object r = Napi::Object::New(env);
  r.Set("ids", out);
  r.Set("runs", nruns);
  r.Set("returnedWhileHeld", returned_while_held);
  return r;
}

}  // namespace

void register_bench_bindings(Napi::Env env, Napi::Object kernels) {
  kernels.Set("poolCheck", Napi::Function::New(env, PoolCheck));
  kernels.Set("limits", Napi::Function::New(env, Limits));
  kernels.Set("readBandwidth", Napi::Function::New(env, ReadBandwidth));
  kernels.Set("gemmTime", Napi::Function::New(env, GemmTime));
}

cpu::WeightFormat weight_format_arg(Napi::Env env, const Napi::Value& v) { return FormatOf(env, v); }

}  // namespace simba
