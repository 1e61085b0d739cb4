#include "cpu_kernels.h"

#include "../core/error.h"

namespace castling::cpu {

const CpuKernels& cpuKernelsFor(Isa isa) {
  // The caller is responsible for having checked isaSupported(); we check again because running
  // an AVX-512 instruction on a CPU without it kills the process with SIGILL.
  if (!isaSupported(isa)) fail("CPU path '", isaName(isa), "' is not supported by this CPU");
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
