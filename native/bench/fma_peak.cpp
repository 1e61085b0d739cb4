#include "fma_peak.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "../addon/js_convert.h"
#include "../addon/js_error.h"
#include "../addon/off_thread.h"
#include "../core/thread_pool.h"
#include "../cpu/fma_chains.h"
#include "bench_options.h"

namespace castling::bench {

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Written with every run's result, so that the chains' work is observable and cannot be dropped.
volatile float gSink = 0;

// Steps of the chains that take about `seconds` on one thread: doubled until a run takes a
// millisecond or more, then scaled.
std::int64_t stepsFor(const cpu::FmaChains& chains, double seconds) {
  std::int64_t steps = 1024;
  for (;;) {
    auto start = Clock::now();
    gSink = gSink + chains.run(steps, 1.0f);
    double took = secondsSince(start);
    if (took >= 1e-3) return std::max<std::int64_t>(1, std::int64_t(double(steps) * seconds / took));
    steps *= 2;
  }
}

}  // namespace

double measureFmaPeakGflops(Isa isa, int threads, double ms, int tries) {
  const cpu::FmaChains& chains = cpu::fmaChainsFor(isa);
  ThreadPool& pool = ThreadPool::global();
  // Every worker on a thread of its own (the pool runs extra workers serially on fewer threads).
  if (pool.threads() < threads) pool.setThreads(threads);
  const std::int64_t steps = stepsFor(chains, ms / 1000.0);
  std::vector<float> results(std::size_t(threads), 0.0f);
  double best = 0;
  for (int t = 0; t < tries; ++t) {
    auto start = Clock::now();
    pool.run(threads, [&](int worker) { results[std::size_t(worker)] = chains.run(steps, 1.0f + float(worker)); });
    double seconds = secondsSince(start);
    for (float r : results) gSink = gSink + r;
    best = std::max(best, double(threads) * double(steps) * chains.flopsPerStep / seconds / 1e9);
  }
  return best;
}

Napi::Value measureFmaPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BenchOptions options = readBenchOptions(
      info, "measureFmaPeak", "measureFmaPeak: expected an options object {isa?: 'scalar' | 'avx2' | 'avx512', threads?, ms?}",
      {"threads", "ms"});
  Isa isa = activeIsa();
  int threads = 1;
  double ms = 200;
  addon::rethrowAsJs(env, [&] {
    isa = resolveIsa(options.isa);
    threads = int(options.numbers.integer("threads", 1, 1, ThreadPool::kMaxThreads));
    ms = options.numbers.number("ms", 200);
    if (!(ms >= 1 && ms <= 60000)) fail("measureFmaPeak: ms must be from 1 to 60000, got ", ms);
  });
  auto gflops = std::make_shared<double>(0);
  return addon::runOffThread(
      env, [=] { *gflops = measureFmaPeakGflops(isa, threads, ms); },
      [gflops](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *gflops); });
}

}  // namespace castling::bench
