// C++ tests of running out of memory: the global operator new is replaced here by one that can be
// told to fail, so that the paths taken when memory is exhausted run deterministically. The
// addon's own error path (native/addon/memory_reserve.h) is covered from JavaScript by
// test/out_of_memory.test.ts.
#include <atomic>
#include <cstdlib>
#include <new>

#include "../core/block_cache.h"
#include "../core/error.h"
#include "../core/tensor.h"
#include "test_util.h"

using namespace castling;

namespace {

std::atomic<bool> failAllocations{false};

// Fails every allocation while it lives (on every thread: the tests run on one).
struct AllocationsFail {
  AllocationsFail() { failAllocations = true; }
  ~AllocationsFail() { failAllocations = false; }
};

}  // namespace

void* operator new(std::size_t bytes) {
  if (failAllocations) throw std::bad_alloc();
  if (void* p = std::malloc(bytes ? bytes : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

// Freeing a tensor's memory hands the block to the cache, which needs a list entry for a size it
// has not seen: when that allocation fails, release (called from ~Storage, a destructor) must free
// the block instead of throwing, or the process ends in std::terminate.
TEST(freeing_a_tensor_when_allocations_fail_does_not_throw) {
  BlockCache::global().trim();
  {
    Tensor t = Tensor::zeros({12345});  // a size class of its own
    AllocationsFail failing;
    t = Tensor();  // ~Storage -> BlockCache::release with operator new failing
  }
  CHECK(BlockCache::global().cachedBytes() == 0);  // freed, not kept
  Tensor again = Tensor::zeros({12345});
  CHECK(again.numel() == 12345);
}

// A tensor that cannot be allocated is an exception the caller can catch (the addon turns it into
// a JavaScript error), and allocation works again afterwards.
TEST(a_tensor_that_cannot_be_allocated_is_an_exception) {
  bool caught = false;
  try {
    AllocationsFail failing;
    Tensor t = Tensor::zeros({7, 3});
  } catch (const std::bad_alloc&) {
    caught = true;
  } catch (const OutOfMemory&) {
    caught = true;
  }
  CHECK(caught);
  CHECK(Tensor::zeros({7, 3}).numel() == 21);
}

int main() { return castling::test::runAll(); }
