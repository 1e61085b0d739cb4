// The portable kernel table: plain C++ compiled with the baseline flags of the target, so it runs
// on any CPU (and on non-x86 builds). Its job is to be correct everywhere; speed is a bonus.
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

constexpr int kMr = 4;
constexpr int kNr = 8;

// A is the packed panel (element (i, k) at a[k * MR + i]) or, kDirect, MR rows read in place
// (element (i, k) at a[i * lda + k]). kRows < MR computes (and writes) only the first kRows rows.
template <bool kDirect, int kRows = kMr>
void gemmMicroT(std::int64_t kc, const float* a, std::int64_t lda, const float* b, float* c, std::int64_t ldc,
                float alpha, const TileAddends& add) {
  float acc[kRows][kNr] = {};
  for (std::int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += (kDirect ? a[i * lda + k] : a[k * kMr + i]) * b[j];
    b += kNr;
  }
  for (int i = 0; i < kRows; ++i)
    for (int j = 0; j < kNr; ++j) {
      float sum = (add.accumulate ? c[i * ldc + j] : 0.0f) + (add.bias ? add.bias[j] : 0.0f) +
                  (add.residual ? add.residual[i * add.ldr + j] : 0.0f);
      c[i * ldc + j] = alpha * acc[i][j] + sum;
    }
}

#include "gemm_rows.inc"

}  // namespace

const KernelTable& scalarKernels() {
  static const KernelTable table{
      Isa::Scalar,  kMr,         kNr,          gemmMicroT<false>,   gemmMicroT<true>,    gemmMicroDirectRows, epilogueTile,
      add,          scale,       gelu,         geluBackward,        softmaxRows,
      softmaxRowsBackward, layerNormRows, layerNormRowsBackward};
  return table;
}

}  // namespace castling::cpu
