#include "js_error.h"

namespace castling::addon {

namespace {

Napi::Error withCode(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  return error;
}

}  // namespace

Napi::Error typeError(Napi::Env env, const std::string& message) {
  return withCode(Napi::TypeError::New(env, message), codes::kInvalidArgType);
}

Napi::Error rangeError(Napi::Env env, const std::string& message) {
  return withCode(Napi::RangeError::New(env, message), codes::kInvalidArgValue);
}

Napi::Error codedError(Napi::Env env, const char* code, const std::string& message) {
  return withCode(Napi::Error::New(env, message), code);
}

Napi::Error errorOfKind(Napi::Env env, ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::InvalidArgument:
      return rangeError(env, message);
    case ErrorKind::Unsupported:
      return codedError(env, codes::kUnsupported, message);
    case ErrorKind::OutOfMemory:
      return codedError(env, codes::kOutOfMemory, message);
    case ErrorKind::Internal:
      break;
  }
  return codedError(env, codes::kInternal, message);
}

}  // namespace castling::addon
