// Marks memory that our own allocator holds as off limits to AddressSanitizer, in sanitizer
// builds (CASTLING_SANITIZE=ON); nothing in any other build. The block cache hands out blocks
// rounded up to a size class and keeps freed blocks for reuse: without this, a kernel writing past
// the end of a tensor into the rounding, or reading a tensor after it was freed into the cache,
// would touch memory that malloc still counts as allocated, and AddressSanitizer could not see it.
#pragma once
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define CASTLING_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CASTLING_ASAN 1
#endif
#endif

#ifdef CASTLING_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace castling {

// Accessing [p, p + bytes) is reported from now on.
inline void poisonMemory([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t bytes) {
#ifdef CASTLING_ASAN
  __asan_poison_memory_region(p, bytes);
#endif
}

// [p, p + bytes) may be accessed again.
inline void unpoisonMemory([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t bytes) {
#ifdef CASTLING_ASAN
  __asan_unpoison_memory_region(p, bytes);
#endif
}

}  // namespace castling
