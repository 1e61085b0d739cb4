// Backend-wide functions: what runs (backendInfo), and the knobs (setThreads, setIsa).
#include "backend.h"

#include <cmath>

#include "../core/cpu_features.h"
#include "../core/block_cache.h"
#include "../core/storage.h"
#include "../core/thread_pool.h"
#include "../core/op_registry.h"
#include "js_convert.h"

#ifndef CASTLING_VERSION
#define CASTLING_VERSION "0.0.0"
#endif

namespace castling::addon {

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
    auto cuda = Napi::Object::New(env);
    cuda.Set("available", false);
    cuda.Set("reason", "this build of castling-vit has no CUDA backend (it was built for the CPU only)");
    out.Set("cuda", cuda);
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
  return info.Env().Undefined();
}

Napi::Value setThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setThreads: expected a number of threads");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= ThreadPool::kMaxThreads) || n != std::floor(n)) {
    throw Napi::RangeError::New(env, "setThreads: " + Napi::Number::New(env, n).ToString().Utf8Value() +
                                         " is not valid, expected an integer from 1 to " +
                                         std::to_string(ThreadPool::kMaxThreads));
  }
  rethrowAsJs(env, [&] { ThreadPool::global().setThreads(int(n)); });
  return env.Undefined();
}

Napi::Value setIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "setIsa: expected 'scalar', 'avx2' or 'avx512'");
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
