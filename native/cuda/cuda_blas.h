// The plain GEMMs, through cuBLAS: C = alpha op(A) op(B) + beta C over ROW-MAJOR matrices (the
// layout of every tensor here), optionally a batch of them at fixed strides (a stride of 0 shares
// one operand across the batch). A, B and C share one element type; the product accumulates in
// float32 (no TF32 for float32 inputs: the results must match the CPU's to 1e-5).
// Only cuda_blas.cpp includes cuBLAS, so the kernels compile where cuBLAS is not installed.
#pragma once
#include <cstdint>

#include "../core/device.h"

namespace castling::cuda {

struct Gemm {
  bool transA = false;  // A is stored K x M (lda >= M) instead of M x K (lda >= K)
  bool transB = false;  // B is stored N x K (ldb >= K) instead of K x N (ldb >= N)
  std::int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* A = nullptr;
  std::int64_t lda = 0, strideA = 0;
  const void* B = nullptr;
  std::int64_t ldb = 0, strideB = 0;
  void* C = nullptr;
  std::int64_t ldc = 0, strideC = 0;
  std::int64_t batch = 1;
  DType dtype = DType::Float32;
};

// The arguments for dense row-major C[M, N] = op(A) op(B) (strides follow from the shapes).
inline Gemm denseGemm(std::int64_t M, std::int64_t N, std::int64_t K, const void* A, bool transA, const void* B, bool transB,
                      void* C, DType dtype = DType::Float32) {
  Gemm g;
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
  g.dtype = dtype;
  return g;
}

// Queues the product on the backend's stream. Throws castling::Error on a cuBLAS error.
void gemm(const Gemm& g);

}  // namespace castling::cuda
