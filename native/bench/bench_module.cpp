// Entry point of the benchmark-only addon (castling_vit_bench.node, built by `npm run build:native`
// next to castling_vit.node, never shipped): kernel timing and the measured FMA peak, on the same
// core library as the shipped addon. bench/ loads it (bench/bench_addon.ts); the package never does.
#include <napi.h>

#include "../addon/addon_state.h"
#include "../addon/off_thread.h"
#include "fma_peak.h"
#include "gemm_timing.h"
#include "micro_kernel_rate.h"

namespace castling::bench {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  // Only the result channel of the addon state: this addon makes no tensors.
  auto* state = new addon::AddonState();
  state->results = addon::openResultChannel(env);
  env.SetInstanceData(state);
  exports.Set("timeGemm", Napi::Function::New<timeGemm>(env, "timeGemm"));
  exports.Set("measureFmaPeak", Napi::Function::New<measureFmaPeak>(env, "measureFmaPeak"));
  exports.Set("timeMicroKernel", Napi::Function::New<timeMicroKernel>(env, "timeMicroKernel"));
  return exports;
}

}  // namespace castling::bench

// NODE_API_MODULE wants an unqualified function name.
static Napi::Object initModule(Napi::Env env, Napi::Object exports) { return castling::bench::init(env, exports); }

NODE_API_MODULE(castling_vit_bench, initModule)
