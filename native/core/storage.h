// 64-byte-aligned float storage shared by tensors. Alignment lets the SIMD kernels use aligned
// loads on row starts and keeps a row from straddling two cache lines needlessly.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace castling {

constexpr std::size_t kAlignment = 64;
// The most elements a shape may describe (2^36). Anything larger is a mistake (a negative size
// cast to unsigned, a shape typo), and checking it first keeps the byte count from overflowing.
constexpr std::int64_t kMaxElements = std::int64_t(1) << 36;
// The largest single allocation: three quarters of the machine's physical memory. Past that the
// kernel would kill the process when the pages are touched, instead of the caller getting an error.
std::int64_t maxAllocationBytes();

class Storage {
 public:
  // Allocates `count` floats; zero-filled when `zero` is set. Throws castling::Error when the
  // size is absurd or the allocation fails.
  explicit Storage(std::int64_t count, bool zero = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  std::int64_t size() const { return count_; }
  std::size_t bytes() const { return std::size_t(count_) * sizeof(float); }

  // Bytes currently held by all live storages: lets tests check that memory stays bounded.
  static std::int64_t liveBytes();
  // The most bytes live at once since the last resetPeak(): benchmarks report a kernel's peak
  // extra memory from it (scratch and packing buffers are Storages too).
  static std::int64_t peakBytes();
  static void resetPeak();

 private:
  float* data_ = nullptr;
  std::int64_t count_ = 0;
};

// Owning buffer for kernel scratch space (packing buffers etc.), same alignment rules.
struct AlignedBuffer {
  std::shared_ptr<Storage> storage;
  float* ensure(std::int64_t count);
};

}  // namespace castling
