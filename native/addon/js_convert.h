// Conversions between JavaScript values and core types, each validating its input and throwing
// a JavaScript TypeError/RangeError that names the argument (with its code, js_error.h).
#pragma once
#include <napi.h>

#include <exception>
#include <new>
#include <string>

#include "../core/error.h"
#include "../core/op_registry.h"
#include "../core/tensor.h"
#include "js_error.h"
#include "memory_reserve.h"

namespace castling::addon {

// An array of non-negative safe integers.
Shape toShape(const Napi::Value& value, const std::string& what);
Napi::Array fromShape(Napi::Env env, const Shape& shape);
// A plain object of numbers and booleans.
Attrs toAttrs(const Napi::Value& value, const std::string& what);

// Runs fn, turning core errors, allocation failures and any other C++ exception into JavaScript
// exceptions with the code of their kind: nothing thrown inside the addon may reach node-addon-api's
// wrapper, which lets only Napi::Error through (anything else is std::terminate, the whole process).
template <typename Fn>
void rethrowAsJs(Napi::Env env, Fn&& fn) {
  holdMemoryReserve();
  try {
    fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const OutOfMemory& e) {
    releaseMemoryReserve();  // the error below needs memory
    throw errorOfKind(env, e.kind(), e.what());
  } catch (const Error& e) {
    throw errorOfKind(env, e.kind(), e.what());
  } catch (const std::bad_alloc&) {
    releaseMemoryReserve();  // the error below needs memory
    throw errorOfKind(env, ErrorKind::OutOfMemory, "out of memory: the native allocation failed (free tensors with dispose(), or use smaller batches)");
  } catch (const std::exception& e) {
    throw errorOfKind(env, ErrorKind::Internal, std::string("internal error: ") + e.what());
  } catch (...) {
    throw errorOfKind(env, ErrorKind::Internal, "internal error: an unknown native exception");
  }
}

// What an exception thrown off the JavaScript thread said, kept until the JavaScript error can be
// made from it there.
struct NativeFailure {
  ErrorKind kind;
  std::string message;
};

// The failure of whatever exception is in flight (for work that ran off the JavaScript thread).
NativeFailure currentFailure();

}  // namespace castling::addon
