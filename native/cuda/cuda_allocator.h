// A caching allocator of device memory. cudaMalloc and cudaFree are slow (cudaFree also waits for
// the whole device), and a ViT pass asks for the same intermediate sizes every time: freed blocks
// are kept by size class and handed out again. All work runs in order on the backend's one
// stream, so a block freed by the host can be reused by the next op at once: any kernel still
// reading it was queued before, and the stream runs it before the new owner's kernels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace castling::cuda {

struct AllocatorStats {
  std::int64_t liveBytes = 0;    // handed out and not released
  std::int64_t peakBytes = 0;    // most live at once since the last resetPeak()
  std::int64_t cachedBytes = 0;  // kept for reuse
  std::int64_t deviceBytes = 0;  // held from cudaMalloc (live + cached)
  std::int64_t mallocs = 0;      // cudaMalloc calls
  std::int64_t reuses = 0;       // requests served from the cache
};

class CachingAllocator {
 public:
  // Blocks of at least `bytes` (256-byte aligned, as cudaMalloc gives). On cudaMalloc failure the
  // cache is emptied and the allocation tried once more before an Error says how much was asked
  // for and how much is held.
  void* allocate(std::size_t bytes);
  void release(void* block, std::size_t bytes) noexcept;
  // Frees every cached block (synchronises the device).
  void trim();
  AllocatorStats stats() const;
  void resetPeak();

  // The size class a request is rounded up to: 512-byte steps below 1 MiB, then steps of an
  // eighth of the power of two (at most 12.5% wasted; few distinct classes, so reuse is likely).
  static std::size_t sizeClass(std::size_t bytes);

 private:
  mutable std::mutex mutex_;
  std::map<std::size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

}  // namespace castling::cuda
