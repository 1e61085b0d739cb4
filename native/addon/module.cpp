// Module entry point: registers the CPU ops (and, in a CUDA build, starts the CUDA backend, which
// registers its ops when a GPU is usable) and exports the addon's functions.
#include <napi.h>

#include "../cpu/cpu_ops.h"
#ifdef CASTLING_WITH_CUDA
#include "../cuda/cuda_context.h"
#endif
#include "addon_state.h"
#include "backend.h"
#include "plan_handle.h"
#include "pool_trace_binding.h"
#include "run_op.h"
#include "tensor_handle.h"

namespace castling::addon {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  static bool registered = [] {
    cpu::registerCpuOps(OpRegistry::global());
#ifdef CASTLING_WITH_CUDA
    cuda::initialize(OpRegistry::global());  // without a usable GPU it records why instead
#endif
    return true;
  }();
  (void)registered;
  auto* state = new AddonState();
  Napi::Function tensor = TensorHandle::define(env);
  state->tensorConstructor = Napi::Persistent(tensor);
  state->results = openResultChannel(env);
  env.SetInstanceData(state);

  exports.Set("NativeTensor", tensor);
  exports.Set("NativePlan", PlanHandle::define(env));
  exports.Set("runOp", Napi::Function::New<runOp>(env, "runOp"));
  exports.Set("backendInfo", Napi::Function::New<backendInfo>(env, "backendInfo"));
  exports.Set("cudaAvailable", Napi::Function::New<cudaAvailable>(env, "cudaAvailable"));
  exports.Set("setThreads", Napi::Function::New<setThreads>(env, "setThreads"));
  exports.Set("setIsa", Napi::Function::New<setIsa>(env, "setIsa"));
  exports.Set("memoryStats", Napi::Function::New<memoryStats>(env, "memoryStats"));
  exports.Set("releaseCachedMemory", Napi::Function::New<releaseCachedMemory>(env, "releaseCachedMemory"));
  exports.Set("synchronizeCuda", Napi::Function::New<synchronizeCuda>(env, "synchronizeCuda"));
  // A diagnostic of the engine, not a benchmark: how the pool split the work of the calls in
  // between (bench/scaling.ts models machines with more cores from it). It must live where the
  // pool is: a second addon has a pool of its own.
  exports.Set("tracePool", Napi::Function::New<tracePool>(env, "tracePool"));
  return exports;
}

}  // namespace castling::addon

// NODE_API_MODULE wants an unqualified function name.
static Napi::Object initModule(Napi::Env env, Napi::Object exports) {
  return castling::addon::init(env, exports);
}

NODE_API_MODULE(castling_vit, initModule)
