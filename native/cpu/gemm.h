// Single-precision GEMM: C = epilogue(alpha * op(A) op(B)), row-major, either operand transposed.
// Packed and cache-blocked, one register micro-kernel per ISA (cpu_kernels.h), multi-threaded on
// the global pool. A linear layer y = x W^T + b (W stored (out, in) as in PyTorch) is an sgemm
// with transB = true and the bias in the epilogue, so its output is written once.
#pragma once
#include <cstdint>

#include "../ops/gemm_layout.h"
#include "dense_kernels.h"

namespace castling::cpu {

// The layout (gemm_layout.h: transA, transB, M, N, K, lda, ldb, ldc) and the operands.
struct GemmArgs : ops::GemmLayout {
  float alpha = 1.0f;
  const float* A = nullptr;
  const float* B = nullptr;
  float* C = nullptr;
  bool accumulate = false;  // C += ... instead of C = ...
  Epilogue epilogue;
  // op(B) already packed whole (packWholeB, into 64-byte aligned memory such as a Storage) for a
  // kernel table of this NR: the GEMM then reads its panels instead of packing B itself. A linear
  // layer's weight is packed once and reused while it does not change (ops_linear.cpp).
  const float* packedB = nullptr;
  int packedNr = 0;
};

// The arguments for C[M, N] = op(A) op(B) over dense row-major matrices (GemmLayout::setDense).
inline GemmArgs denseGemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, bool transA,
                          const float* B, bool transB, float* C) {
  GemmArgs g;
  g.setDense(M, N, K, transA, transB);
  g.A = A;
  g.B = B;
  g.C = C;
  return g;
}

// The floats of op(B) packed whole for `kernels`: each K-slice the GEMM multiplies by, as the
// NR-column panels it would pack block by block (K x N rounded up to a multiple of NR).
std::int64_t packedBFloats(const DenseKernels& kernels, const ops::GemmLayout& layout);
// Packs op(B) of `args` whole into dst (packedBFloats floats, 64-byte aligned) with the pool's
// threads.
void packWholeB(const DenseKernels& kernels, const GemmArgs& args, float* dst);

// Runs on the active ISA with all pool threads. Throws castling::Error for inconsistent sizes.
void sgemm(const GemmArgs& args);
// Runs with an explicit kernel table and at most `threads` threads (benchmarks, tests).
void sgemm(const DenseKernels& kernels, const GemmArgs& args, int threads);

}  // namespace castling::cpu
