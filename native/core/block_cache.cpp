#include "block_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "asan_poison.h"
#include "environment.h"
#include "error.h"
#include "storage.h"

namespace castling {

namespace {

struct CacheState {
  std::mutex mutex;
  // Free blocks by size class. Looked up by exact class: a pass asks for the same sizes again.
  std::map<std::size_t, std::vector<void*>> free;
  std::int64_t cached = 0;
};

// Never destroyed: storages held by thread-locals and statics are freed during exit, after
// ordinary statics are gone, and must still find the cache intact.
CacheState& state() {
  static CacheState* s = new CacheState();
  return *s;
}

}  // namespace

BlockCache& BlockCache::global() {
  static BlockCache cache;
  return cache;
}

namespace {

// 1/8 of physical memory (1 GiB where the system does not say).
std::int64_t defaultLimitBytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? std::int64_t(pages) * page / 8 : (std::int64_t(1) << 30);
}

// A limit in megabytes whose bytes still fit an int64: 2^43 MB.
constexpr std::int64_t kMaxLimitMegabytes = std::int64_t(1) << 43;

}  // namespace

std::int64_t BlockCache::configuredLimitBytes() {
  std::int64_t mb = integerFromEnvironment("CASTLING_CACHE_MB", -1, 0, kMaxLimitMegabytes, " (megabytes)");
  return mb < 0 ? defaultLimitBytes() : mb << 20;
}

BlockCache::BlockCache() {
  try {
    limit_ = configuredLimitBytes();
  } catch (const Error&) {
    // A bad CASTLING_CACHE_MB is reported by backendInfo(), like the pool's variables; the cache
    // must exist meanwhile (every tensor goes through it).
    limit_ = defaultLimitBytes();
  }
}

std::size_t BlockCache::sizeClass(std::size_t bytes) {
  if (bytes == 0) return kAlignment;
  if (bytes <= (std::size_t(1) << 16)) return (bytes + kAlignment - 1) / kAlignment * kAlignment;
  std::size_t power = std::size_t(1) << (63 - __builtin_clzll(bytes));  // largest 2^k <= bytes
  std::size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

namespace {

// Under AddressSanitizer only the requested bytes of a block are addressable: the rounding up to
// its size class is not part of the tensor.
void* handOut(void* block, std::size_t bytes, std::size_t size) {
  if (block != nullptr) {
    unpoisonMemory(block, bytes);
    poisonMemory(static_cast<char*>(block) + bytes, size - bytes);
  }
  return block;
}

// A block goes back to malloc as malloc gave it out.
void freeBlock(void* block, std::size_t size) {
  unpoisonMemory(block, size);
  std::free(block);
}

}  // namespace

void* BlockCache::allocate(std::size_t bytes) {
  std::size_t size = sizeClass(bytes);
  {
    CacheState& c = state();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free.find(size);
    if (it != c.free.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      c.cached -= std::int64_t(size);
      return handOut(block, bytes, size);
    }
  }
  void* block = std::aligned_alloc(kAlignment, size);
  if (block == nullptr) {
    trim();  // memory held for reuse may be what is missing
    block = std::aligned_alloc(kAlignment, size);
  }
  return handOut(block, bytes, size);
}

void BlockCache::release(void* block, std::size_t bytes) {
  if (block == nullptr) return;
  std::size_t size = sizeClass(bytes);
  {
    CacheState& c = state();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.cached + std::int64_t(size) <= limit_) {
      // Keeping the block needs a list entry, an allocation that can fail when memory has run
      // out; release runs in destructors, so that failure frees the block instead of throwing.
      try {
        c.free[size].push_back(block);
        c.cached += std::int64_t(size);
        poisonMemory(block, size);  // a use of the freed tensor is reported until it is reused
        return;
      } catch (const std::bad_alloc&) {
      }
    }
  }
  freeBlock(block, size);
}

void BlockCache::trim() {
  std::map<std::size_t, std::vector<void*>> blocks;
  {
    CacheState& c = state();
    std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.free);
    c.cached = 0;
  }
  for (auto& [size, list] : blocks)
    for (void* block : list) freeBlock(block, size);
}

std::int64_t BlockCache::cachedBytes() const {
  CacheState& c = state();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.cached;
}

}  // namespace castling
