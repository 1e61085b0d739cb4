#pragma once
#include <napi.h>

namespace castling::addon {

// runOp(name: string, inputs: (NativeTensor | null)[], attrs?: object, async?: boolean)
//   -> NativeTensor[] | Promise<NativeTensor[]>
Napi::Value runOp(const Napi::CallbackInfo& info);

}  // namespace castling::addon
