// The AVX2+FMA Sparsifiner kernels. Compiled with the same flags as attention_isa_avx2.cpp: only
// reached after cpu_features.cpp has confirmed the CPU and OS support them.
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "sparsifiner_kernels.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "vector_math.inc"
#include "row_reduce.inc"
#include "simd_avx2.inc"

#include "attention_simd.inc"
#include "sparsifiner_kernels.inc"

}  // namespace

const SparsifinerKernels& avx2SparsifinerKernels() {
  static const SparsifinerKernels table = buildSparsifinerKernels(Isa::Avx2);
  return table;
}

}  // namespace castling::cpu
