#pragma once
#include <napi.h>

namespace castling::bench {

Napi::Value timeGemm(const Napi::CallbackInfo& info);

}  // namespace castling::bench
