// Device-side vocabulary shared by the kernels: element types (float32 storage, or bfloat16 /
// float16 storage read into float32 registers: all arithmetic and accumulation is float32), warp
// reductions, launch sizes, and the host-side switch from a DType to a kernel template.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../core/device.h"
#include "../core/error.h"
#include "cuda_check.h"
#include "cuda_context.h"
#include "cuda_launch.cuh"

namespace castling::cuda {

// ---- element types ----

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T fromFloat(float x);
template <> __device__ __forceinline__ float fromFloat<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half fromFloat<__half>(float x) { return __float2half_rn(x); }

// Calls fn(T{}) with T the element type of `dtype`: one kernel template, three instances.
template <typename Fn>
void withDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: fn(float{}); break;
    case DType::BFloat16: fn(__nv_bfloat16{}); break;
    case DType::Float16: fn(__half{}); break;
  }
}

// ---- reductions ----

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

__device__ __forceinline__ double warpSumDouble(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// ---- launch sizes ----

constexpr int kThreads = 256;           // threads per block of the elementwise kernels
constexpr int kWarpsPerBlock = kThreads / 32;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned gridFor(std::int64_t n, int threads = kThreads) {
  std::int64_t blocks = (n + threads - 1) / threads;
  std::int64_t cap = std::int64_t(std::max(properties().multiProcessorCount, 1)) * 32;
  return unsigned(std::clamp<std::int64_t>(blocks, 1, cap));
}

// Blocks for one warp per row.
inline unsigned gridForRows(std::int64_t rows) {
  std::int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) fail("too many rows for one launch: ", rows);
  return unsigned(std::max<std::int64_t>(blocks, 1));
}

// A grid dimension y or z must stay below 65536.
inline unsigned gridDimYZ(std::int64_t n, const char* what) {
  if (n > 65535) fail(what, ": ", n, " is more than the 65535 a CUDA grid dimension allows");
  return unsigned(std::max<std::int64_t>(n, 1));
}

}  // namespace castling::cuda
