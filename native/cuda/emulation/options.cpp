#include "options.h"

#include <cstdlib>
#include <cstring>

namespace castling::emu {

Options& options() {
  static Options o = [] {
    Options x;
    if (const char* order = std::getenv("CASTLING_EMU_BLOCK_ORDER")) {
      if (std::strcmp(order, "reverse") == 0) x.blockOrder = BlockOrder::Reverse;
      if (std::strcmp(order, "shuffle") == 0) x.blockOrder = BlockOrder::Shuffle;
    }
    if (const char* seed = std::getenv("CASTLING_EMU_SEED")) x.seed = unsigned(std::strtoul(seed, nullptr, 10));
    if (const char* race = std::getenv("CASTLING_EMU_RACE_CHECK")) x.raceCheck = std::strcmp(race, "0") != 0;
    return x;
  }();
  return o;
}

Counters& counters() {
  static Counters c;
  return c;
}

}  // namespace castling::emu
