#pragma once
#include <napi.h>

namespace castling::addon {

Napi::Value timeGemm(const Napi::CallbackInfo& info);

}  // namespace castling::addon
