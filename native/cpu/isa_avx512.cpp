// The AVX-512 kernel table. Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma: only
// reached after cpu_features.cpp has confirmed the CPU and OS support those instructions.
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

// 12 x 32 register tile: 24 accumulators in zmm0-23, two B vectors, broadcasts of A folded into
// the FMAs as memory operands. 24 independent FMA chains cover the 4-cycle FMA latency on both
// FMA ports with room to spare, and each k step loads 128 bytes of B for 24 FMAs. This is the
// shape BLIS uses on Skylake-X: the A panel (12 x kc, 18 KB at kc = 384) stays in L1 while the
// B panels stream from L2.
constexpr int kMr = 12;
constexpr int kNr = 32;

// How far ahead (in k steps) the B panel is prefetched into L1: about 100 cycles at 12 cycles per
// step, enough to cover an L2 hit, which the L1 streamer alone does not issue early enough.
constexpr int kPrefetchSteps = 8;

// One k step: A's MR values broadcast, B's NR values loaded. A is the packed panel (element i at
// a[i]) or, kDirect, MR rows of the source read in place: rows 4g + j at rows[g][j * lda], with
// 3 lda computed once (lda3), so that every address is a base, an index and a scale (no
// per-row pointer registers, no spills). Only the first kRows rows (MR but for a last partial
// tile of rows read in place).
template <bool kDirect, int kRows>
inline void fmaStep(__m512 (&acc)[kRows][2], const float* a, const float* const (&rows)[3], std::int64_t lda,
                    std::int64_t lda3, std::int64_t u, const float* b) {
  __m512 b0 = _mm512_load_ps(b);
  __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
  for (int i = 0; i < kRows; ++i) {
    float ai_scalar;
    if constexpr (kDirect) {
      const float* base = rows[i / 4] + u;
      const int j = i % 4;
      ai_scalar = j == 0 ? base[0] : j == 1 ? base[lda] : j == 2 ? base[2 * lda] : base[lda3];
    } else {
      ai_scalar = a[i];
    }
    __m512 ai = _mm512_set1_ps(ai_scalar);
    acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
    acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
  }
}

inline void prefetchL1(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

// A step of k moves a packed A panel by MR floats, rows read in place by one float. kRows < MR
// computes (and writes) only the first kRows rows of the tile.
template <bool kDirect, int kRows = kMr>
void gemmMicroT(std::int64_t kc, const float* a, std::int64_t lda, const float* b, float* c, std::int64_t ldc,
                float alpha, const TileAddends& add) {
  constexpr std::int64_t aStep = kDirect ? 1 : kMr;
  const float* rows[3] = {a, kRows > 4 ? a + 4 * lda : a, kRows > 8 ? a + 8 * lda : a};  // (kDirect only)
  const std::int64_t lda3 = 3 * lda;
  // The C tile is read (or written) only after the k loop: ask for its lines now so that the
  // misses overlap with the FMAs instead of stalling the stores at the end.
#pragma GCC unroll 12
  for (int i = 0; i < kRows; ++i) {
    prefetchL1(c + i * ldc);
    prefetchL1(c + i * ldc + kNr - 1);
  }
  __m512 acc[kRows][2];
#pragma GCC unroll 12
  for (int i = 0; i < kRows; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  std::int64_t k = 0;
  // Unrolled by 4 so that the loop overhead and the prefetches (two lines of B per step) are
  // spread over 96 FMAs.
  for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      prefetchL1(b + (kPrefetchSteps + u) * kNr);
      prefetchL1(b + (kPrefetchSteps + u) * kNr + 16);
      fmaStep<kDirect, kRows>(acc, a + u * aStep, rows, lda, lda3, u, b + u * kNr);
    }
    a += 4 * aStep;
    for (auto& r : rows) r += 4;
    b += 4 * kNr;
  }
  for (; k < kc; ++k) {
    fmaStep<kDirect, kRows>(acc, a, rows, lda, lda3, 0, b);
    a += aStep;
    for (auto& r : rows) r += 1;
    b += kNr;
  }
  // Everything added to alpha * A.B is summed into one row of addends first, so that each row
  // costs one FMA per vector whatever the addends.
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 bias0 = add.bias ? _mm512_loadu_ps(add.bias) : _mm512_setzero_ps();
  const __m512 bias1 = add.bias ? _mm512_loadu_ps(add.bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int i = 0; i < kRows; ++i) {
    float* ci = c + i * ldc;
    __m512 s0 = bias0, s1 = bias1;
    if (add.accumulate) {
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(ci));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(ci + 16));
    }
    if (add.residual) {
      const float* ri = add.residual + i * add.ldr;
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(ri));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(ri + 16));
    }
    _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], s0));
    _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(va, acc[i][1], s1));
  }
}

#include "gemm_rows.inc"

}  // namespace

const KernelTable& avx512Kernels() {
  static const KernelTable table{
      Isa::Avx512,  kMr,         kNr,          gemmMicroT<false>,   gemmMicroT<true>,    gemmMicroDirectRows, epilogueTile,
      add,          scale,       gelu,         geluBackward,        softmaxRows,
      softmaxRowsBackward, layerNormRows, layerNormRowsBackward};
  return table;
}

}  // namespace castling::cpu
