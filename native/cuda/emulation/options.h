// How the emulator runs kernels. Read once from the environment, changeable by tests:
//   CASTLING_EMU_BLOCK_ORDER  forward (default) | reverse | shuffle: the order blocks run in
//   CASTLING_EMU_SEED         the shuffle's seed (default 1)
//   CASTLING_EMU_RACE_CHECK   1 (default) | 0: run every launch twice, the second time with the
//                             blocks and each block's threads in the opposite order, and fail
//                             when the memory it wrote differs (see launch.cpp)
#pragma once
#include <cstdint>

namespace castling::emu {

enum class BlockOrder { Forward, Reverse, Shuffle };

struct Options {
  BlockOrder blockOrder = BlockOrder::Forward;
  unsigned seed = 1;
  bool raceCheck = true;
};

Options& options();

// Counters since the process started, for tests and the run's summary.
struct Counters {
  std::int64_t launches = 0;
  std::int64_t blocks = 0;      // blocks run (twice per launch under the race check)
  std::int64_t switches = 0;    // fiber resumptions
  std::int64_t raceChecks = 0;  // launches compared between two orders
};

Counters& counters();

}  // namespace castling::emu
