// The AVX-512 kernel table. Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma: only
// reached after cpu_features.cpp has confirmed the CPU and OS support those instructions.
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "kernel_table.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "vector_math.inc"
#include "row_reduce.inc"
#include "elementwise.inc"

// 12 x 32 register tile: 24 accumulators in zmm0-23, two B vectors, broadcasts of A folded into
// the FMAs as memory operands. 24 independent FMA chains cover the 4-cycle FMA latency on both
// FMA ports with room to spare, and each k step loads 128 bytes of B for 24 FMAs.
constexpr int kMr = 12;
constexpr int kNr = 32;

void gemmMicro(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc,
               float alpha, bool accumulate) {
  __m512 acc[kMr][2];
#pragma GCC unroll 12
  for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < kc; ++k) {
    __m512 b0 = _mm512_load_ps(b);
    __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMr; ++i) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr;
    b += kNr;
  }
  __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
  for (int i = 0; i < kMr; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], _mm512_loadu_ps(ci)));
      _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(va, acc[i][1], _mm512_loadu_ps(ci + 16)));
    } else {
      _mm512_storeu_ps(ci, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(ci + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  }
}

}  // namespace

const KernelTable& avx512Kernels() {
  static const KernelTable table{
      Isa::Avx512,  kMr,         kNr,          gemmMicro,           epilogueTile,
      add,          scale,       gelu,         geluBackward,        softmaxRows,
      softmaxRowsBackward, layerNormRows, layerNormRowsBackward};
  return table;
}

}  // namespace castling::cpu
