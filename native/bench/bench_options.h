// The options object of the benchmark addon's measurements, {isa?: 'scalar' | 'avx2' | 'avx512',
// <numbers>...}: read once here for every measurement, with errors that name the function, the
// option and what was expected.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <string>

#include "../core/cpu_features.h"
#include "../core/op_registry.h"

namespace castling::bench {

struct BenchOptions {
  Napi::Value isa;  // undefined or a string, checked by resolveIsa
  Attrs numbers;    // the numeric options present
};

// Reads info[0]: `usage` is thrown (TypeError) when it is not an object or isa is not a string;
// any key but isa and `numberKeys` is refused by name, and so is a number option that is not a
// number.
BenchOptions readBenchOptions(const Napi::CallbackInfo& info, const std::string& function, const char* usage,
                              std::initializer_list<const char*> numberKeys);

// The CPU path an option names (the active one when absent); throws (castling::Error) for an
// unknown name or one this CPU cannot run. Call inside addon::rethrowAsJs.
Isa resolveIsa(const Napi::Value& isa);

}  // namespace castling::bench
