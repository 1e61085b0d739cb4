// Kernel timing for the benchmarks: runs a kernel on buffers prepared once (random values, not
// zeros) and returns the wall time of each repetition, so a benchmark measures the kernel and
// nothing else (no allocation, no copies, no JavaScript in the timed region). Runs off the
// JavaScript thread and returns a Promise.
#include "bench_timing.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "../core/storage.h"
#include "../cpu/gemm.h"
#include "js_convert.h"

namespace castling::addon {

namespace {

class GemmTimingWorker : public Napi::AsyncWorker {
 public:
  GemmTimingWorker(Napi::Env env, cpu::GemmArgs args, Isa isa, int threads, int repeats, int b_copies)
      : Napi::AsyncWorker(env, "castling-vit:bench"), deferred_(Napi::Promise::Deferred::New(env)),
        args_(args), isa_(isa), threads_(threads), repeats_(repeats), b_copies_(b_copies) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      const cpu::KernelTable& kt = cpu::kernelsFor(isa_);
      // b_copies > 1: the repetitions cycle through that many copies of B, so that B comes from
      // memory rather than cache, as a model's weights do (each layer has its own).
      Storage a(args_.M * args_.K), b(args_.K * args_.N * b_copies_), c(args_.M * args_.N);
      std::mt19937 rng(1234);
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      for (std::int64_t i = 0; i < a.size(); ++i) a.data()[i] = dist(rng);
      for (std::int64_t i = 0; i < args_.K * args_.N; ++i) b.data()[i] = dist(rng);
      for (int copy = 1; copy < b_copies_; ++copy)
        std::copy(b.data(), b.data() + args_.K * args_.N, b.data() + copy * args_.K * args_.N);
      args_.A = a.data();
      args_.B = b.data();
      args_.C = c.data();
      args_.lda = args_.transA ? args_.M : args_.K;
      args_.ldb = args_.transB ? args_.K : args_.N;
      args_.ldc = args_.N;
      cpu::sgemm(kt, args_, threads_);  // warm-up: packing buffers, caches, thread wake-up
      for (int r = 0; r < repeats_; ++r) {
        args_.B = b.data() + (r % b_copies_) * args_.K * args_.N;
        auto start = std::chrono::steady_clock::now();
        cpu::sgemm(kt, args_, threads_);
        auto end = std::chrono::steady_clock::now();
        times_.push_back(std::chrono::duration<double, std::milli>(end - start).count());
      }
    } catch (...) {
      SetError(currentExceptionMessage());
    }
  }
  void OnOK() override {
    auto out = Napi::Array::New(Env(), times_.size());
    for (std::size_t i = 0; i < times_.size(); ++i) out.Set(std::uint32_t(i), times_[i]);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  cpu::GemmArgs args_;
  Isa isa_;
  int threads_, repeats_, b_copies_;
  std::vector<double> times_;
};

}  // namespace

// timeGemm({M, N, K, transA?, transB?, threads, repeats, bCopies?}, isa?) -> Promise<number[]> (ms each)
Napi::Value timeGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "timeGemm: expected an options object");
  Attrs attrs = toAttrs(info[0], "timeGemm");
  Napi::Value isaValue = info.Length() > 1 ? info[1] : env.Undefined();
  cpu::GemmArgs args;
  Isa isa = activeIsa();
  int threads = 1, repeats = 1, b_copies = 1;
  rethrowAsJs(env, [&] {
    args.M = attrs.integer("M", 1, 1, 1 << 20);
    args.N = attrs.integer("N", 1, 1, 1 << 20);
    args.K = attrs.integer("K", 1, 1, 1 << 20);
    args.transA = attrs.flag("transA", false);
    args.transB = attrs.flag("transB", false);
    threads = int(attrs.integer("threads", 1, 1, 256));
    repeats = int(attrs.integer("repeats", 5, 1, 100000));
    b_copies = int(attrs.integer("bCopies", 1, 1, 256));
    if (isaValue.IsString()) isa = parseIsa(isaValue.As<Napi::String>().Utf8Value());
    if (!isaSupported(isa)) fail("CPU path '", isaName(isa), "' is not supported by this CPU");
  });
  auto* worker = new GemmTimingWorker(env, args, isa, threads, repeats, b_copies);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace castling::addon
