// The AVX2+FMA kernel table. Compiled with -mavx2 -mfma: only reached after cpu_features.cpp has
// confirmed the CPU and OS support them.
#include <immintrin.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <utility>

#include "kernel_table.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "vector_math.inc"
#include "row_reduce.inc"
#include "elementwise.inc"

// 6 x 16 register tile: 12 ymm accumulators, two B vectors and one broadcast of A: 15 of the 16
// ymm registers. 12 FMA chains cover the FMA latency on two ports. (The BLIS Haswell shape: the
// A panel, 6 x kc, stays in L1 while the B panels stream from L2.)
constexpr int kMr = 6;
constexpr int kNr = 16;

// How far ahead (in k steps) the B panel is prefetched into L1: ~100 cycles at 6 cycles a step.
constexpr int kPrefetchSteps = 16;

// One k step: A's MR values broadcast, B's NR values loaded. A is the packed panel (element i at
// a[i]) or, kDirect, MR rows of the source read in place (element i at a[i * lda]). Only the
// first kRows rows (MR but for a last partial tile of rows read in place).
template <bool kDirect, int kRows>
inline void fmaStep(__m256 (&acc)[kRows][2], const float* a, std::int64_t lda, const float* b) {
  __m256 b0 = _mm256_load_ps(b);
  __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
  for (int i = 0; i < kRows; ++i) {
    __m256 ai = _mm256_broadcast_ss(kDirect ? a + i * lda : a + i);
    acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
    acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
  }
}

inline void prefetchL1(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

// A step of k moves a packed A panel by MR floats, rows read in place by one float. kRows < MR
// computes (and writes) only the first kRows rows of the tile.
template <bool kDirect, int kRows = kMr>
void gemmMicroT(std::int64_t kc, const float* a, std::int64_t lda, const float* b, float* c, std::int64_t ldc,
                float alpha, const TileAddends& add) {
  constexpr std::int64_t aStep = kDirect ? 1 : kMr;
  // The C tile is read (or written) only after the k loop: ask for its lines now so that the
  // misses overlap with the FMAs instead of stalling the stores at the end.
#pragma GCC unroll 6
  for (int i = 0; i < kRows; ++i) {
    prefetchL1(c + i * ldc);
    prefetchL1(c + i * ldc + kNr - 1);
  }
  __m256 acc[kRows][2];
#pragma GCC unroll 6
  for (int i = 0; i < kRows; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  std::int64_t k = 0;
  // Unrolled by 4: one 64-byte line of B per step, so one prefetch per step, and the loop
  // overhead spread over 48 FMAs.
  for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      prefetchL1(b + (kPrefetchSteps + u) * kNr);
      fmaStep<kDirect, kRows>(acc, a + u * aStep, lda, b + u * kNr);
    }
    a += 4 * aStep;
    b += 4 * kNr;
  }
  for (; k < kc; ++k) {
    fmaStep<kDirect, kRows>(acc, a, lda, b);
    a += aStep;
    b += kNr;
  }
  // Everything added to alpha * A.B is summed into one row of addends first, so that each row
  // costs one FMA per vector whatever the addends.
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 bias0 = add.bias ? _mm256_loadu_ps(add.bias) : _mm256_setzero_ps();
  const __m256 bias1 = add.bias ? _mm256_loadu_ps(add.bias + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < kRows; ++i) {
    float* ci = c + i * ldc;
    __m256 s0 = bias0, s1 = bias1;
    if (add.accumulate) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(ci));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(ci + 8));
    }
    if (add.residual) {
      const float* ri = add.residual + i * add.ldr;
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(ri));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(ri + 8));
    }
    _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][0], s0));
    _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, acc[i][1], s1));
  }
}

#include "gemm_rows.inc"

}  // namespace

const KernelTable& avx2Kernels() {
  static const KernelTable table{
      Isa::Avx2,    kMr,         kNr,          gemmMicroT<false>,   gemmMicroT<true>,    gemmMicroDirectRows, epilogueTile,
      add,          scale,       gelu,         geluBackward,        softmaxRows,
      softmaxRowsBackward, layerNormRows, layerNormRowsBackward};
  return table;
}

}  // namespace castling::cpu
