#include "cuda_allocator.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_check.h"

#if defined(CASTLING_CUDA_EMULATION)
#include "emulation/device_memory.h"
#endif

namespace castling::cuda {

std::size_t CachingAllocator::sizeClass(std::size_t bytes) {
  constexpr std::size_t kSmallStep = 512, kSmallLimit = std::size_t(1) << 20;
  if (bytes == 0) return kSmallStep;
  if (bytes <= kSmallLimit) return (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  std::size_t power = std::size_t(1) << (63 - __builtin_clzll(bytes));
  std::size_t step = power / 8;
  return (bytes + step - 1) / step * step;
}

namespace {
thread_local PoolId threadPool = 0;  // set while this thread captures a graph
}  // namespace

void CachingAllocator::setThreadPool(PoolId pool) { threadPool = pool; }

void* CachingAllocator::takeFree(FreeLists& lists, std::size_t size) {
  auto it = lists.find(size);
  if (it == lists.end() || it->second.empty()) return nullptr;
  void* block = it->second.back();
  it->second.pop_back();
  return block;
}

void* CachingAllocator::allocate(std::size_t bytes) {
  std::size_t size = sizeClass(bytes);
  const PoolId pool = threadPool;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // A capture reuses its own pool's blocks first, then adopts one from the shared cache.
    void* block = pool && poolFree_.count(pool) ? takeFree(poolFree_[pool], size) : nullptr;
    if (!block) block = takeFree(free_, size);
    if (block) {
      if (pool) owner_[block] = pool;
      stats_.cachedBytes -= std::int64_t(size);
      stats_.liveBytes += std::int64_t(size);
      stats_.peakBytes = std::max(stats_.peakBytes, stats_.liveBytes);
      ++stats_.reuses;
#if defined(CASTLING_CUDA_EMULATION)
      // The emulated device refills a reused block with its never-written pattern (NaN), as it
      // fills a fresh one, so that a kernel reading an output it did not write is caught even
      // when the block comes from this cache.
      emu::fillUnwritten(block, size);
#endif
      return block;
    }
  }
  void* block = nullptr;
  cudaError_t status = cudaMalloc(&block, size);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error state of this thread
    trim();              // memory held for reuse may be what is missing
    status = cudaMalloc(&block, size);
  }
  if (status != cudaSuccess) {
    cudaGetLastError();
    AllocatorStats s = stats();
    failOutOfMemory("CUDA out of memory: cudaMalloc(", size, " bytes) failed (", cudaGetErrorString(status), ") with ",
         s.liveBytes, " bytes live in castling-vit tensors");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (pool) owner_[block] = pool;
  stats_.deviceBytes += std::int64_t(size);
  stats_.liveBytes += std::int64_t(size);
  stats_.peakBytes = std::max(stats_.peakBytes, stats_.liveBytes);
  ++stats_.mallocs;
  return block;
}

void CachingAllocator::release(void* block, std::size_t bytes) noexcept {
  if (!block) return;
  std::size_t size = sizeClass(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  // A pool's block goes back to its pool, from whichever thread; any block a capture releases
  // joins the capture's pool (the graph may read it on every replay).
  auto owned = owner_.find(block);
  PoolId pool = owned != owner_.end() ? owned->second : threadPool;
  if (pool && poolFree_.count(pool)) {
    owner_[block] = pool;
    poolFree_[pool][size].push_back(block);
  } else {
    if (owned != owner_.end()) owner_.erase(owned);
    free_[size].push_back(block);
  }
  stats_.cachedBytes += std::int64_t(size);
  stats_.liveBytes -= std::int64_t(size);
}

PoolId CachingAllocator::createPool() {
  std::lock_guard<std::mutex> lock(mutex_);
  PoolId pool = nextPool_++;
  poolFree_[pool];
  return pool;
}

void CachingAllocator::destroyPool(PoolId pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto lists = poolFree_.find(pool);
  if (lists == poolFree_.end()) return;
  for (auto& [size, blocks] : lists->second)
    for (void* block : blocks) free_[size].push_back(block);
  poolFree_.erase(lists);
  for (auto it = owner_.begin(); it != owner_.end();) it = it->second == pool ? owner_.erase(it) : std::next(it);
}

std::size_t CachingAllocator::poolBlocks(PoolId pool) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t n = 0;
  for (const auto& [block, owner] : owner_) n += owner == pool;
  return n;
}

void CachingAllocator::trim() {
  FreeLists blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(free_);
    std::int64_t freed = 0;
    for (const auto& [size, list] : blocks) freed += std::int64_t(size * list.size());
    stats_.deviceBytes -= freed;
    stats_.cachedBytes -= freed;
  }
  for (auto& [size, list] : blocks)
    for (void* block : list) CASTLING_CUDA_CHECK(cudaFree(block));  // cudaFree waits for the device
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::resetPeak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peakBytes = stats_.liveBytes;
}

}  // namespace castling::cuda
