// GEMM timing for the benchmarks (benchmark addon only): runs a kernel on buffers prepared once (random values, not
// zeros) and returns the wall time of each repetition, so a benchmark measures the kernel and
// nothing else (no allocation, no copies, no JavaScript in the timed region). Runs off the
// JavaScript thread and returns a Promise.
#include "gemm_timing.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "../addon/js_convert.h"
#include "../addon/js_error.h"
#include "../addon/off_thread.h"
#include "../core/storage.h"
#include "../core/thread_pool.h"
#include "../cpu/cpu_kernels.h"
#include "../cpu/gemm.h"
#include "bench_options.h"

namespace castling::bench {

namespace {

// The wall time of each of `repeats` products (ms), after a warm-up. packed_b: each copy of B
// packed once before the timed region, as the linear op keeps its weights (cpu/ops_linear.cpp), so
// that the product alone is timed; otherwise sgemm packs B on every call.
std::vector<double> timeProducts(cpu::GemmArgs args, Isa isa, int threads, int repeats, int b_copies, bool packed_b) {
  const cpu::DenseKernels& kt = cpu::cpuKernelsFor(isa).dense;
  // This addon has a pool of its own (the shipped addon's setThreads does not reach it): grow it
  // to `threads`, as sgemm uses no more threads than the pool has.
  ThreadPool& pool = ThreadPool::global();
  if (pool.threads() < threads) pool.setThreads(threads);
  // b_copies > 1: the repetitions cycle through that many copies of B, so that B comes from
  // memory rather than cache, as a model's weights do (each layer has its own).
  Storage a(args.M * args.K), b(args.K * args.N * b_copies), c(args.M * args.N);
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (std::int64_t i = 0; i < a.size(); ++i) a.data()[i] = dist(rng);
  for (std::int64_t i = 0; i < args.K * args.N; ++i) b.data()[i] = dist(rng);
  for (int copy = 1; copy < b_copies; ++copy)
    std::copy(b.data(), b.data() + args.K * args.N, b.data() + copy * args.K * args.N);
  args.A = a.data();
  args.B = b.data();
  args.C = c.data();
  args.lda = args.transA ? args.M : args.K;
  args.ldb = args.transB ? args.K : args.N;
  args.ldc = args.N;
  const std::int64_t packed_floats = cpu::packedBFloats(kt, args);
  Storage packed(packed_b ? packed_floats * b_copies : 0);
  for (int copy = 0; packed_b && copy < b_copies; ++copy) {
    args.B = b.data() + copy * args.K * args.N;
    cpu::packWholeB(kt, args, packed.data() + copy * packed_floats);
  }
  if (packed_b) args.packedNr = kt.nr;
  auto selectB = [&](int r) {
    args.B = b.data() + (r % b_copies) * args.K * args.N;
    if (packed_b) args.packedB = packed.data() + (r % b_copies) * packed_floats;
  };
  selectB(0);
  cpu::sgemm(kt, args, threads);  // warm-up: packing buffers, caches, thread wake-up
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    selectB(r);
    auto start = std::chrono::steady_clock::now();
    cpu::sgemm(kt, args, threads);
    auto end = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  return times;
}

}  // namespace

// timeGemm({M, N, K, transA?, transB?, threads, repeats, bCopies?, packedB?}, isa?) -> Promise<number[]> (ms each)
Napi::Value timeGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw addon::typeError(env, "timeGemm: expected an options object");
  Attrs attrs = addon::toAttrs(info[0], "timeGemm");
  Napi::Value isaValue = info.Length() > 1 ? info[1] : env.Undefined();
  cpu::GemmArgs args;
  Isa isa = activeIsa();
  int threads = 1, repeats = 1, b_copies = 1;
  bool packed_b = false;
  addon::rethrowAsJs(env, [&] {
    args.M = attrs.integer("M", 1, 1, 1 << 20);
    args.N = attrs.integer("N", 1, 1, 1 << 20);
    args.K = attrs.integer("K", 1, 1, 1 << 20);
    args.transA = attrs.flag("transA", false);
    args.transB = attrs.flag("transB", false);
    threads = int(attrs.integer("threads", 1, 1, 256));
    repeats = int(attrs.integer("repeats", 5, 1, 100000));
    b_copies = int(attrs.integer("bCopies", 1, 1, 256));
    packed_b = attrs.flag("packedB", false);
    isa = resolveIsa(isaValue);
  });
  auto times = std::make_shared<std::vector<double>>();
  return addon::runOffThread(
      env, [=] { *times = timeProducts(args, isa, threads, repeats, b_copies, packed_b); },
      [times](Napi::Env env) -> Napi::Value {
        auto out = Napi::Array::New(env, times->size());
        for (std::size_t i = 0; i < times->size(); ++i) out.Set(std::uint32_t(i), (*times)[i]);
        return out;
      });
}

}  // namespace castling::bench
