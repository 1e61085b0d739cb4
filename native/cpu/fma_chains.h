// The FMA peak's per-ISA inner loops, for the benchmark addon only (native/bench/fma_peak.cpp):
// each ISA's is compiled with that ISA's flags in isa/<name>/fma_chains.cpp, from the same
// isa/fma_chains.inc written in the ISA's SIMD vocabulary (simd.inc). Not in the shipped addon.
#pragma once
#include <cstdint>

#include "../core/cpu_features.h"

namespace castling::cpu {

struct FmaChains {
  // Runs `steps` steps of the independent FMA chains; returns a value depending on all of them.
  float (*run)(std::int64_t steps, float seed);
  // Floating-point operations per step (2 per lane per chain).
  double flopsPerStep;
};

// The chains of `isa`; throws castling::Error when this CPU cannot run it.
const FmaChains& fmaChainsFor(Isa isa);

const FmaChains& scalarFmaChains();
const FmaChains& avx2FmaChains();
const FmaChains& avx512FmaChains();

}  // namespace castling::cpu
