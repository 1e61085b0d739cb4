#include "pool_trace_binding.h"

#include "js_error.h"
#include "../core/pool_trace.h"

namespace castling::addon {

Napi::Value tracePool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsBoolean()) {
    throw typeError(env, "tracePool: expected true (start recording) or false (stop and return the regions)");
  }
  PoolTrace& trace = PoolTrace::global();
  if (info[0].As<Napi::Boolean>().Value()) {
    trace.start();
    return env.Undefined();
  }
  std::vector<TraceRegion> regions = trace.stop();
  Napi::Array out = Napi::Array::New(env, regions.size());
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const TraceRegion& r = regions[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("dynamic", r.dynamic);
    o.Set("lanes", r.lanes);
    o.Set("op", r.op);
    o.Set("serialBeforeNs", r.serialBeforeNs);
    Napi::Float64Array pieces = Napi::Float64Array::New(env, r.pieceNs.size());
    for (std::size_t p = 0; p < r.pieceNs.size(); ++p) pieces[p] = r.pieceNs[p];
    o.Set("pieceNs", pieces);
    out.Set(std::uint32_t(i), o);
  }
  return out;
}

}  // namespace castling::addon
