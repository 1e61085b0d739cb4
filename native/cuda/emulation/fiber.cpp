#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CASTLING_EMU_ASAN 1
#else
#define CASTLING_EMU_ASAN 0
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

// castling_emu_switch(void** saveSp, void* loadSp): saves the callee-saved registers on the
// current stack, stores the stack pointer in *saveSp, then restores the same from loadSp and
// returns there. The floating-point control words are not switched: nothing changes them.
asm(R"(
.pushsection .text
.globl castling_emu_switch
.type castling_emu_switch,@function
castling_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size castling_emu_switch,.-castling_emu_switch
.popsection
)");

extern "C" void castling_emu_switch(void** saveSp, void* loadSp);

namespace castling::emu {

namespace {

// The fiber being started (read once by Fiber::start on its fresh stack).
Fiber* starting = nullptr;

std::size_t pageBytes() { return std::size_t(sysconf(_SC_PAGESIZE)); }

}  // namespace

// Kernels keep small register-like arrays on the stack; AddressSanitizer's red zones make frames
// several times larger.
std::size_t Fiber::stackBytes() { return CASTLING_EMU_ASAN ? 512 * 1024 : 128 * 1024; }

Fiber::~Fiber() {
  if (stack_) munmap(stack_, mapped_);
}

void Fiber::reset(void (*entry)(void*), void* arg) {
  if (!stack_) {
    mapped_ = stackBytes() + pageBytes();
    stack_ = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack_ == MAP_FAILED) {
      std::fprintf(stderr, "cuda emulator: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(stack_, pageBytes(), PROT_NONE);  // an overflowing fiber faults instead of corrupting its neighbour
  }
#if CASTLING_EMU_ASAN
  // A fiber abandoned in the middle of its kernel (a fault) leaves poisoned frames behind.
  if (abandoned_) ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(stack_) + pageBytes(), stackBytes());
#endif
  abandoned_ = false;
  entry_ = entry;
  arg_ = arg;
  fakeStack_ = nullptr;
  // The frame castling_emu_switch pops: r15..r12, rbx, rbp, then the return address (start),
  // with the stack 16-byte aligned as at a call.
  auto top = reinterpret_cast<std::uintptr_t>(stack_) + mapped_;
  auto* slot = reinterpret_cast<std::uint64_t*>(top);
  *--slot = 0;                                            // start never returns
  *--slot = reinterpret_cast<std::uint64_t>(&Fiber::start);
  for (int i = 0; i < 6; ++i) *--slot = 0;                // rbp, rbx, r12..r15
  sp_ = slot;
}

void Fiber::start() {
  Fiber* self = starting;
#if CASTLING_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &self->schedulerStackBottom_, &self->schedulerStackSize_);
#endif
  self->entry_(self->arg_);
  self->abandoned_ = false;
  self->suspend(true);
  std::abort();  // a finished fiber is never resumed
}

void Fiber::resume() {
  starting = this;
  abandoned_ = true;  // until start() sees the entry return
#if CASTLING_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, static_cast<char*>(stack_) + pageBytes(), stackBytes());
  castling_emu_switch(&schedulerSp_, sp_);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  castling_emu_switch(&schedulerSp_, sp_);
#endif
}

void Fiber::suspend(bool finished) {
#if CASTLING_EMU_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &fakeStack_, schedulerStackBottom_, schedulerStackSize_);
  castling_emu_switch(&sp_, schedulerSp_);
  __sanitizer_finish_switch_fiber(fakeStack_, &schedulerStackBottom_, &schedulerStackSize_);
#else
  (void)finished;
  castling_emu_switch(&sp_, schedulerSp_);
#endif
}

}  // namespace castling::emu
