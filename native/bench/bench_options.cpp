#include "bench_options.h"

#include "../addon/js_error.h"

namespace castling::bench {

BenchOptions readBenchOptions(const Napi::CallbackInfo& info, const std::string& function, const char* usage,
                              std::initializer_list<const char*> numberKeys) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw addon::typeError(env, usage);
  Napi::Object options = info[0].As<Napi::Object>();
  BenchOptions out{options.Get("isa"), {}};
  // isa is a string, which Attrs (numbers only) does not hold: read apart from the numbers.
  if (!out.isa.IsUndefined() && !out.isa.IsString()) throw addon::typeError(env, usage);
  std::string expected = "isa";
  for (const char* key : numberKeys) expected += std::string(", ") + key;
  Napi::Array keys = options.GetPropertyNames();
  for (std::uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).ToString();
    if (key == "isa") continue;
    bool known = false;
    for (const char* k : numberKeys) known = known || key == k;
    if (!known) throw addon::typeError(env, function + ": unknown option '" + key + "' (expected " + expected + ")");
    Napi::Value value = options.Get(key);
    if (value.IsUndefined()) continue;
    if (!value.IsNumber()) throw addon::typeError(env, function + ": " + key + " must be a number");
    out.numbers.set(key, value.As<Napi::Number>().DoubleValue());
  }
  return out;
}

Isa resolveIsa(const Napi::Value& isa) {
  Isa resolved = isa.IsString() ? parseIsa(isa.As<Napi::String>().Utf8Value()) : activeIsa();
  requireIsa(resolved);
  return resolved;
}

}  // namespace castling::bench
