#include "storage.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "block_cache.h"
#include "error.h"

namespace castling {

namespace {
std::atomic<std::int64_t> g_live_bytes{0};
std::atomic<std::int64_t> g_peak_bytes{0};

void notePeak(std::int64_t live) {
  std::int64_t peak = g_peak_bytes.load(std::memory_order_relaxed);
  while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}
}

std::int64_t maxAllocationBytes() {
  static const std::int64_t limit = [] {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return kMaxElements * std::int64_t(sizeof(float));
    return std::int64_t(pages) * page / 4 * 3;
  }();
  return limit;
}

Storage::Storage(std::int64_t count, bool zero) : count_(count) {
  if (count < 0 || count > kMaxElements) {
    fail("cannot allocate ", count, " floats: expected a size between 0 and ", kMaxElements);
  }
  std::size_t bytes = std::size_t(count) * sizeof(float);
  if (std::int64_t(bytes) > maxAllocationBytes()) {
    fail("cannot allocate ", bytes, " bytes (", count, " floats): more than the ",
         maxAllocationBytes(), " bytes (3/4 of physical memory) a single tensor may use");
  }
  data_ = static_cast<float*>(BlockCache::global().allocate(bytes));
  if (data_ == nullptr) fail("out of memory allocating ", bytes, " bytes");
  if (zero) std::memset(data_, 0, bytes);
  notePeak(g_live_bytes += std::int64_t(bytes));
}

Storage::~Storage() {
  BlockCache::global().release(data_, std::size_t(count_) * sizeof(float));
  g_live_bytes -= std::int64_t(std::size_t(count_) * sizeof(float));
}

std::int64_t Storage::liveBytes() { return g_live_bytes.load(); }
std::int64_t Storage::peakBytes() { return g_peak_bytes.load(); }
void Storage::resetPeak() { g_peak_bytes.store(g_live_bytes.load()); }

float* AlignedBuffer::ensure(std::int64_t count) {
  if (!storage || storage->size() < count) storage = std::make_shared<Storage>(count);
  return storage->data();
}

}  // namespace castling
