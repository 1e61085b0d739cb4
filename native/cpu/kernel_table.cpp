#include "kernel_table.h"

#include "../core/error.h"

namespace castling::cpu {

const KernelTable& kernelsFor(Isa isa) {
  // The caller is responsible for having checked isaSupported(); we check again because running
  // an AVX-512 instruction on a CPU without it kills the process with SIGILL.
  if (!isaSupported(isa)) fail("CPU path '", isaName(isa), "' is not supported by this CPU");
  switch (isa) {
    case Isa::Avx512: return avx512Kernels();
    case Isa::Avx2: return avx2Kernels();
    case Isa::Scalar: break;
  }
  return scalarKernels();
}

const KernelTable& kernels() { return kernelsFor(activeIsa()); }

}  // namespace castling::cpu
