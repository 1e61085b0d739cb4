// Errors raised by the native core. Kernels throw castling::Error; the addon layer maps it to a
// JavaScript Error with the same message, so a message must say what was wrong and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace castling {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// An allocation that failed. Its own type so that the addon can free its memory reserve before
// building the JavaScript error (native/addon/memory_reserve.h): the error path needs memory too.
class OutOfMemory : public Error {
 public:
  explicit OutOfMemory(const std::string& message) : Error(message) {}
};

// Builds a message from any streamable pieces: fail("expected ", a, " got ", b).
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw Error(out.str());
}

template <typename... Parts>
[[noreturn]] void failOutOfMemory(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  throw OutOfMemory(out.str());
}

}  // namespace castling
