// Backend-wide functions: what runs (backendInfo), and the knobs (setThreads, setIsa).
#include "backend.h"

#include <cmath>

#include "../core/cpu_features.h"
#include "../core/device_backend.h"
#include "../core/block_cache.h"
#include "../core/storage.h"
#include "../core/thread_pool.h"
#include "../core/op_registry.h"
#include "js_convert.h"

#ifdef CASTLING_WITH_CUDA
#include "../cuda/cuda_context.h"
#endif

#ifndef CASTLING_VERSION
#define CASTLING_VERSION "0.0.0"
#endif

namespace castling::addon {

namespace {

// CUDA's state: available, or why not (a CPU-only build says how to rebuild; a CUDA build on a
// machine without a usable GPU quotes the CUDA error).
Napi::Object cudaStatus(Napi::Env env) {
  auto cuda = Napi::Object::New(env);
  bool available = deviceBackend(Device::Cuda) != nullptr;
  cuda.Set("available", available);
  cuda.Set("built", Napi::Boolean::New(env,
#ifdef CASTLING_WITH_CUDA
                                       true
#else
                                       false
#endif
                                       ));
  if (!available) cuda.Set("reason", deviceUnavailableReason(Device::Cuda));
#ifdef CASTLING_WITH_CUDA
  const cuda::Status& s = cuda::status();
  if (available) {
    cuda.Set("device", s.device);
    cuda.Set("computeCapability", s.computeCapability);
    cuda.Set("multiprocessors", s.multiprocessors);
    cuda.Set("memoryBytes", double(s.memoryBytes));
    cuda::AllocatorStats a = cuda::allocator().stats();
    cuda.Set("liveBytes", double(a.liveBytes));
    cuda.Set("cachedBytes", double(a.cachedBytes));
  }
  cuda.Set("runtimeVersion", s.runtimeVersion);
  cuda.Set("driverVersion", s.driverVersion);
#endif
  return cuda;
}

}  // namespace

Napi::Value cudaAvailable(const Napi::CallbackInfo& info) { return cudaStatus(info.Env()); }

Napi::Value backendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  rethrowAsJs(env, [&] {
    out.Set("version", CASTLING_VERSION);
    out.Set("isa", isaName(activeIsa()));
    auto supported = Napi::Array::New(env);
    std::uint32_t n = 0;
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
      if (isaSupported(isa)) supported.Set(n++, isaName(isa));
    out.Set("supportedIsas", supported);
    out.Set("cpu", cpuFeatures().brand);
    out.Set("threads", ThreadPool::global().threads());
    out.Set("defaultThreads", ThreadPool::defaultThreads());
    out.Set("spinMicroseconds", ThreadPool::spinMicroseconds());
    BlockCache::configuredLimitBytes();  // a bad CASTLING_CACHE_MB is an error here
    out.Set("cacheLimitBytes", double(BlockCache::global().limitBytes()));
    out.Set("cuda", cudaStatus(env));
    auto ops = Napi::Array::New(env);
    std::uint32_t i = 0;
    for (const auto& name : OpRegistry::global().names()) ops.Set(i++, name);
    out.Set("ops", ops);
  });
  return out;
}

// releaseCachedMemory(): frees the blocks kept for reuse (after a large model is done, say).
Napi::Value releaseCachedMemory(const Napi::CallbackInfo& info) {
  BlockCache::global().trim();
#ifdef CASTLING_WITH_CUDA
  if (deviceBackend(Device::Cuda)) rethrowAsJs(info.Env(), [] { cuda::allocator().trim(); });
#endif
  return info.Env().Undefined();
}

// synchronizeCuda(): waits until the work queued on the GPU has finished (ops resolve once their
// kernels are queued); a fault of that work is thrown here. Nothing to wait for without CUDA.
Napi::Value synchronizeCuda(const Napi::CallbackInfo& info) {
  if (DeviceBackend* cuda = deviceBackend(Device::Cuda)) rethrowAsJs(info.Env(), [cuda] { cuda->synchronize(); });
  return info.Env().Undefined();
}

Napi::Value setThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw typeError(env, "setThreads: expected a number of threads");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= ThreadPool::kMaxThreads) || n != std::floor(n)) {
    throw rangeError(env, "setThreads: " + Napi::Number::New(env, n).ToString().Utf8Value() +
                                         " is not valid, expected an integer from 1 to " +
                                         std::to_string(ThreadPool::kMaxThreads));
  }
  rethrowAsJs(env, [&] { ThreadPool::global().setThreads(int(n)); });
  return env.Undefined();
}

Napi::Value setIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw typeError(env, "setIsa: expected 'scalar', 'avx2' or 'avx512'");
  rethrowAsJs(env, [&] { setActiveIsa(parseIsa(info[0].As<Napi::String>().Utf8Value())); });
  return env.Undefined();
}

// memoryStats(resetPeak?: boolean) -> { liveBytes, peakBytes } of native tensor and scratch memory.
Napi::Value memoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  out.Set("liveBytes", double(Storage::liveBytes()));
  out.Set("peakBytes", double(Storage::peakBytes()));
  out.Set("cachedBytes", double(BlockCache::global().cachedBytes()));
  if (info.Length() > 0 && info[0].ToBoolean().Value()) Storage::resetPeak();
  return out;
}

}  // namespace castling::addon
