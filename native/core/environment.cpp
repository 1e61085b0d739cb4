#include "environment.h"

#include <cerrno>
#include <cstdlib>

#include "error.h"

namespace castling {

std::int64_t integerFromEnvironment(const char* name, std::int64_t fallback, std::int64_t min, std::int64_t max,
                                    const char* unit) {
  const char* env = std::getenv(name);
  if (env == nullptr) return fallback;
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(env, &end, 10);
  if (end == env || *end != '\0' || errno == ERANGE || value < min || value > max) {
    fail(name, "=", env, " is not valid: expected an integer from ", min, " to ", max, unit);
  }
  return std::int64_t(value);
}

}  // namespace castling
