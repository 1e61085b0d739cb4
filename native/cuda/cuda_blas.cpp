#include "cuda_blas.h"

#include <cublas_v2.h>

#include <mutex>

#include "../core/error.h"
#include "cuda_check.h"
#include "cuda_context.h"

namespace castling::cuda {

namespace {

const char* blasStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

void checkBlas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) failAs(ErrorKind::Internal, "cuBLAS error ", blasStatusName(status), " (", int(status), ") in ", call, " at ", file, ":", line);
}

#define CASTLING_BLAS_CHECK(call) checkBlas((call), #call, __FILE__, __LINE__)

// One handle bound to the backend's stream, in pedantic float32 mode (no TF32 shortcut). The
// mutex keeps two host threads from queueing through it at the same moment.
struct Blas {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
};

Blas& blas() {
  static Blas* b = [] {
    auto* created = new Blas();
    CASTLING_BLAS_CHECK(cublasCreate(&created->handle));
    CASTLING_BLAS_CHECK(cublasSetStream(created->handle, stream()));
    CASTLING_BLAS_CHECK(cublasSetMathMode(created->handle, CUBLAS_PEDANTIC_MATH));
    return created;
  }();
  return *b;
}

cudaDataType_t dataType(DType t) {
  switch (t) {
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

int asInt(std::int64_t v, const char* what) {
  if (v < 0 || v > 0x7fffffff) fail("gemm: ", what, " is ", v, ", beyond the 2^31 - 1 cuBLAS takes");
  return int(v);
}

}  // namespace

void gemm(const Gemm& g) {
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  // Row-major C (M x N) is column-major C^T (N x M) = op(B)^T op(A)^T: swap the operands, keep
  // each one's transpose flag (a row-major matrix read column-major is already its transpose).
  const cublasOperation_t opB = g.transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opA = g.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cudaDataType_t type = dataType(g.dtype), outType = dataType(g.outDtype.value_or(g.dtype));
  if (g.outDtype && *g.outDtype != g.dtype && *g.outDtype != DType::Float32) {
    fail("gemm: ", dtypeName(g.dtype), " inputs give ", dtypeName(g.dtype), " or float32, not ", dtypeName(*g.outDtype));
  }
  const int m = asInt(g.N, "N"), n = asInt(g.M, "M"), k = asInt(g.K, "K");
  const int ldb = asInt(std::max<std::int64_t>(g.ldb, 1), "ldb"), lda = asInt(std::max<std::int64_t>(g.lda, 1), "lda"),
            ldc = asInt(std::max<std::int64_t>(g.ldc, 1), "ldc"), batch = asInt(g.batch, "batch");
  Blas& b = blas();
  std::lock_guard<std::mutex> lock(b.mutex);
  CASTLING_BLAS_CHECK(cublasSetStream(b.handle, stream()));  // this thread's: a graph's capture has its own
  CASTLING_BLAS_CHECK(cublasGemmStridedBatchedEx(b.handle, opB, opA, m, n, k, &g.alpha, g.B, type, ldb, g.strideB, g.A, type,
                                                 lda, g.strideA, &g.beta, g.C, outType, ldc, g.strideC, batch,
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace castling::cuda
