// JavaScript errors with the stable codes of lib/errors.ts. Every error the addon throws carries
// one, so that a program branches on `code` whether lib/ or the native side refused its call; the
// class follows lib/ too: a TypeError for a wrong type, a RangeError for a value the call does not
// take, an Error otherwise.
#pragma once
#include <napi.h>

#include <string>

#include "../core/error.h"

namespace castling::addon {

// The codes native errors carry (their spelling is lib/errors.ts's ErrorCodes).
namespace codes {
inline constexpr const char* kInvalidArgType = "ERR_CASTLING_INVALID_ARG_TYPE";
inline constexpr const char* kInvalidArgValue = "ERR_CASTLING_INVALID_ARG_VALUE";
inline constexpr const char* kInvalidState = "ERR_CASTLING_INVALID_STATE";
inline constexpr const char* kDisposed = "ERR_CASTLING_DISPOSED";
inline constexpr const char* kBusy = "ERR_CASTLING_BUSY";
inline constexpr const char* kUnsupported = "ERR_CASTLING_UNSUPPORTED";
inline constexpr const char* kOutOfMemory = "ERR_CASTLING_OUT_OF_MEMORY";
inline constexpr const char* kInternal = "ERR_CASTLING_INTERNAL";
}  // namespace codes

// An argument of the wrong type: a TypeError with kInvalidArgType.
Napi::Error typeError(Napi::Env env, const std::string& message);
// An argument whose value the call does not take: a RangeError with kInvalidArgValue.
Napi::Error rangeError(Napi::Env env, const std::string& message);
// An Error with `code` (one of codes::).
Napi::Error codedError(Napi::Env env, const char* code, const std::string& message);
// The JavaScript error of a core castling::Error of `kind`.
Napi::Error errorOfKind(Napi::Env env, ErrorKind kind, const std::string& message);

}  // namespace castling::addon
