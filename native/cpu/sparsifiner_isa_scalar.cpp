// The portable Sparsifiner kernels: GCC vectors of 4 floats, lowered to whatever the baseline
// target has (SSE2 on x86-64, plain scalar code elsewhere).
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
#include "simd_scalar.inc"

#include "attention_simd.inc"
#include "sparsifiner_kernels.inc"

}  // namespace

const SparsifinerKernels& scalarSparsifinerKernels() {
  static const SparsifinerKernels table = buildSparsifinerKernels(Isa::Scalar);
  return table;
}

}  // namespace castling::cpu
