#include "launch.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "../../core/error.h"
#include "block_scheduler.h"
#include "device_memory.h"
#include "options.h"
#include "stream_capture.h"

namespace castling::emu {

namespace {

constexpr std::size_t kDefaultSharedLimit = 48 * 1024;
constexpr std::size_t kOptInSharedLimit = 227 * 1024;  // sm_90's per-block maximum with the attribute

std::mutex& launchMutex() {
  static std::mutex m;
  return m;
}

std::map<const void*, std::size_t>& dynamicSharedLimits() {
  static std::map<const void*, std::size_t> limits;
  return limits;
}

// ---- what a launch can write, for the race check ----

struct Reached {
  Allocation where;
  std::vector<char> before;      // contents when the launch started
  std::vector<char> firstOrder;  // contents after the first run
  std::vector<bool> atomic;      // bytes updated by atomics (their order may legitimately vary)
};

// The allocations a launch can reach: those that a pointer-sized word of its parameters points into
// (parameters are copied by value, so every device pointer a kernel uses appears there).
std::vector<Reached> reachedBy(const LaunchRequest& r) {
  std::vector<Reached> out;
  const char* bytes = static_cast<const char*>(r.params);
  for (std::size_t off = 0; off + sizeof(void*) <= r.paramBytes; off += alignof(void*)) {
    const void* word;
    std::memcpy(&word, bytes + off, sizeof word);
    const Allocation* a = findDevice(word, 1);
    if (!a) continue;
    bool seen = false;
    for (const Reached& x : out) seen = seen || x.where.base == a->base;
    if (!seen) out.push_back(Reached{*a, {}, {}, {}});
  }
  return out;
}

std::vector<Reached>* tracking = nullptr;  // set while the race check runs

// ---- running the grid ----

std::vector<unsigned> blockOrder(unsigned blocks, BlockOrder order, unsigned seed) {
  std::vector<unsigned> ids(blocks);
  std::iota(ids.begin(), ids.end(), 0u);
  if (order == BlockOrder::Reverse) std::reverse(ids.begin(), ids.end());
  if (order == BlockOrder::Shuffle) std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  return ids;
}

std::string dims(dim3 d) {
  std::ostringstream out;
  out << "(" << d.x << "," << d.y << "," << d.z << ")";
  return out.str();
}

void runGrid(const LaunchRequest& r, const std::vector<unsigned>& order, bool reversedThreads, std::size_t sharedLimit) {
  BlockRun run;
  run.grid = r.grid;
  run.block = r.block;
  run.dynamicSharedBytes = r.sharedBytes;
  run.sharedLimit = sharedLimit;
  run.reversedThreads = reversedThreads;
  run.body = r.body;
  run.kernel = r.kernel;
  run.params = r.params;
  for (unsigned id : order) {
    run.index = dim3(id % r.grid.x, (id / r.grid.x) % r.grid.y, id / (r.grid.x * r.grid.y));
    try {
      runBlock(run);
    } catch (const BlockFault& f) {
      fail("cuda emulator: kernel ", kernelName(r.kernel), ", block ", dims(run.index), " of grid ", dims(r.grid), " x block ", dims(r.block), ": ", f.what());
    }
  }
}

cudaError_t configurationError(const LaunchRequest& r, std::size_t dynamicLimit) {
  const unsigned long long threads = 1ull * r.block.x * r.block.y * r.block.z;
  if (threads == 0 || threads > 1024 || r.block.z > 64) return cudaErrorInvalidConfiguration;
  if (r.grid.x == 0 || r.grid.y == 0 || r.grid.z == 0 || r.grid.x > 0x7fffffffu || r.grid.y > 65535 || r.grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  if (r.sharedBytes > dynamicLimit) return cudaErrorInvalidValue;
  return cudaSuccess;
}

void compareOrders(const LaunchRequest& r, const std::vector<Reached>& reached) {
  for (const Reached& x : reached) {
    const char* now = x.where.base;
    for (std::size_t i = 0; i < x.where.bytes; ++i) {
      if (now[i] == x.firstOrder[i] || x.atomic[i]) continue;
      // The aligned 32-bit word around the byte, in both runs (as bits and as float32).
      const std::size_t word = std::min(i & ~std::size_t(3), x.where.bytes >= 4 ? x.where.bytes - 4 : 0);
      std::uint32_t first = 0, second = 0;
      std::memcpy(&first, x.firstOrder.data() + word, std::min<std::size_t>(4, x.where.bytes));
      std::memcpy(&second, now + word, std::min<std::size_t>(4, x.where.bytes));
      float firstValue, secondValue;
      std::memcpy(&firstValue, &first, 4);
      std::memcpy(&secondValue, &second, 4);
      std::ostringstream words;
      words << std::hex << "0x" << first << " then 0x" << second << std::dec << ", as float32 " << firstValue << " then " << secondValue;
      fail("cuda emulator: race in kernel ", kernelName(r.kernel), " (grid ", dims(r.grid), " x block ", dims(r.block),
           "): its output depends on the order the threads run in: byte ", i, " of a ", x.where.bytes,
           "-byte allocation differs between blocks and threads run forward and in reverse (word at byte ", word, ": ", words.str(),
           "); a __syncthreads or __syncwarp is missing, or two threads write the same place");
    }
  }
}

}  // namespace

void setMaxDynamicShared(const void* kernel, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(launchMutex());
  dynamicSharedLimits()[kernel] = bytes;
}

void noteAtomic(const void* address, std::size_t bytes) {
  if (!tracking) return;
  const char* p = static_cast<const char*>(address);
  for (Reached& x : *tracking) {
    if (p >= x.where.base && p + bytes <= x.where.base + x.where.bytes) {
      for (std::size_t i = 0; i < bytes; ++i) x.atomic[std::size_t(p - x.where.base) + i] = true;
      return;
    }
  }
}

void runLaunch(const LaunchRequest& r) {
  std::lock_guard<std::mutex> lock(launchMutex());
  std::size_t dynamicLimit = kDefaultSharedLimit;
  auto limit = dynamicSharedLimits().find(r.kernel);
  if (limit != dynamicSharedLimits().end()) dynamicLimit = std::min(limit->second, kOptInSharedLimit);
  if (cudaError_t e = configurationError(r, dynamicLimit); e != cudaSuccess) {
    setLastError(e);
    return;
  }
  const std::size_t sharedLimit = std::max(dynamicLimit, kDefaultSharedLimit);
  Counters& count = counters();
  ++count.launches;
  const Options& o = options();
  const unsigned blocks = r.grid.x * r.grid.y * r.grid.z;
  std::vector<unsigned> order = blockOrder(blocks, o.blockOrder, o.seed + unsigned(count.launches));
  if (!o.raceCheck) {
    runGrid(r, order, false, sharedLimit);
    return;
  }
  // The race check: run once, keep what was written, put the memory back, run again with the
  // blocks and each block's threads in the opposite order, and compare.
  ++count.raceChecks;
  std::vector<Reached> reached = reachedBy(r);
  for (Reached& x : reached) {
    x.before.assign(x.where.base, x.where.base + x.where.bytes);
    x.atomic.assign(x.where.bytes, false);
  }
  struct Untrack {
    ~Untrack() { tracking = nullptr; }
  } untrack;
  tracking = &reached;
  runGrid(r, order, false, sharedLimit);
  for (Reached& x : reached) {
    x.firstOrder.assign(x.where.base, x.where.base + x.where.bytes);
    std::memcpy(x.where.base, x.before.data(), x.where.bytes);
  }
  std::reverse(order.begin(), order.end());
  runGrid(r, order, true, sharedLimit);
  compareOrders(r, reached);
}

void submitLaunch(const LaunchRequest& request, std::shared_ptr<void> params) {
  submit(request.stream, [request, params = std::move(params)] { runLaunch(request); });
}

}  // namespace castling::emu
