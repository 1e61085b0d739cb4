// Kernel launches and shared-memory declarations, written once for both builds of the kernels:
// nvcc (launch() is the <<<grid, block, bytes, stream>>> syntax) and the CPU emulation of the
// tests (emulation/, CASTLING_CUDA_EMULATION), where the same line runs the kernel on fibers.
//
//   launch(kernel, grid, block, sharedBytes, stream(), args...);
//   CASTLING_SHARED(float, tile, [32][33]);     // __shared__ float tile[32][33];
//   CASTLING_DYNAMIC_SHARED(float, smem);       // extern __shared__ float smem[];
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#if defined(CASTLING_CUDA_EMULATION)
#include "emulation/launch.h"
#endif

namespace castling::cuda {

#if defined(CASTLING_CUDA_EMULATION)

using emu::launch;
#define CASTLING_SHARED(type, name, dims) CASTLING_EMU_SHARED(type, name, dims)
#define CASTLING_DYNAMIC_SHARED(type, name) CASTLING_EMU_DYNAMIC_SHARED(type, name)

#else

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t sharedBytes, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "a kernel launch passes exactly one argument per kernel parameter");
#if defined(__CUDACC__)
  kernel<<<grid, block, sharedBytes, stream>>>(std::forward<Args>(args)...);
#endif
}
#define CASTLING_SHARED(type, name, dims) __shared__ type name dims
#define CASTLING_DYNAMIC_SHARED(type, name) extern __shared__ type name[]

#endif

}  // namespace castling::cuda
