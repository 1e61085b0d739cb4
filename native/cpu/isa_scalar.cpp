// The portable kernel table: plain C++ compiled with the baseline flags of the target, so it runs
// on any CPU (and on non-x86 builds). Its job is to be correct everywhere; speed is a bonus.
#include <bit>
#include <cmath>
#include <cstdint>

#include "kernel_table.h"

namespace castling::cpu {
namespace {  // internal linkage: see vector_math.inc

#include "vector_math.inc"
#include "row_reduce.inc"
#include "elementwise.inc"

constexpr int kMr = 4;
constexpr int kNr = 8;

void gemmMicro(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc,
               float alpha, bool accumulate) {
  float acc[kMr][kNr] = {};
  for (std::int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[i] * b[j];
    a += kMr;
    b += kNr;
  }
  for (int i = 0; i < kMr; ++i)
    for (int j = 0; j < kNr; ++j)
      c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + alpha * acc[i][j];
}

}  // namespace

const KernelTable& scalarKernels() {
  static const KernelTable table{
      Isa::Scalar,  kMr,         kNr,          gemmMicro,           epilogueTile,
      add,          scale,       gelu,         geluBackward,        softmaxRows,
      softmaxRowsBackward, layerNormRows, layerNormRowsBackward};
  return table;
}

}  // namespace castling::cpu
