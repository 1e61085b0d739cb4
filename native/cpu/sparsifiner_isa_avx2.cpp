// The AVX2+FMA Sparsifiner kernels. Compiled with the same flags as attention_isa_avx2.cpp: only
// reached after cpu_features.cpp has confirmed the CPU and OS support them.
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

constexpr int kVecLanes = 8;
typedef float VecF __attribute__((vector_size(32)));
static inline VecF vfma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a, b, c); }
static inline VecF vbroadcast(float x) { return _mm256_set1_ps(x); }
static inline float vhsum(VecF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
// attention_simd.inc's tile constants (unused here, but its static checks need them).
constexpr int kScoreRows = 6, kScoreVecs = 2;
constexpr int kOutRows = 6, kOutVecs = 2;

#include "attention_simd.inc"
#include "sparsifiner_kernels.inc"

}  // namespace

const SparsifinerKernels& avx2SparsifinerKernels() {
  static const SparsifinerKernels table = buildSparsifinerKernels(Isa::Avx2);
  return table;
}

}  // namespace castling::cpu
