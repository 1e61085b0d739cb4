// The sizes and operand layout of a row-major GEMM C[M, N] = op(A) op(B), shared by the CPU GEMM's
// arguments (native/cpu/gemm.h, GemmArgs) and the CUDA one's (native/cuda/cuda_blas.h, Gemm): each adds its
// operand pointers, scaling and what its backend needs of its own (the CPU an epilogue, CUDA a
// batch and an element type).
#pragma once
#include <cstdint>

namespace castling::ops {

struct GemmLayout {
  bool transA = false;  // A is stored K x M (lda >= M) instead of M x K (lda >= K)
  bool transB = false;  // B is stored N x K (ldb >= K) instead of K x N (ldb >= N)
  std::int64_t M = 0, N = 0, K = 0;
  std::int64_t lda = 0, ldb = 0, ldc = 0;

  // Dense row-major operands: A is M x K (K x M when transposed), B is K x N (N x K when
  // transposed), C is M x N, and the strides follow from these shapes.
  void setDense(std::int64_t m, std::int64_t n, std::int64_t k, bool transposeA, bool transposeB) {
    transA = transposeA;
    transB = transposeB;
    M = m;
    N = n;
    K = k;
    lda = transA ? M : K;
    ldb = transB ? K : N;
    ldc = N;
  }
};

}  // namespace castling::ops
