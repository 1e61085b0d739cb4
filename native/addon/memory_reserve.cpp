#include "memory_reserve.h"

#include <atomic>
#include <cstdlib>

namespace castling::addon {

namespace {

// Enough for a few error objects and their messages many times over; small next to any tensor.
constexpr std::size_t kReserveBytes = std::size_t(32) << 20;

std::atomic<void*> reserve{nullptr};

}  // namespace

void holdMemoryReserve() noexcept {
  if (reserve.load(std::memory_order_relaxed) != nullptr) return;
  void* block = std::malloc(kReserveBytes);
  if (block == nullptr) return;  // still out of memory: try again at the next call
  void* expected = nullptr;
  if (!reserve.compare_exchange_strong(expected, block)) std::free(block);  // another thread won
}

void releaseMemoryReserve() noexcept { std::free(reserve.exchange(nullptr)); }

}  // namespace castling::addon
