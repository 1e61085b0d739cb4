#include "block_scheduler.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "device_memory.h"
#include "fiber.h"
#include "options.h"

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim{1, 1, 1};
dim3 gridDim{1, 1, 1};

namespace castling::emu {

namespace {

enum class State { Runnable, AtBarrier, AtWarp, Done, Faulted };

struct Thread {
  Fiber fiber;
  uint3 index{};
  unsigned linear = 0;
  State state = State::Done;
  std::source_location where;  // the barrier or collective it waits at
  // the pending warp collective
  WarpOp op = WarpOp::SyncWarp;
  unsigned mask = 0;
  std::uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
  std::string fault;
};

// The block being run: its threads, its shared memory, the thread on the CPU now.
struct Block {
  const BlockRun* run = nullptr;
  unsigned size = 0;
  std::vector<std::unique_ptr<Thread>> threads;  // kept between blocks: the fibers' stacks are reused
  Thread* current = nullptr;
  std::map<const void*, std::unique_ptr<char, decltype(&std::free)>> staticShared;
  std::unique_ptr<char, decltype(&std::free)> dynamicShared{nullptr, &std::free};
  std::size_t sharedBytes = 0;
};

Block& block() {
  static Block b;
  return b;
}

const char* opName(WarpOp op) {
  switch (op) {
    case WarpOp::Shfl: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::SyncWarp: return "__syncwarp";
  }
  return "?";
}

std::string site(const std::source_location& where) {
  const char* file = where.file_name();
  const char* slash = std::strrchr(file, '/');
  std::ostringstream out;
  out << (slash ? slash + 1 : file) << ":" << where.line();
  return out.str();
}

bool sameSite(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

std::string hex(unsigned mask) {
  std::ostringstream out;
  out << "0x" << std::hex << mask;
  return out.str();
}

std::string threadName(const Thread& t) {
  std::ostringstream out;
  out << "thread (" << t.index.x << "," << t.index.y << "," << t.index.z << ")";
  return out.str();
}

// Inside a fiber: stop this thread with a fault the scheduler reports. Thrown, so that the
// kernel's frames unwind on the fiber's own stack before it stops for good.
struct ThreadFault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void faultHere(const std::string& message) { throw ThreadFault(message); }

void threadMain(void* arg) {
  auto* t = static_cast<Thread*>(arg);
  const BlockRun& run = *block().run;
  try {
    run.body(run.kernel, run.params);
    t->state = State::Done;
  } catch (const std::exception& e) {
    t->fault = e.what();
    t->state = State::Faulted;
  }
}

void* sharedAllocation(std::size_t bytes) {
  // Exactly `bytes` from the heap (a zero-byte request still gets its own block), so that an
  // access past the end is an overflow AddressSanitizer sees; filled like device memory.
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) throw BlockFault("out of host memory for shared memory");
  fillUnwritten(p, bytes);
  return p;
}

void checkSharedBudget(std::size_t more) {
  Block& b = block();
  b.sharedBytes += more;
  if (b.sharedBytes > b.run->sharedLimit) {
    std::ostringstream out;
    out << "the block uses " << b.sharedBytes << " bytes of shared memory (static and dynamic), more than the "
        << b.run->sharedLimit << " this launch allows";
    faultHere(out.str());
  }
}

// Whether lane `j` of t's warp waits in the same collective as t, with the same mask.
bool laneJoins(const Thread& t, unsigned j) {
  Block& b = block();
  const unsigned index = (t.linear & ~31u) + j;
  if (index >= b.size) return false;
  const Thread& o = *b.threads[index];
  return o.state == State::AtWarp && o.op == t.op && o.mask == t.mask;
}

// Why lane `j` cannot join the collective `t` waits in, or "" when it can.
std::string missingLane(const Thread& t, unsigned j) {
  if (laneJoins(t, j)) return "";
  Block& b = block();
  const unsigned warpBase = t.linear & ~31u;
  std::ostringstream out;
  if (warpBase + j >= b.size) {
    out << "lane " << j << " named in the mask does not exist (the block has " << b.size << " threads)";
    return out.str();
  }
  const Thread& o = *b.threads[warpBase + j];
  switch (o.state) {
    case State::Done: out << "lane " << j << " named in the mask has exited"; break;
    case State::AtBarrier: out << "lane " << j << " named in the mask waits at __syncthreads (" << site(o.where) << ")"; break;
    case State::AtWarp:
      if (o.op == t.op && o.mask == t.mask) return "";
      out << "lane " << j << " named in the mask waits in " << opName(o.op) << " with mask " << hex(o.mask) << " (" << site(o.where) << ")";
      break;
    default: out << "lane " << j << " named in the mask is stopped"; break;
  }
  return out.str();
}

// The source lane of lane `lane` for a shuffle (itself when the source is outside its segment).
unsigned shuffleSource(const Thread& t, unsigned lane) {
  const unsigned width = unsigned(t.width), segment = lane & ~(width - 1);
  long src = lane;
  switch (t.op) {
    case WarpOp::Shfl: src = long(segment) + long(((t.arg % int(width)) + int(width)) % int(width)); break;
    case WarpOp::ShflUp: src = long(lane) - t.arg; break;
    case WarpOp::ShflDown: src = long(lane) + t.arg; break;
    case WarpOp::ShflXor: src = long(lane ^ unsigned(t.arg)); break;
    default: break;
  }
  if (src < long(segment) || src >= long(segment + width)) return lane;
  return unsigned(src);
}

// Completes every collective whose lanes have all arrived; returns whether any did.
bool completeCollectives() {
  Block& b = block();
  bool progressed = false;
  for (unsigned base = 0; base < b.size; base += 32) {
    for (unsigned lane = 0; lane < 32 && base + lane < b.size; ++lane) {
      Thread& t = *b.threads[base + lane];
      if (t.state != State::AtWarp) continue;
      bool complete = true;
      for (unsigned j = 0; j < 32 && complete; ++j)
        if ((t.mask >> j) & 1u) complete = laneJoins(t, j);
      if (!complete) continue;
      // Every lane of the mask waits in the same collective: compute each one's result.
      std::uint64_t ballot = 0;
      for (unsigned j = 0; j < 32; ++j)
        if ((t.mask >> j) & 1u) ballot |= (b.threads[base + j]->value != 0 ? 1ull : 0ull) << j;
      for (unsigned j = 0; j < 32; ++j) {
        if (!((t.mask >> j) & 1u)) continue;
        Thread& member = *b.threads[base + j];
        switch (t.op) {
          case WarpOp::Ballot: member.result = ballot; break;
          case WarpOp::All: member.result = ballot == t.mask; break;
          case WarpOp::Any: member.result = ballot != 0; break;
          case WarpOp::SyncWarp: member.result = 0; break;
          default: {
            const unsigned src = shuffleSource(member, j);
            if (!((t.mask >> src) & 1u)) {
              std::ostringstream out;
              out << "warp " << base / 32 << ": lane " << j << " reads lane " << src << " in " << opName(t.op) << " ("
                  << site(member.where) << "), but the mask " << hex(t.mask) << " does not include lane " << src;
              throw BlockFault(out.str());
            }
            member.result = b.threads[base + src]->value;
          }
        }
      }
      for (unsigned j = 0; j < 32; ++j)
        if ((t.mask >> j) & 1u) b.threads[base + j]->state = State::Runnable;
      progressed = true;
    }
  }
  return progressed;
}

// No thread can run and no collective can complete: open the barrier, or explain the deadlock.
void openBarrierOrFail() {
  Block& b = block();
  const Thread* atBarrier = nullptr;
  const Thread* exited = nullptr;
  for (unsigned i = 0; i < b.size; ++i) {
    const Thread& t = *b.threads[i];
    if (t.state == State::AtWarp) {
      for (unsigned j = 0; j < 32; ++j) {
        if (!((t.mask >> j) & 1u) || laneJoins(t, j)) continue;
        std::string why = missingLane(t, j);
        {
          std::ostringstream out;
          out << "warp " << i / 32 << ": lane " << i % 32 << " waits in " << opName(t.op) << " with mask " << hex(t.mask) << " ("
              << site(t.where) << "), but " << why;
          throw BlockFault(out.str());
        }
      }
    }
    if (t.state == State::AtBarrier) {
      if (atBarrier && !sameSite(atBarrier->where, t.where)) {
        throw BlockFault("divergent __syncthreads: " + threadName(*atBarrier) + " waits at " + site(atBarrier->where) + ", " +
                         threadName(t) + " at " + site(t.where));
      }
      if (!atBarrier) atBarrier = &t;
    }
    if (t.state == State::Done && !exited) exited = &t;
  }
  if (atBarrier && exited) {
    throw BlockFault("divergent __syncthreads: " + threadName(*atBarrier) + " waits at " + site(atBarrier->where) + ", but " +
                     threadName(*exited) + " has exited without reaching it");
  }
  for (unsigned i = 0; i < b.size; ++i)
    if (b.threads[i]->state == State::AtBarrier) b.threads[i]->state = State::Runnable;
}

}  // namespace

void runBlock(const BlockRun& run) {
  Block& b = block();
  b.run = &run;
  b.size = run.block.x * run.block.y * run.block.z;
  b.staticShared.clear();
  b.dynamicShared.reset(static_cast<char*>(sharedAllocation(run.dynamicSharedBytes)));
  b.sharedBytes = run.dynamicSharedBytes;
  while (b.threads.size() < b.size) b.threads.push_back(std::make_unique<Thread>());
  blockIdx = run.index;
  blockDim = run.block;
  gridDim = run.grid;
  for (unsigned i = 0; i < b.size; ++i) {
    Thread& t = *b.threads[i];
    t.linear = i;
    t.index = uint3{i % run.block.x, (i / run.block.x) % run.block.y, i / (run.block.x * run.block.y)};
    t.state = State::Runnable;
    t.fault.clear();
    t.fiber.reset(&threadMain, &t);
  }
  Counters& count = counters();
  ++count.blocks;
  for (;;) {
    for (unsigned k = 0; k < b.size; ++k) {
      Thread& t = *b.threads[run.reversedThreads ? b.size - 1 - k : k];
      if (t.state != State::Runnable) continue;
      b.current = &t;
      threadIdx = t.index;
      ++count.switches;
      t.fiber.resume();
      b.current = nullptr;
      if (t.state == State::Faulted) throw BlockFault(threadName(t) + ": " + t.fault);
    }
    if (completeCollectives()) continue;
    bool allDone = true;
    for (unsigned i = 0; i < b.size && allDone; ++i) allDone = b.threads[i]->state == State::Done;
    if (allDone) break;
    openBarrierOrFail();
  }
  b.staticShared.clear();
  b.dynamicShared.reset();
}

// ---- called from inside the fibers ----

void syncThreads(const std::source_location& where) {
  Thread* t = block().current;
  t->where = where;
  t->state = State::AtBarrier;
  t->fiber.suspend();
}

std::uint64_t warpCollective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, const std::source_location& where) {
  Thread* t = block().current;
  const unsigned lane = t->linear % 32;
  if (!((mask >> lane) & 1u)) {
    faultHere(std::string(opName(op)) + " (" + site(where) + ") with mask " + hex(mask) + " that does not include the calling lane " +
              std::to_string(lane));
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    faultHere(std::string(opName(op)) + " (" + site(where) + ") with width " + std::to_string(width) + ", expected a power of two up to 32");
  }
  t->op = op;
  t->mask = mask;
  t->value = value;
  t->arg = arg;
  t->width = width;
  t->where = where;
  t->state = State::AtWarp;
  t->fiber.suspend();
  return t->result;
}

void* staticShared(const void* key, std::size_t bytes) {
  Block& b = block();
  auto it = b.staticShared.find(key);
  if (it != b.staticShared.end()) return it->second.get();
  checkSharedBudget(bytes);
  void* p = sharedAllocation(bytes);
  b.staticShared.emplace(key, std::unique_ptr<char, decltype(&std::free)>(static_cast<char*>(p), &std::free));
  return p;
}

void* dynamicShared() { return block().dynamicShared.get(); }

}  // namespace castling::emu
