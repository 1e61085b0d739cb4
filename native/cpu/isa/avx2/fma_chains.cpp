// The AVX2+FMA (ymm) FMA chains of the FMA peak: benchmark addon only (cpu/fma_chains.h), compiled with
// this ISA's flags like kernels.cpp, from the same SIMD vocabulary.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../../fma_chains.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "simd.inc"
#include "../fma_chains.inc"

}  // namespace

const FmaChains& avx2FmaChains() {
  static const FmaChains chains{runFmaChains, kFmaFlopsPerStep};
  return chains;
}

}  // namespace castling::cpu
