// Per-environment state of the addon (one per Node.js thread or worker that loads it).
#pragma once
#include <napi.h>

#include <memory>

#include "off_thread.h"

namespace castling::addon {

struct AddonState {
  Napi::FunctionReference tensorConstructor;
  std::shared_ptr<ResultChannel> results;  // where async calls' results come back (off_thread.h)
  static AddonState& of(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }
};

}  // namespace castling::addon
