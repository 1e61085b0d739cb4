#include "device_memory.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>

namespace castling::emu {

namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::uintptr_t, Allocation> live;  // by base address
};

Registry& registry() {
  static Registry* r = new Registry();  // outlives static destructors that still free device memory
  return *r;
}

}  // namespace

void fillUnwritten(void* p, std::size_t bytes) {
  auto* c = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < bytes; ++i) c[i] = (i & 1) ? kUnwrittenByteHigh : kUnwrittenByteLow;
}

void* allocateDevice(std::size_t bytes) {
  void* p = nullptr;
  // 256-byte aligned as cudaMalloc; the block is exactly `bytes` long (one byte for an empty one).
  if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0) return nullptr;
  fillUnwritten(p, bytes);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.live[reinterpret_cast<std::uintptr_t>(p)] = Allocation{static_cast<char*>(p), bytes};
  return p;
}

bool freeDevice(void* p) {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.live.find(reinterpret_cast<std::uintptr_t>(p));
    if (it == r.live.end()) return false;
    r.live.erase(it);
  }
  std::free(p);
  return true;
}

const Allocation* findDevice(const void* p, std::size_t bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  auto it = r.live.upper_bound(address);
  if (it == r.live.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  if (address + bytes > it->first + std::max<std::size_t>(a.bytes, 1)) return nullptr;
  return &a;
}

bool isDevicePointer(const void* p) { return findDevice(p, 1) != nullptr; }

std::vector<Allocation> liveAllocations() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<Allocation> out;
  out.reserve(r.live.size());
  for (auto& [base, a] : r.live) out.push_back(a);
  return out;
}

}  // namespace castling::emu
