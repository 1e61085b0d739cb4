// Per-environment state of the addon (one per Node.js thread or worker that loads it).
#pragma once
#include <napi.h>

namespace castling::addon {

struct AddonState {
  Napi::FunctionReference tensorConstructor;
  static AddonState& of(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }
};

}  // namespace castling::addon
