// A cache of freed memory blocks, reused by later allocations of the same size class. A ViT pass
// allocates the same intermediate sizes every time; without the cache each large block would go
// back to the OS on free and come back as fresh pages (a page fault per 4 KiB) on the next pass.
// With it, a model's steady state allocates nothing from the OS: the arena of its intermediates
// is reused. Bounded: past the limit, freed blocks go back to the OS.
#pragma once
#include <cstddef>
#include <cstdint>

namespace castling {

class BlockCache {
 public:
  static BlockCache& global();

  // A 64-byte-aligned block of at least `bytes` (nullptr when the OS has no memory left).
  void* allocate(std::size_t bytes);
  // Returns a block from allocate(bytes) for reuse.
  void release(void* block, std::size_t bytes);
  // Frees every cached block now.
  void trim();

  std::int64_t cachedBytes() const;
  // The most bytes kept for reuse (default 1/8 of physical memory, CASTLING_CACHE_MB overrides).
  std::int64_t limitBytes() const { return limit_; }
  // The limit CASTLING_CACHE_MB asks for (the default when unset); an Error when it is not a
  // number of megabytes. The cache itself keeps the default then: backendInfo() reports it.
  static std::int64_t configuredLimitBytes();

  // The size class a request is rounded up to: 64-byte steps below 64 KiB, then steps of a
  // quarter of the power of two (so at most 25% is wasted).
  static std::size_t sizeClass(std::size_t bytes);

 private:
  BlockCache();
  std::int64_t limit_;
};

}  // namespace castling
