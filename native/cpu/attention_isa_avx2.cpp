// The AVX2+FMA attention kernels. Compiled with the same flags as isa_avx2.cpp: only reached
// after cpu_features.cpp has confirmed the CPU and OS support them.
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

constexpr int kVecLanes = 8;
typedef float VecF __attribute__((vector_size(32)));
static inline VecF vfma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a, b, c); }
static inline VecF vbroadcast(float x) { return _mm256_set1_ps(x); }
// 6 x 2 tiles: 12 ymm accumulators, two loaded vectors and a broadcast (15 of 16 registers).
constexpr int kScoreRows = 6, kScoreVecs = 2;
constexpr int kOutRows = 6, kOutVecs = 2;

#include "attention_simd.inc"
#include "attention_flash.inc"
#include "attention_angular.inc"
#include "attention_table.inc"

}  // namespace

const AttentionKernels& avx2AttentionKernels() {
  static const AttentionKernels table = buildAttentionKernels(Isa::Avx2);
  return table;
}

}  // namespace castling::cpu
