// The portable attention kernels: GCC vectors of 4 floats, which the compiler lowers to whatever
// the baseline target has (SSE2 on x86-64, plain scalar code elsewhere). Correct everywhere;
// speed is a bonus.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "attention_kernels.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "vector_math.inc"
#include "row_reduce.inc"
#include "simd_scalar.inc"

#include "attention_simd.inc"
#include "attention_flash.inc"
#include "attention_angular.inc"
#include "attention_table.inc"

}  // namespace

const AttentionKernels& scalarAttentionKernels() {
  static const AttentionKernels table = buildAttentionKernels(Isa::Scalar);
  return table;
}

}  // namespace castling::cpu
