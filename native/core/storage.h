// 64-byte-aligned float storage shared by tensors. Alignment lets the SIMD kernels use aligned
// loads on row starts and keeps a row from straddling two cache lines needlessly.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

  // The mutable accessors note a possible write (see derived()); read through the const ones.
  float* data() {
    noteWrite();
    return data_;
  }
  const float* data() const { return data_; }
  void* raw() {
    noteWrite();
    return data_;
  }
  const void* raw() const { return data_; }
  std::int64_t size() const { return count_; }  // in floats
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  // ---- forms of the contents derived by kernels (a GEMM's packed weights) ----
  // A kernel that rearranges the same read-only operand on every call (a linear layer's weight,
  // packed for the GEMM) keeps the rearranged form here, under a key naming the form and the
  // region of the storage it covers, and gets it back until the contents may have changed: any
  // mutable access (data(), raw()), noteWrite() or a live external view drops every derived form.
  // `build` makes the form from the current contents; while external views are alive its result
  // is used once and not kept. Thread-safe; the returned form stays valid while it is held.
  std::shared_ptr<const Storage> derived(const std::string& key,
                                         const std::function<std::shared_ptr<Storage>()>& build) const;
  // Says that the contents were (or are about to be) written through a pointer obtained
  // earlier or through a const accessor (an in-place optimizer, a copy from JavaScript).
  void noteWrite() {
    if (!written_.load(std::memory_order_relaxed)) written_.store(true, std::memory_order_relaxed);
  }
  // JavaScript arrays over this memory (Tensor.view()) can write to it unseen: no derived form is
  // kept while one is alive. Removing one also counts as a write.
  void addExternalView() { external_views_.fetch_add(1); }
  void removeExternalView() {
    noteWrite();
    external_views_.fetch_sub(1);
  }

  // Async ops and plans in flight holding this memory: a write from JavaScript now would race
  // with them, so Tensor.set refuses while any is (the addon's AsyncUses counts them).
  void addAsyncUse() { async_uses_.fetch_add(1); }
  void removeAsyncUse() { async_uses_.fetch_sub(1); }
  int asyncUses() const { return async_uses_.load(); }

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

  struct DerivedForm {
    std::string key;
    std::shared_ptr<const Storage> form;
  };
  // Set by every possible write, cleared (and the forms dropped) by derived().
  mutable std::atomic<bool> written_{false};
  std::atomic<int> external_views_{0};
  std::atomic<int> async_uses_{0};
  mutable std::mutex derived_mutex_;
  mutable std::vector<DerivedForm> derived_;
};

// Owning buffer for kernel scratch space (packing buffers etc.), same alignment rules.
struct AlignedBuffer {
  std::shared_ptr<Storage> storage;
  float* ensure(std::int64_t count);
};

}  // namespace castling
