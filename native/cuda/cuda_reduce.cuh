// Column sums over the rows of a matrix (bias gradients, LayerNorm's dgamma/dbeta, the class
// token and position embedding gradients), without atomics so that results do not depend on
// scheduling: each block sums a chunk of rows for 32 columns, then one thread per column adds the
// chunks' partial sums in chunk order.
//
// A term functor gives the value(s) summed at (row, column):
//   struct Term { static constexpr int kTerms = 1; __device__ void operator()(int64_t r, int64_t c, float* v) const; };
#pragma once
#include "cuda_kernels.cuh"
#include "cuda_ops.h"

namespace castling::cuda {

namespace reduce {

constexpr int kRowsPerThreadStep = 8;  // blockDim.y

template <typename Term>
__global__ void columnPartials(std::int64_t rows, std::int64_t cols, std::int64_t rowsPerChunk, Term term, float* partial) {
  constexpr int T = Term::kTerms;
  CASTLING_SHARED(float, tile, [T][kRowsPerThreadStep][33]);
  const std::int64_t c = std::int64_t(blockIdx.x) * 32 + threadIdx.x;
  const std::int64_t r0 = std::int64_t(blockIdx.y) * rowsPerChunk;
  const std::int64_t r1 = r0 + rowsPerChunk < rows ? r0 + rowsPerChunk : rows;
  float acc[T];
  for (int t = 0; t < T; ++t) acc[t] = 0.0f;
  if (c < cols) {
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kRowsPerThreadStep) {
      float v[T];
      term(r, c, v);
      for (int t = 0; t < T; ++t) acc[t] += v[t];
    }
  }
  for (int t = 0; t < T; ++t) tile[t][threadIdx.y][threadIdx.x] = acc[t];
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int t = 0; t < T; ++t) {
      float s = 0.0f;
      for (int y = 0; y < kRowsPerThreadStep; ++y) s += tile[t][y][threadIdx.x];
      partial[(std::int64_t(blockIdx.y) * T + t) * cols + c] = s;
    }
  }
}

template <int T>
__global__ void columnFinish(std::int64_t chunks, std::int64_t cols, const float* partial, float* out0, float* out1,
                             bool accumulate) {
  std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int t = 0; t < T; ++t) {
    float* out = t == 0 ? out0 : out1;
    float s = accumulate ? out[c] : 0.0f;
    for (std::int64_t k = 0; k < chunks; ++k) s += partial[(k * T + t) * cols + c];
    out[c] = s;
  }
}

}  // namespace reduce

// out0[c] (+)= sum over rows of term value 0 at (r, c); out1 likewise for a second term.
template <typename Term>
void columnSums(std::int64_t rows, std::int64_t cols, const Term& term, float* out0, float* out1 = nullptr,
                bool accumulate = false) {
  if (cols <= 0) return;
  constexpr int T = Term::kTerms;
  std::int64_t chunks = std::clamp<std::int64_t>((rows + 127) / 128, 1, 512);
  std::int64_t rowsPerChunk = std::max<std::int64_t>((rows + chunks - 1) / chunks, 1);
  chunks = std::max<std::int64_t>((rows + rowsPerChunk - 1) / rowsPerChunk, 1);
  Tensor partial = deviceEmpty({chunks * T * cols});
  dim3 grid(unsigned((cols + 31) / 32), gridDimYZ(chunks, "columnSums chunks"));
  launch(reduce::columnPartials<Term>, grid, dim3(32, reduce::kRowsPerThreadStep), 0, stream(), rows, cols, rowsPerChunk,
                                                                                          term, partial.data());
  CASTLING_CUDA_CHECK_LAUNCH();
  launch(reduce::columnFinish<T>, unsigned((cols + 255) / 256), 256, 0, stream(), chunks, cols, partial.data(), out0, out1,
                                                                                accumulate);
  CASTLING_CUDA_CHECK_LAUNCH();
}

// The plain term: x[r * cols + c] of a matrix (any element type, summed in float32).
template <typename T>
struct MatrixTerm {
  static constexpr int kTerms = 1;
  const T* x;
  std::int64_t cols;
  __device__ void operator()(std::int64_t r, std::int64_t c, float* v) const { v[0] = toFloat(x[r * cols + c]); }
};

}  // namespace castling::cuda

namespace castling::cuda {

namespace reduce {

// out[0] = sum of x[0..n) in double, in a fixed order (one block: thread t sums t, t + 1024, ...,
// then a tree), rounded to float32 once.
template <int Threads = 1024>
__global__ void sumAllKernel(const float* x, std::int64_t n, float* out) {
  CASTLING_SHARED(double, shared, [Threads]);
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += Threads) s += double(x[i]);
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int width = Threads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = float(shared[0]);
}

}  // namespace reduce

// out[0] = sum(x[0..n)), deterministic (small n: the auxiliary branch's mass, one value per row).
inline void sumAll(const float* x, std::int64_t n, float* out) {
  launch(reduce::sumAllKernel<1024>, 1, 1024, 0, stream(), x, n, out);
  CASTLING_CUDA_CHECK_LAUNCH();
}

}  // namespace castling::cuda

namespace castling::cuda {

namespace reduce {

template <int Threads = 1024>
__global__ void sumAllDoubleKernel(const double* x, std::int64_t n, double scale, float* out) {
  CASTLING_SHARED(double, shared, [Threads]);
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += Threads) s += x[i];
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int width = Threads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = float(scale * shared[0]);
}

}  // namespace reduce

// out[0] = scale * sum(x[0..n)) of double partials, deterministic.
inline void sumAllDouble(const double* x, std::int64_t n, double scale, float* out) {
  launch(reduce::sumAllDoubleKernel<1024>, 1, 1024, 0, stream(), x, n, scale, out);
  CASTLING_CUDA_CHECK_LAUNCH();
}

}  // namespace castling::cuda
