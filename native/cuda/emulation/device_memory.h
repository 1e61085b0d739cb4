// The emulated device's memory: every cudaMalloc is its own host heap block of exactly the size
// asked for (so that AddressSanitizer sees an access past its end), filled with a NaN pattern so
// that reading what no one wrote poisons the results instead of reading as zeros. The registry of
// live blocks lets copies check their ranges and lets the race check find what a launch can reach.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace castling::emu {

// 0x7ff4 in every 16 bits: a NaN read as half, bfloat16, float (quiet) and double (signalling).
constexpr unsigned char kUnwrittenByteLow = 0xf4, kUnwrittenByteHigh = 0x7f;
void fillUnwritten(void* p, std::size_t bytes);

struct Allocation {
  char* base = nullptr;
  std::size_t bytes = 0;
};

void* allocateDevice(std::size_t bytes);
bool freeDevice(void* p);  // false when p is not the start of a live allocation
// The live allocation holding [p, p + bytes), or null.
const Allocation* findDevice(const void* p, std::size_t bytes = 1);
bool isDevicePointer(const void* p);
std::vector<Allocation> liveAllocations();

}  // namespace castling::emu
