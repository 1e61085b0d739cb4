// The portable (4-lane GCC vectors, SSE2 multiply then add) FMA chains of the FMA peak: benchmark addon only (cpu/fma_chains.h), compiled with
// this ISA's flags like kernels.cpp, from the same SIMD vocabulary.
#include <cstdint>
#include <cstring>

#include "../../fma_chains.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "simd.inc"
#include "../fma_chains.inc"

}  // namespace

const FmaChains& scalarFmaChains() {
  static const FmaChains chains{runFmaChains, kFmaFlopsPerStep};
  return chains;
}

}  // namespace castling::cpu
