// Single-precision GEMM: C = epilogue(alpha * op(A) op(B)), row-major, either operand transposed.
// Packed and cache-blocked, one register micro-kernel per ISA (kernel_table.h), multi-threaded on
// the global pool. A linear layer y = x W^T + b (W stored (out, in) as in PyTorch) is an sgemm
// with transB = true and the bias in the epilogue, so its output is written once.
#pragma once
#include <cstdint>

#include "gemm_layout.h"
#include "kernel_table.h"

namespace castling::cpu {

// The layout (gemm_layout.h: transA, transB, M, N, K, lda, ldb, ldc) and the operands.
struct GemmArgs : GemmLayout {
  float alpha = 1.0f;
  const float* A = nullptr;
  const float* B = nullptr;
  float* C = nullptr;
  bool accumulate = false;  // C += ... instead of C = ...
  Epilogue epilogue;
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

// Runs on the active ISA with all pool threads. Throws castling::Error for inconsistent sizes.
void sgemm(const GemmArgs& args);
// Runs with an explicit kernel table and at most `threads` threads (benchmarks, tests).
void sgemm(const KernelTable& kernels, const GemmArgs& args, int threads);

}  // namespace castling::cpu
