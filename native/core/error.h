// Errors raised by the native core. Kernels throw castling::Error; the addon layer maps it to a
// JavaScript error with the same message and the stable code of its kind (lib/errors.ts), so a
// message must say what was wrong and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace castling {

// What a caller can do about an error, the part of it a program branches on (the JavaScript
// error's `code`). Most errors are inputs the call does not take; the others are named.
enum class ErrorKind {
  InvalidArgument,  // a shape, value or attribute the call does not take
  Unsupported,      // a device, CPU path or form of tensor this build or machine cannot run
  OutOfMemory,      // an allocation that failed
  Internal,         // a broken invariant or a device fault: a bug, not the caller's input
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::InvalidArgument)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// An allocation that failed. Its own type so that the addon can free its memory reserve before
// building the JavaScript error (native/addon/memory_reserve.h): the error path needs memory too.
class OutOfMemory : public Error {
 public:
  explicit OutOfMemory(const std::string& message) : Error(message, ErrorKind::OutOfMemory) {}
};

// Builds a message from any streamable pieces: fail("expected ", a, " got ", b).
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw Error(out.str());
}

// fail() for an error of another kind than an invalid argument.
template <typename... Parts>
[[noreturn]] void failAs(ErrorKind kind, const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw Error(out.str(), kind);
}

template <typename... Parts>
[[noreturn]] void failOutOfMemory(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw OutOfMemory(out.str());
}

}  // namespace castling
