// Conversions between JavaScript values and core types, each validating its input and throwing
// a JavaScript TypeError/Error that names the argument.
#pragma once
#include <napi.h>

#include <exception>
#include <new>
#include <string>

#include "../core/error.h"
#include "../core/op_registry.h"
#include "../core/tensor.h"
#include "memory_reserve.h"

namespace castling::addon {

// An array of non-negative safe integers.
Shape toShape(const Napi::Value& value, const std::string& what);
Napi::Array fromShape(Napi::Env env, const Shape& shape);
// A plain object of numbers and booleans.
Attrs toAttrs(const Napi::Value& value, const std::string& what);

// Runs fn, turning core errors, allocation failures and any other C++ exception into JavaScript
// exceptions: nothing thrown inside the addon may reach node-addon-api's wrapper, which lets only
// Napi::Error through (anything else is std::terminate, the whole process).
template <typename Fn>
void rethrowAsJs(Napi::Env env, Fn&& fn) {
  holdMemoryReserve();
  try {
    fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const OutOfMemory& e) {
    releaseMemoryReserve();  // the error below needs memory
    throw Napi::Error::New(env, e.what());
  } catch (const Error& e) {
    throw Napi::Error::New(env, e.what());
  } catch (const std::bad_alloc&) {
    releaseMemoryReserve();  // the error below needs memory
    throw Napi::Error::New(env, "out of memory: the native allocation failed (free tensors with dispose(), or use smaller batches)");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("internal error: ") + e.what());
  } catch (...) {
    throw Napi::Error::New(env, "internal error: an unknown native exception");
  }
}

// The message of whatever exception is in flight (for work that ran off the JavaScript thread).
std::string currentExceptionMessage();

}  // namespace castling::addon
