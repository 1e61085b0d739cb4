#include "fma_chains.h"

namespace castling::cpu {

const FmaChains& fmaChainsFor(Isa isa) {
  requireIsa(isa);  // again, whatever the caller checked: a SIGILL is no error
  switch (isa) {
    case Isa::Avx512: return avx512FmaChains();
    case Isa::Avx2: return avx2FmaChains();
    case Isa::Scalar: break;
  }
  return scalarFmaChains();
}

}  // namespace castling::cpu
