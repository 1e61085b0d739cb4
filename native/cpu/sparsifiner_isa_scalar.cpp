// The portable Sparsifiner kernels: GCC vectors of 4 floats, lowered to whatever the baseline
// target has (SSE2 on x86-64, plain scalar code elsewhere).
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

constexpr int kVecLanes = 4;
typedef float VecF __attribute__((vector_size(16)));
static inline VecF vfma(VecF a, VecF b, VecF c) { return a * b + c; }
static inline VecF vbroadcast(float x) { return VecF{x, x, x, x}; }
static inline float vhsum(VecF a) { return (a[0] + a[2]) + (a[1] + a[3]); }
// attention_simd.inc's tile constants (unused here, but its static checks need them).
constexpr int kScoreRows = 6, kScoreVecs = 2;
constexpr int kOutRows = 6, kOutVecs = 2;

#include "attention_simd.inc"
#include "sparsifiner_kernels.inc"

}  // namespace

const SparsifinerKernels& scalarSparsifinerKernels() {
  static const SparsifinerKernels table = buildSparsifinerKernels(Isa::Scalar);
  return table;
}

}  // namespace castling::cpu
