#include "micro_kernel_rate.h"

#include <algorithm>
#include <memory>
#include <string>

#include "../addon/js_convert.h"
#include "../addon/js_error.h"
#include "../addon/off_thread.h"
#include "../core/pool_trace.h"
#include "../core/storage.h"
#include "../cpu/cpu_kernels.h"
#include "bench_options.h"

namespace castling::bench {

namespace {

// The calling thread's CPU time: a single-threaded kernel's rate is then what it runs at while it
// runs, whatever else the machine does (wall time counts the moments another process had the core).
double threadSeconds() { return 1e-9 * PoolTrace::threadCpuNs(); }

// The depth of one call (a K-slice of the GEMM is up to 384) and how many B panels and C tiles
// the calls cycle through: 8 x 256 x NR floats of B is 256 KB at NR = 32, in L2, as the GEMM's
// packed B block is; A (MR x 256, 12 KB) stays in L1.
constexpr std::int64_t kDepth = 256;
constexpr int kPanels = 8;

volatile float gSink = 0;

template <class Call>
double bestGflops(const cpu::DenseKernels& kt, double ms, int tries, Call call) {
  // Calls per try: doubled until a run takes a millisecond, then scaled to about ms.
  std::int64_t calls = 64;
  for (;;) {
    double start = threadSeconds();
    for (std::int64_t i = 0; i < calls; ++i) call(i);
    double took = threadSeconds() - start;
    if (took >= 1e-3) {
      calls = std::max<std::int64_t>(1, std::int64_t(double(calls) * ms / 1000.0 / took));
      break;
    }
    calls *= 2;
  }
  double best = 0;
  for (int t = 0; t < tries; ++t) {
    double start = threadSeconds();
    for (std::int64_t i = 0; i < calls; ++i) call(i);
    double seconds = threadSeconds() - start;
    best = std::max(best, 2.0 * kt.mr * kt.nr * kDepth * double(calls) / seconds / 1e9);
  }
  return best;
}

}  // namespace

MicroKernelRate measureMicroKernel(Isa isa, double ms, int tries) {
  const cpu::DenseKernels& kt = cpu::cpuKernelsFor(isa).dense;
  const std::int64_t lda = kDepth + 16;  // rows read in place: not a multiple of 4 KB apart
  Storage a(kt.mr * lda), b(kPanels * kDepth * kt.nr), c(kPanels * kt.mr * kt.nr);
  for (std::int64_t i = 0; i < a.size(); ++i) a.data()[i] = 1e-3f * float(i % 17);
  for (std::int64_t i = 0; i < b.size(); ++i) b.data()[i] = 1e-3f * float(i % 13);
  const cpu::TileAddends add{};
  auto panel = [&](std::int64_t i) { return b.data() + (i % kPanels) * kDepth * kt.nr; };
  auto tile = [&](std::int64_t i) { return c.data() + (i % kPanels) * kt.mr * kt.nr; };
  MicroKernelRate rate{kt.mr, kt.nr, int(kDepth), kt.gemmPrefetchesB, kt.gemmPrefetchesNextBlock};
  rate.packedGflops = bestGflops(kt, ms, tries, [&](std::int64_t i) { kt.gemmMicro(kDepth, a.data(), 0, panel(i), tile(i), kt.nr, 1.0f, add); });
  rate.directGflops = bestGflops(kt, ms, tries, [&](std::int64_t i) { kt.gemmMicroDirectA(kDepth, a.data(), lda, panel(i), tile(i), kt.nr, 1.0f, add); });
  gSink = gSink + c.data()[0];
  return rate;
}

Napi::Value timeMicroKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BenchOptions options = readBenchOptions(
      info, "timeMicroKernel", "timeMicroKernel: expected an options object {isa?: 'scalar' | 'avx2' | 'avx512', ms?}", {"ms"});
  Isa isa = activeIsa();
  double ms = 50;
  addon::rethrowAsJs(env, [&] {
    isa = resolveIsa(options.isa);
    ms = options.numbers.number("ms", 50);
    if (!(ms >= 1 && ms <= 60000)) fail("timeMicroKernel: ms must be from 1 to 60000, got ", ms);
  });
  auto rate = std::make_shared<MicroKernelRate>();
  return addon::runOffThread(
      env, [=] { *rate = measureMicroKernel(isa, ms); },
      [rate](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("mr", rate->mr);
        out.Set("nr", rate->nr);
        out.Set("kc", rate->kc);
        out.Set("prefetchesB", rate->prefetchesB);
        out.Set("prefetchesNextBlock", rate->prefetchesNextBlock);
        out.Set("packedGflops", rate->packedGflops);
        out.Set("directGflops", rate->directGflops);
        return out;
      });
}

}  // namespace castling::bench
