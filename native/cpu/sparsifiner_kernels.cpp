#include "sparsifiner_kernels.h"

#include "../core/error.h"

namespace castling::cpu {

const SparsifinerKernels& sparsifinerKernelsFor(Isa isa) {
  // Checked again here: an AVX-512 instruction on a CPU without it is a SIGILL, not an error.
  if (!isaSupported(isa)) fail("CPU path '", isaName(isa), "' is not supported by this CPU");
  switch (isa) {
    case Isa::Avx512: return avx512SparsifinerKernels();
    case Isa::Avx2: return avx2SparsifinerKernels();
    case Isa::Scalar: break;
  }
  return scalarSparsifinerKernels();
}

const SparsifinerKernels& sparsifinerKernels() { return sparsifinerKernelsFor(activeIsa()); }

}  // namespace castling::cpu
