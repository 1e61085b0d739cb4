#pragma once
#include <napi.h>

namespace castling::addon {

Napi::Value backendInfo(const Napi::CallbackInfo& info);
// cudaAvailable() -> { available, reason?, device?, computeCapability?, memoryBytes? }
Napi::Value cudaAvailable(const Napi::CallbackInfo& info);
Napi::Value setThreads(const Napi::CallbackInfo& info);
Napi::Value setIsa(const Napi::CallbackInfo& info);
Napi::Value memoryStats(const Napi::CallbackInfo& info);
Napi::Value releaseCachedMemory(const Napi::CallbackInfo& info);
Napi::Value synchronizeCuda(const Napi::CallbackInfo& info);

}  // namespace castling::addon
