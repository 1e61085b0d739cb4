// The cuBLAS stand-in: strided batched GEMM over float32, bfloat16 or float16 storage, in
// column-major terms as cuBLAS defines it. Products are summed in double and rounded once: cuBLAS
// sums float32 in short tiles, far more accurately than one long float32 loop would (which, over
// K of a thousand, drifts past the 1e-5 the op tests allow), so the stand-in must not be the least
// accurate part of what the tests compare. Operands are checked to lie inside
// live device allocations (an out-of-range leading dimension or stride fails with
// CUBLAS_STATUS_INVALID_VALUE instead of reading stray memory).
#include <cublas_v2.h>

#include <cstdint>
#include <vector>

#include "device_memory.h"
#include "half_precision.h"
#include "stream_capture.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace {

float load(const void* base, cudaDataType_t type, std::int64_t i) {
  switch (type) {
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

void store(void* base, cudaDataType_t type, std::int64_t i, float v) {
  switch (type) {
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v); break;
    case CUDA_R_16F: static_cast<__half*>(base)[i] = __float2half_rn(v); break;
    default: static_cast<float*>(base)[i] = v;
  }
}

std::size_t elementBytes(cudaDataType_t type) { return type == CUDA_R_32F ? 4 : 2; }

// The last element a column-major (rows x cols, leading dimension ld) operand of batch item
// `batch - 1` touches must lie in the allocation the first element is in.
bool inDeviceMemory(const void* base, cudaDataType_t type, std::int64_t rows, std::int64_t cols, std::int64_t ld, long long stride,
                    int batch) {
  if (rows == 0 || cols == 0) return true;
  const std::int64_t last = std::int64_t(batch - 1) * stride + (cols - 1) * ld + (rows - 1);
  if (last < 0) return false;
  return castling::emu::findDevice(base, std::size_t(last + 1) * elementBytes(type)) != nullptr;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t) {
  return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                                          int k, const void* alphaPtr, const void* A, cudaDataType_t Atype, int lda,
                                          long long strideA, const void* B, cudaDataType_t Btype, int ldb, long long strideB,
                                          const void* betaPtr, void* C, cudaDataType_t Ctype, int ldc, long long strideC,
                                          int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || batchCount < 0 || computeType != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_INVALID_VALUE;
  // cuBLAS's combinations under CUBLAS_COMPUTE_32F: one type throughout, or 16-bit A and B into a float32 C.
  if (Atype != Btype || (Atype != Ctype && Ctype != CUDA_R_32F)) return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  // op(A) is m x k: A itself is m x k (lda >= m) or k x m (lda >= k); op(B) is k x n likewise.
  const std::int64_t aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
  if (lda < std::max<std::int64_t>(1, aRows) || ldb < std::max<std::int64_t>(1, bRows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  const float alpha = *static_cast<const float*>(alphaPtr), beta = *static_cast<const float*>(betaPtr);
  if ((k > 0 && (!inDeviceMemory(A, Atype, aRows, aCols, lda, strideA, batchCount) ||
                 !inDeviceMemory(B, Btype, bRows, bCols, ldb, strideB, batchCount))) ||
      !inDeviceMemory(C, Ctype, m, n, ldc, strideC, batchCount))
    return CUBLAS_STATUS_INVALID_VALUE;
  // Queued on the handle's stream: run now, or recorded by a capture (stream_capture.h).
  castling::emu::submit(handle->stream, [=] {
    std::vector<double> column(static_cast<std::size_t>(k));
    for (int batch = 0; batch < batchCount; ++batch) {
      const std::int64_t a0 = std::int64_t(batch) * strideA, b0 = std::int64_t(batch) * strideB, c0 = std::int64_t(batch) * strideC;
      for (int j = 0; j < n; ++j) {
        for (int p = 0; p < k; ++p) column[std::size_t(p)] = load(B, Btype, b0 + (tb ? std::int64_t(p) * ldb + j : std::int64_t(j) * ldb + p));
        for (int i = 0; i < m; ++i) {
          double sum = 0.0;
          for (int p = 0; p < k; ++p) sum += load(A, Atype, a0 + (ta ? std::int64_t(i) * lda + p : std::int64_t(p) * lda + i)) * column[std::size_t(p)];
          const std::int64_t ci = c0 + std::int64_t(j) * ldc + i;
          // beta == 0: C is output only (it may hold anything, NaN included), as cuBLAS specifies.
          const double product = double(alpha) * sum;
          store(C, Ctype, ci, float(beta == 0.0f ? product : product + double(beta) * load(C, Ctype, ci)));
        }
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}
