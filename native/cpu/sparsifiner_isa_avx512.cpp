// The AVX-512 Sparsifiner kernels. Compiled with the same flags as attention_isa_avx512.cpp: only
// reached after cpu_features.cpp has confirmed the CPU and OS support AVX-512 F/BW/DQ/VL.
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "sparsifiner_kernels.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "vector_math.inc"
#include "row_reduce.inc"

constexpr int kVecLanes = 16;
typedef float VecF __attribute__((vector_size(64)));
static inline VecF vfma(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a, b, c); }
static inline VecF vbroadcast(float x) { return _mm512_set1_ps(x); }
// Register-only reduction with GCC's shufflevector: not _mm512_reduce_add_ps or the 512-bit
// extract/shuffle intrinsics (GCC 12's headers trip -Wuninitialized in them) and not a memcpy of
// the halves (the upper half's load cannot be forwarded from the 64-byte store: a stall per call).
typedef float HalfF __attribute__((vector_size(32)));
static inline float vhsum(VecF a) {
  HalfF lo = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7);
  HalfF hi = __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
  __m256 h = _mm256_add_ps(lo, hi);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
// attention_simd.inc's tile constants (unused here, but its static checks need them).
constexpr int kScoreRows = 8, kScoreVecs = 3;
constexpr int kOutRows = 6, kOutVecs = 4;

#include "attention_simd.inc"
#include "sparsifiner_kernels.inc"

}  // namespace

const SparsifinerKernels& avx512SparsifinerKernels() {
  static const SparsifinerKernels table = buildSparsifinerKernels(Isa::Avx512);
  return table;
}

}  // namespace castling::cpu
