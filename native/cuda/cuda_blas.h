// The plain GEMMs, through cuBLAS: C = alpha op(A) op(B) + beta C over ROW-MAJOR matrices (the
// layout of every tensor here), optionally a batch of them at fixed strides (a stride of 0 shares
// one operand across the batch). A and B share one element type, C has the same one or float32
// (16-bit inputs into a float32 result: the form 16-bit weight storage uses); the product
// accumulates in float32 (no TF32 for float32 inputs: the results must match the CPU's to 1e-5).
// Only cuda_blas.cpp includes cuBLAS, so the kernels compile where cuBLAS is not installed.
#pragma once
#include <cstdint>
#include <optional>

#include "../core/device.h"
#include "../ops/gemm_layout.h"

namespace castling::cuda {

// The layout (cpu/gemm_layout.h: transA, transB, M, N, K, lda, ldb, ldc), the operands and the
// batch: each product's A starts strideA elements after the previous one's (B and C alike).
struct Gemm : ops::GemmLayout {
  float alpha = 1.0f, beta = 0.0f;
  const void* A = nullptr;
  const void* B = nullptr;
  void* C = nullptr;
  std::int64_t strideA = 0, strideB = 0, strideC = 0;
  std::int64_t batch = 1;
  DType dtype = DType::Float32;                   // of A and B
  std::optional<DType> outDtype = std::nullopt;  // of C: dtype unless set (float32 is the only other choice)
};

// The arguments for dense row-major C[M, N] = op(A) op(B) (GemmLayout::setDense).
inline Gemm denseGemm(std::int64_t M, std::int64_t N, std::int64_t K, const void* A, bool transA, const void* B, bool transB,
                      void* C, DType dtype = DType::Float32) {
  Gemm g;
  g.setDense(M, N, K, transA, transB);
  g.A = A;
  g.B = B;
  g.C = C;
  g.dtype = dtype;
  return g;
}

// Queues the product on the backend's stream. Throws castling::Error on a cuBLAS error.
void gemm(const Gemm& g);

}  // namespace castling::cuda
