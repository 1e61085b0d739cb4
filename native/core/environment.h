// Settings read from environment variables at start-up (CASTLING_THREADS, CASTLING_SPIN_US,
// CASTLING_CACHE_MB): one parse and one error message for all of them.
#pragma once
#include <cstdint>

namespace castling {

// The integer in environment variable `name`, or `fallback` when it is unset; an Error naming the
// variable, its value and the range [min, max] (followed by `unit`) when it is anything else.
std::int64_t integerFromEnvironment(const char* name, std::int64_t fallback, std::int64_t min, std::int64_t max,
                                    const char* unit = "");

}  // namespace castling
