#include "js_convert.h"

#include <cmath>

namespace castling::addon {

Shape toShape(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw typeError(env, what + " must be an array of dimensions");
  auto array = value.As<Napi::Array>();
  if (array.Length() > std::uint32_t(kMaxRank)) {
    throw rangeError(env, what + " has " + std::to_string(array.Length()) +
                                    " dimensions, expected at most " + std::to_string(kMaxRank));
  }
  Shape shape;
  for (std::uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value v = array.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!v.IsNumber() || !(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
      throw typeError(env, what + "[" + std::to_string(i) +
                                          "] must be a non-negative integer");
    }
    shape.push_back(std::int64_t(d));
  }
  rethrowAsJs(env, [&] { checkedNumel(shape, what.c_str()); });
  return shape;
}

Napi::Array fromShape(Napi::Env env, const Shape& shape) {
  auto array = Napi::Array::New(env, shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) array.Set(std::uint32_t(i), double(shape[i]));
  return array;
}

Attrs toAttrs(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  Attrs attrs;
  if (value.IsUndefined() || value.IsNull()) return attrs;
  if (!value.IsObject()) throw typeError(env, what + " must be an object");
  auto object = value.As<Napi::Object>();
  Napi::Array keys = object.GetPropertyNames();
  for (std::uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).ToString();
    Napi::Value v = object.Get(key);
    if (v.IsUndefined()) continue;
    if (v.IsBoolean()) {
      attrs.set(key, v.As<Napi::Boolean>().Value() ? 1.0 : 0.0);
    } else if (v.IsNumber()) {
      attrs.set(key, v.As<Napi::Number>().DoubleValue());
    } else {
      throw typeError(env, what + "." + key + " must be a number or a boolean");
    }
  }
  return attrs;
}

NativeFailure currentFailure() {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    releaseMemoryReserve();  // the message and the error built from it need memory
    return {ErrorKind::OutOfMemory, "out of memory: the native allocation failed (free tensors with dispose(), or use smaller batches)"};
  } catch (const OutOfMemory& e) {
    releaseMemoryReserve();
    return {e.kind(), e.what()};
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  } catch (const std::exception& e) {
    return {ErrorKind::Internal, std::string("internal error: ") + e.what()};
  } catch (...) {
    return {ErrorKind::Internal, "internal error: unknown exception"};
  }
}

}  // namespace castling::addon
