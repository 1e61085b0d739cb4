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

// Private pools, for CUDA graphs (cuda_graph.h). A graph replays its kernels on the addresses they
// had when it was captured, so the rule is: every block that a capture allocates, or releases
// (its own intermediates, or a block from before the capture whose last user it was), belongs to
// that graph's pool until the graph is destroyed. Between replays no one else is handed such a
// block, even once it is released: a replay would overwrite it. Within one capture a block may be
// released and handed out again, because every replay repeats the capture's order of use on one
// stream. When the graph goes, its pool's free blocks join the shared cache, and its blocks still
// in use join it when they are released.
using PoolId = std::uint64_t;  // 0: no pool

class CachingAllocator {
 public:
  // Blocks of at least `bytes` (256-byte aligned, as cudaMalloc gives). On cudaMalloc failure the
  // cache is emptied and the allocation tried once more before an Error says how much was asked
  // for and how much is held.
  void* allocate(std::size_t bytes);
  void release(void* block, std::size_t bytes) noexcept;
  // Frees every cached block of the shared cache (synchronises the device); pools keep theirs.
  void trim();

  // A new private pool (see PoolId), and its end: the graph that owned it is gone.
  PoolId createPool();
  void destroyPool(PoolId pool);
  // While set (non-zero) on a thread, its allocations and releases go to `pool`: set around a capture.
  static void setThreadPool(PoolId pool);
  // Blocks a pool holds now, in use or free (for tests).
  std::size_t poolBlocks(PoolId pool) const;
  AllocatorStats stats() const;
  void resetPeak();

  // The size class a request is rounded up to: 512-byte steps below 1 MiB, then steps of an
  // eighth of the power of two (at most 12.5% wasted; few distinct classes, so reuse is likely).
  static std::size_t sizeClass(std::size_t bytes);

 private:
  using FreeLists = std::map<std::size_t, std::vector<void*>>;  // by size class
  // A free block of `size` from `lists`, or null. Requires mutex_.
  static void* takeFree(FreeLists& lists, std::size_t size);

  mutable std::mutex mutex_;
  FreeLists free_;                         // the shared cache
  std::map<PoolId, FreeLists> poolFree_;   // each live pool's free blocks
  std::map<void*, PoolId> owner_;          // every block a live pool holds
  PoolId nextPool_ = 1;
  AllocatorStats stats_;
};

}  // namespace castling::cuda
