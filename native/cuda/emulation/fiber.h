// Cooperative fibers for the emulated GPU threads: each thread of a block runs on its own small
// stack and hands control back to the block scheduler at every barrier and warp collective. The
// switch is a handful of instructions (callee-saved registers and the stack pointer), so the
// thousands of switches of a reduction-heavy kernel stay cheap. Under AddressSanitizer every
// switch is announced, so that it follows the stacks.
#pragma once
#include <cstddef>

namespace castling::emu {

class Fiber {
 public:
  Fiber() = default;
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  ~Fiber();

  // Prepares the fiber to run entry(arg) from the start of its stack the next time it is resumed.
  void reset(void (*entry)(void*), void* arg);
  // From the scheduler: runs the fiber until it suspends or finishes.
  void resume();
  // From inside the fiber: back to the scheduler. `finished` when it will never be resumed again.
  void suspend(bool finished = false);

  static std::size_t stackBytes();

 private:
  static void start();

  void* stack_ = nullptr;      // the mapping, guard page first
  std::size_t mapped_ = 0;
  void* sp_ = nullptr;         // the fiber's saved stack pointer while it is suspended
  void* schedulerSp_ = nullptr;  // the scheduler's while the fiber runs
  void (*entry_)(void*) = nullptr;
  void* arg_ = nullptr;
  bool abandoned_ = false;  // resumed at least once and not run to its end
  // AddressSanitizer's bookkeeping of the two stacks.
  void* fakeStack_ = nullptr;
  const void* schedulerStackBottom_ = nullptr;
  std::size_t schedulerStackSize_ = 0;
};

}  // namespace castling::emu
