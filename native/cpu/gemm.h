// Single-precision GEMM: C = epilogue(alpha * op(A) op(B)), row-major, either operand transposed.
// Packed and cache-blocked, one register micro-kernel per ISA (kernel_table.h), multi-threaded on
// the global pool. A linear layer y = x W^T + b (W stored (out, in) as in PyTorch) is
// sgemm({.transB = true, ...}) with the bias in the epilogue, so its output is written once.
#pragma once
#include <cstdint>

#include "kernel_table.h"

namespace castling::cpu {

struct GemmArgs {
  bool transA = false;  // A is stored K x M (lda >= M) instead of M x K (lda >= K)
  bool transB = false;  // B is stored N x K (ldb >= K) instead of K x N (ldb >= N)
  std::int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f;
  const float* A = nullptr;
  std::int64_t lda = 0;
  const float* B = nullptr;
  std::int64_t ldb = 0;
  float* C = nullptr;
  std::int64_t ldc = 0;
  bool accumulate = false;  // C += ... instead of C = ...
  Epilogue epilogue;
};

// The arguments for C[M, N] = op(A) op(B) over dense row-major matrices: the strides follow
// from the shapes (A is M x K, or K x M when transposed; B is K x N, or N x K when transposed).
inline GemmArgs denseGemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, bool transA,
                          const float* B, bool transB, float* C) {
  GemmArgs g;
  g.transA = transA;
  g.transB = transB;
  g.M = M;
  g.N = N;
  g.K = K;
  g.A = A;
  g.lda = transA ? M : K;
  g.B = B;
  g.ldb = transB ? K : N;
  g.C = C;
  g.ldc = N;
  return g;
}

// Runs on the active ISA with all pool threads. Throws castling::Error for inconsistent sizes.
void sgemm(const GemmArgs& args);
// Runs with an explicit kernel table and at most `threads` threads (benchmarks, tests).
void sgemm(const KernelTable& kernels, const GemmArgs& args, int threads);

}  // namespace castling::cpu
