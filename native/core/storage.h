// 64-byte-aligned float storage shared by tensors. Alignment lets the SIMD kernels use aligned
// loads on row starts and keeps a row from straddling two cache lines needlessly.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "device.h"

namespace castling {

class DeviceBackend;

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
  // `bytes` bytes on `device`: host memory as above, or device memory from the device's backend
  // (device_backend.h; an Error saying why when the device is not available).
  static std::shared_ptr<Storage> allocate(std::size_t bytes, Device device, bool zero = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  void* raw() { return data_; }
  const void* raw() const { return data_; }
  std::int64_t size() const { return count_; }  // in floats
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  // Bytes currently held by all live host storages: lets tests check that memory stays bounded.
  static std::int64_t liveBytes();
  // The most bytes live at once since the last resetPeak(): benchmarks report a kernel's peak
  // extra memory from it (scratch and packing buffers are Storages too).
  static std::int64_t peakBytes();
  static void resetPeak();

 private:
  Storage() = default;
  float* data_ = nullptr;
  std::int64_t count_ = 0;
  std::size_t bytes_ = 0;
  Device device_ = Device::Cpu;
  DeviceBackend* backend_ = nullptr;  // the owner of device memory (null for host memory)
};

// Owning buffer for kernel scratch space (packing buffers etc.), same alignment rules.
struct AlignedBuffer {
  std::shared_ptr<Storage> storage;
  float* ensure(std::int64_t count);
};

}  // namespace castling
