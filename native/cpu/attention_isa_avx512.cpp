// The AVX-512 attention kernels. Compiled with the same flags as isa_avx512.cpp: only reached
// after cpu_features.cpp has confirmed the CPU and OS support AVX-512 F/BW/DQ/VL.
#include <immintrin.h>

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
#include "simd_avx512.inc"

#include "attention_simd.inc"
#include "attention_flash.inc"
#include "attention_angular.inc"
#include "attention_table.inc"

}  // namespace

const AttentionKernels& avx512AttentionKernels() {
  static const AttentionKernels table = buildAttentionKernels(Isa::Avx512);
  return table;
}

}  // namespace castling::cpu
