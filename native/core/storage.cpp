#include "storage.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "block_cache.h"
#include "device_backend.h"
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

Storage::Storage(std::int64_t count, bool zero) : count_(count), bytes_(std::size_t(count) * sizeof(float)) {
  if (count < 0 || count > kMaxElements) {
    fail("cannot allocate ", count, " floats: expected a size between 0 and ", kMaxElements);
  }
  std::size_t bytes = std::size_t(count) * sizeof(float);
  if (std::int64_t(bytes) > maxAllocationBytes()) {
    fail("cannot allocate ", bytes, " bytes (", count, " floats): more than the ",
         maxAllocationBytes(), " bytes (3/4 of physical memory) a single tensor may use");
  }
  data_ = static_cast<float*>(BlockCache::global().allocate(bytes));
  if (data_ == nullptr) failOutOfMemory("out of memory allocating ", bytes, " bytes");
  if (zero) std::memset(data_, 0, bytes);
  notePeak(g_live_bytes += std::int64_t(bytes));
}

std::shared_ptr<Storage> Storage::allocate(std::size_t bytes, Device device, bool zero) {
  if (device == Device::Cpu) return std::make_shared<Storage>(std::int64_t((bytes + sizeof(float) - 1) / sizeof(float)), zero);
  if (bytes > std::size_t(kMaxElements) * sizeof(float)) fail("cannot allocate ", bytes, " bytes on ", deviceName(device), ": too large");
  DeviceBackend& backend = requireDevice(device, "allocating a tensor");
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = static_cast<float*>(backend.allocate(bytes));
  s->bytes_ = bytes;
  s->count_ = std::int64_t(bytes / sizeof(float));
  s->device_ = device;
  s->backend_ = &backend;
  if (zero && bytes) backend.zero(s->data_, bytes);
  return s;
}

Storage::~Storage() {
  if (backend_) {
    backend_->release(data_, bytes_);
    return;
  }
  BlockCache::global().release(data_, bytes_);
  g_live_bytes -= std::int64_t(bytes_);
}

std::shared_ptr<const Storage> Storage::derived(const std::string& key,
                                                const std::function<std::shared_ptr<Storage>()>& build) const {
  std::lock_guard<std::mutex> lock(derived_mutex_);
  // Clear the flag before building: a write from now on (even one racing the build) drops the
  // form built here at the next call.
  if (written_.exchange(false)) derived_.clear();
  if (external_views_.load() > 0) {
    derived_.clear();
    return build();
  }
  for (const DerivedForm& d : derived_)
    if (d.key == key) return d.form;
  std::shared_ptr<const Storage> form = build();
  derived_.push_back({key, form});
  return form;
}

std::int64_t Storage::liveBytes() { return g_live_bytes.load(); }
std::int64_t Storage::peakBytes() { return g_peak_bytes.load(); }
void Storage::resetPeak() { g_peak_bytes.store(g_live_bytes.load()); }

float* AlignedBuffer::ensure(std::int64_t count) {
  if (!storage || storage->size() < count) storage = std::make_shared<Storage>(count);
  return storage->data();
}

}  // namespace castling
