// The AVX-512 Sparsifiner kernels. Compiled with the same flags as attention_isa_avx512.cpp: only
// reached after cpu_features.cpp has confirmed the CPU and OS support AVX-512 F/BW/DQ/VL.
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
#include "simd_avx512.inc"

#include "attention_simd.inc"
#include "sparsifiner_kernels.inc"

}  // namespace

const SparsifinerKernels& avx512SparsifinerKernels() {
  static const SparsifinerKernels table = buildSparsifinerKernels(Isa::Avx512);
  return table;
}

}  // namespace castling::cpu
