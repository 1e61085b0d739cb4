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

void* CachingAllocator::allocate(std::size_t bytes) {
  std::size_t size = sizeClass(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
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
  free_[size].push_back(block);
  stats_.cachedBytes += std::int64_t(size);
  stats_.liveBytes -= std::int64_t(size);
}

void CachingAllocator::trim() {
  std::map<std::size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(free_);
    stats_.deviceBytes -= stats_.cachedBytes;
    stats_.cachedBytes = 0;
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
