#include "fma_chains.h"

#include "../core/error.h"

namespace castling::cpu {

const FmaChains& fmaChainsFor(Isa isa) {
  // Checked here too: an AVX-512 instruction on a CPU without it is a SIGILL, not an error.
  if (!isaSupported(isa)) fail("CPU path '", isaName(isa), "' is not supported by this CPU");
  switch (isa) {
    case Isa::Avx512: return avx512FmaChains();
    case Isa::Avx2: return avx2FmaChains();
    case Isa::Scalar: break;
  }
  return scalarFmaChains();
}

}  // namespace castling::cpu
