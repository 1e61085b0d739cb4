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

constexpr int kVecLanes = 16;
typedef float VecF __attribute__((vector_size(64)));
static inline VecF vfma(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a, b, c); }
static inline VecF vbroadcast(float x) { return _mm512_set1_ps(x); }
// Score tile 8 keys x 3 vectors (48 queries), product tile 6 rows x 4 vectors (64 columns, a
// whole d = 64 row): 24 accumulators of the 32 zmm registers either way, leaving room for the
// loaded vectors and the broadcast.
constexpr int kScoreRows = 8, kScoreVecs = 3;
constexpr int kOutRows = 6, kOutVecs = 4;

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
