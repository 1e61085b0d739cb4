// The GEMM micro-kernel's own rate (benchmark addon only): the table's kernel on panels that stay
// in L1 and L2, so that memory, packing and threads play no part: what is left is the kernel's
// instruction stream, whose share of the FMA peak should be close to 1 (a register spill or a
// dependency the compiler added shows here first).
#pragma once
#include <napi.h>

#include "../core/cpu_features.h"

namespace castling::bench {

struct MicroKernelRate {
  int mr = 0, nr = 0, kc = 0;
  bool prefetchesB = false;  // the variant this CPU runs: with software prefetches of B or not
  bool prefetchesNextBlock = false;  // whether its GEMMs ask for a prepacked B's next block ahead
  double packedGflops = 0;  // gemmMicro: A packed (the MR x kc panel)
  double directGflops = 0;  // gemmMicroDirectA: A's MR rows read in place, as the linear layers do
};

// One thread (the calling one), the best of `tries` runs of about `ms` milliseconds of its CPU time.
MicroKernelRate measureMicroKernel(Isa isa, double ms, int tries = 5);

// timeMicroKernel({isa?, ms?}) -> Promise<{mr, nr, kc, prefetchesB, prefetchesNextBlock, packedGflops, directGflops}>
Napi::Value timeMicroKernel(const Napi::CallbackInfo& info);

}  // namespace castling::bench
