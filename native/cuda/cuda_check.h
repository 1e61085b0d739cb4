// Every CUDA runtime call goes through CASTLING_CUDA_CHECK, and every kernel launch is followed by
// CASTLING_CUDA_CHECK_LAUNCH: a failure becomes a castling::Error naming the call and file:line,
// which the addon turns into a JavaScript Error (never an abort, never a silent wrong result).
#pragma once
#include <cuda_runtime.h>

#include "../core/error.h"

namespace castling::cuda {

inline void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  failAs(ErrorKind::Internal, "CUDA error ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ") in ", call, " at ", file, ":", line);
}

}  // namespace castling::cuda

#define CASTLING_CUDA_CHECK(call) ::castling::cuda::check((call), #call, __FILE__, __LINE__)
// After a launch: configuration errors now; errors inside the kernel surface at the next sync.
#define CASTLING_CUDA_CHECK_LAUNCH() ::castling::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
