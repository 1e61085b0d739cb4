#pragma once
#include <napi.h>

namespace castling::addon {

// tracePool(true) starts recording the thread pool's jobs; tracePool(false) stops and returns
// them: [{ dynamic, lanes, serialBeforeNs, pieceNs: Float64Array }] (see core/pool_trace.h).
Napi::Value tracePool(const Napi::CallbackInfo& info);

}  // namespace castling::addon
