// Runs one block of a launch: a fiber per thread, resumed in a fixed order (forward or reversed)
// until each suspends at a barrier or a warp collective; then the collectives whose lanes have
// all arrived are completed and, once every thread waits at the same __syncthreads, the barrier
// opens. A state from which no thread can move on (a barrier some threads never reach, a lane of
// a collective's mask that has exited or waits elsewhere) throws BlockFault with the details.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

#include "device_api.h"

namespace castling::emu {

class BlockFault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct BlockRun {
  dim3 grid, block, index;
  std::size_t dynamicSharedBytes = 0;
  std::size_t sharedLimit = 0;  // static + dynamic shared memory allowed per block
  bool reversedThreads = false;
  void (*body)(const void* kernel, void* params) = nullptr;
  const void* kernel = nullptr;
  void* params = nullptr;
};

// Runs the block to completion; throws BlockFault.
void runBlock(const BlockRun& run);

}  // namespace castling::emu
