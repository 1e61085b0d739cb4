#include "cpu_kernels.h"

namespace castling::cpu {

const CpuKernels& cpuKernelsFor(Isa isa) {
  requireIsa(isa);  // again, whatever the caller checked: a SIGILL is no error
  switch (isa) {
    case Isa::Avx512: return avx512CpuKernels();
    case Isa::Avx2: return avx2CpuKernels();
    case Isa::Scalar: break;
  }
  return scalarCpuKernels();
}

const CpuKernels& cpuKernels() { return cpuKernelsFor(activeIsa()); }

// The groups' own accessors, for the ops that use one group only.
const DenseKernels& denseKernels() { return cpuKernels().dense; }
const AttentionKernels& attentionKernels() { return cpuKernels().attention; }
const SparsifinerKernels& sparsifinerKernels() { return cpuKernels().sparsifiner; }

}  // namespace castling::cpu
