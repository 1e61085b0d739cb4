#include "attention_kernels.h"

#include "../core/error.h"

namespace castling::cpu {

const AttentionKernels& attentionKernelsFor(Isa isa) {
  // Checked again here: an AVX-512 instruction on a CPU without it is a SIGILL, not an error.
  if (!isaSupported(isa)) fail("CPU path '", isaName(isa), "' is not supported by this CPU");
  switch (isa) {
    case Isa::Avx512: return avx512AttentionKernels();
    case Isa::Avx2: return avx2AttentionKernels();
    case Isa::Scalar: break;
  }
  return scalarAttentionKernels();
}

const AttentionKernels& attentionKernels() { return attentionKernelsFor(activeIsa()); }

}  // namespace castling::cpu
