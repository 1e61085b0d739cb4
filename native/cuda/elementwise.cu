// Elementwise and row-wise ops on the GPU (the CPU's ops_elementwise.cpp): add, scale, GELU,
// softmax over the last axis, LayerNorm over the last axis, plus cast (float32 <-> bfloat16 /
// float16, CUDA only) and checkFinite. float32, bfloat16 and float16 storage; float32 arithmetic.
// LayerNorm's weight, bias, mean and rstd stay float32 whatever x is (mixed precision keeps the
// parameters and statistics in float32).
#include <cmath>
#include <vector>

#include "../ops/shape_checks.h"
#include "cuda_kernels.cuh"
#include "cuda_math.cuh"
#include "cuda_ops.h"
#include "cuda_reduce.cuh"

namespace castling::cuda {

using ops::colsOf;
using ops::expectRankAtLeast;
using ops::expectShape;
using ops::rowsOf;

namespace {

// ---- add, scale, cast ----

template <typename T>
__global__ void addKernel(const T* a, const T* b, T* out, std::int64_t n, std::int64_t block) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = fromFloat<T>(toFloat(a[i]) + toFloat(b[block == n ? i : i % block]));
}

template <typename T>
__global__ void scaleKernel(const T* a, float s, T* out, std::int64_t n) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = fromFloat<T>(toFloat(a[i]) * s);
}

template <typename From, typename To>
__global__ void castKernel(const From* x, To* y, std::int64_t n) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = fromFloat<To>(toFloat(x[i]));
}

std::vector<Tensor> addOp(const OpInputs& in, const Attrs&) {
  Tensor a = in.required(0, "a").contiguous(), b = in.required(1, "b").contiguous();
  expectSameDType("add", "b", b, a.dtype());
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  bool suffix = bs.size() <= as.size() && std::equal(bs.begin(), bs.end(), as.end() - bs.size());
  if (!suffix) fail("add: b has shape ", shapeToString(bs), ", expected ", shapeToString(as), " or a trailing part of it");
  Tensor out = deviceEmpty(as, a.dtype());
  if (a.numel() == 0 || b.numel() == 0) return {out};
  withDType(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(addKernel<T>, gridFor(a.numel()), kThreads, 0, stream(), static_cast<const T*>(a.raw()), static_cast<const T*>(b.raw()),
                                                               static_cast<T*>(out.raw()), a.numel(), b.numel());
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {out};
}

std::vector<Tensor> scaleOp(const OpInputs& in, const Attrs& attrs) {
  Tensor a = in.required(0, "a").contiguous();
  if (!attrs.has("scale")) fail("scale: attribute 'scale' is missing");
  float s = float(attrs.number("scale", 1.0));
  Tensor out = deviceEmpty(a.shape(), a.dtype());
  if (a.numel() == 0) return {out};
  withDType(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(scaleKernel<T>, gridFor(a.numel()), kThreads, 0, stream(), static_cast<const T*>(a.raw()), s, static_cast<T*>(out.raw()),
                                                                 a.numel());
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {out};
}

// attrs dtype: 0 float32, 1 bfloat16, 2 float16. One output: x converted (round to nearest even).
std::vector<Tensor> castOp(const OpInputs& in, const Attrs& attrs) {
  Tensor x = in.required(0, "x").contiguous();
  return {castTensor(x, DType(attrs.integer("dtype", 0, 0, 2)))};
}

// ---- GELU ----

template <typename T>
__global__ void geluKernel(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = fromFloat<T>(devmath::gelu(toFloat(x[i])));
}

template <typename T>
__global__ void geluBackwardKernel(const T* x, const T* dy, T* dx, std::int64_t n) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    dx[i] = fromFloat<T>(toFloat(dy[i]) * devmath::geluDerivative(toFloat(x[i])));
}

std::vector<Tensor> geluOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  Tensor y = deviceEmpty(x.shape(), x.dtype());
  if (x.numel() == 0) return {y};
  withDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(geluKernel<T>, gridFor(x.numel()), kThreads, 0, stream(), static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), x.numel());
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {y};
}

std::vector<Tensor> geluBackwardOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous(), dy = in.required(1, "dy").contiguous();
  expectShape("geluBackward", "dy", dy, x.shape());
  expectSameDType("geluBackward", "dy", dy, x.dtype());
  Tensor dx = deviceEmpty(x.shape(), x.dtype());
  if (x.numel() == 0) return {dx};
  withDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(geluBackwardKernel<T>, gridFor(x.numel()), kThreads, 0, stream(),
        static_cast<const T*>(x.raw()), static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), x.numel());
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {dx};
}

// ---- softmax over rows: one warp per row ----

template <typename T>
__global__ void softmaxRowsKernel(const T* x, T* y, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  float mx = -INFINITY;
  for (std::int64_t c = lane; c < cols; c += 32) mx = fmaxf(mx, toFloat(xr[c]));
  mx = warpMax(mx);
  if (mx == -INFINITY) {  // a fully masked row: zeros, as on the CPU
    for (std::int64_t c = lane; c < cols; c += 32) yr[c] = fromFloat<T>(0.0f);
    return;
  }
  float sum = 0.0f;
  for (std::int64_t c = lane; c < cols; c += 32) sum += expf(toFloat(xr[c]) - mx);
  float inv = 1.0f / warpSum(sum);
  for (std::int64_t c = lane; c < cols; c += 32) yr[c] = fromFloat<T>(expf(toFloat(xr[c]) - mx) * inv);
}

template <typename T>
__global__ void softmaxRowsBackwardKernel(const T* y, const T* dy, T* dx, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T *yr = y + row * cols, *gr = dy + row * cols;
  float dot = 0.0f;
  for (std::int64_t c = lane; c < cols; c += 32) dot += toFloat(yr[c]) * toFloat(gr[c]);
  dot = warpSum(dot);
  for (std::int64_t c = lane; c < cols; c += 32) dx[row * cols + c] = fromFloat<T>(toFloat(yr[c]) * (toFloat(gr[c]) - dot));
}

std::vector<Tensor> softmaxOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  expectRankAtLeast("softmax", "x", x, 1);
  Tensor y = deviceEmpty(x.shape(), x.dtype());
  std::int64_t rows = rowsOf(x), cols = colsOf(x);
  if (x.numel() == 0) return {y};
  withDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(softmaxRowsKernel<T>, gridForRows(rows), kThreads, 0, stream(), static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), rows, cols);
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {y};
}

std::vector<Tensor> softmaxBackwardOp(const OpInputs& in, const Attrs&) {
  Tensor y = in.required(0, "y").contiguous(), dy = in.required(1, "dy").contiguous();
  expectRankAtLeast("softmaxBackward", "y", y, 1);
  expectShape("softmaxBackward", "dy", dy, y.shape());
  expectSameDType("softmaxBackward", "dy", dy, y.dtype());
  Tensor dx = deviceEmpty(y.shape(), y.dtype());
  std::int64_t rows = rowsOf(y), cols = colsOf(y);
  if (y.numel() == 0) return {dx};
  withDType(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(softmaxRowsBackwardKernel<T>, gridForRows(rows), kThreads, 0, stream(),
        static_cast<const T*>(y.raw()), static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), rows, cols);
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {dx};
}

// ---- LayerNorm over rows: one warp per row ----

template <typename T>
__global__ void layerNormKernel(const T* x, const float* gamma, const float* beta, T* y, float* meanOut, float* rstdOut,
                                std::int64_t rows, std::int64_t cols, float eps) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* xr = x + row * cols;
  float sum = 0.0f;
  for (std::int64_t c = lane; c < cols; c += 32) sum += toFloat(xr[c]);
  const float mean = warpSum(sum) / float(cols);
  float dev = 0.0f;
  for (std::int64_t c = lane; c < cols; c += 32) {
    float t = toFloat(xr[c]) - mean;
    dev += t * t;
  }
  const float var = warpSum(dev) / float(cols);
  const float rstd = 1.0f / sqrtf(var + eps);
  if (lane == 0) {
    meanOut[row] = mean;
    rstdOut[row] = rstd;
  }
  for (std::int64_t c = lane; c < cols; c += 32)
    y[row * cols + c] = fromFloat<T>((toFloat(xr[c]) - mean) * rstd * gamma[c] + beta[c]);
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)) [+ passed] with g = dy gamma, xhat = (x - mean) rstd;
// `passed`, when given, is the gradient reaching x around the norm (a residual connection).
template <typename T>
__global__ void layerNormBackwardKernel(const T* x, const float* gamma, const float* mean, const float* rstd, const T* dy,
                                        const T* passed, T* dx, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T *xr = x + row * cols, *gr = dy + row * cols;
  const float m = mean[row], s = rstd[row];
  float sumG = 0.0f, sumGx = 0.0f;
  for (std::int64_t c = lane; c < cols; c += 32) {
    float g = toFloat(gr[c]) * gamma[c];
    sumG += g;
    sumGx += g * (toFloat(xr[c]) - m) * s;
  }
  const float meanG = warpSum(sumG) / float(cols), meanGx = warpSum(sumGx) / float(cols);
  for (std::int64_t c = lane; c < cols; c += 32) {
    float xhat = (toFloat(xr[c]) - m) * s;
    const float around = passed ? toFloat(passed[row * cols + c]) : 0.0f;
    dx[row * cols + c] = fromFloat<T>(s * (toFloat(gr[c]) * gamma[c] - meanG - xhat * meanGx) + around);
  }
}

// dgamma += dy xhat, dbeta += dy over the rows.
template <typename T>
struct LayerNormParamTerm {
  static constexpr int kTerms = 2;
  const T* x;
  const T* dy;
  const float* mean;
  const float* rstd;
  std::int64_t cols;
  __device__ void operator()(std::int64_t r, std::int64_t c, float* v) const {
    float g = toFloat(dy[r * cols + c]);
    v[0] = g * (toFloat(x[r * cols + c]) - mean[r]) * rstd[r];
    v[1] = g;
  }
};

Shape rowShape(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 1); }

std::vector<Tensor> layerNormOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "layerNorm";
  Tensor x = in.required(0, "x").contiguous();
  expectRankAtLeast(op, "x", x, 1);
  std::int64_t rows = rowsOf(x), cols = colsOf(x);
  Tensor gamma = in.required(1, "weight").contiguous(), beta = in.required(2, "bias").contiguous();
  expectShape(op, "weight", gamma, {cols});
  expectShape(op, "bias", beta, {cols});
  expectFloat32(op, "weight", gamma);
  expectFloat32(op, "bias", beta);
  float eps = float(attrs.number("eps", 1e-6));
  if (!(eps > 0)) fail("layerNorm: eps is ", eps, ", expected a positive number");
  Tensor y = deviceEmpty(x.shape(), x.dtype());
  Tensor mean = deviceEmpty(rowShape(x)), rstd = deviceEmpty(rowShape(x));
  if (rows == 0 || cols == 0) return {y, mean, rstd};
  withDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(layerNormKernel<T>, gridForRows(rows), kThreads, 0, stream(), static_cast<const T*>(x.raw()), gamma.data(), beta.data(),
                                                                    static_cast<T*>(y.raw()), mean.data(), rstd.data(), rows, cols, eps);
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {y, mean, rstd};
}

std::vector<Tensor> layerNormBackwardOp(const OpInputs& in, const Attrs&) {
  const char* op = "layerNormBackward";
  Tensor x = in.required(0, "x").contiguous();
  expectRankAtLeast(op, "x", x, 1);
  std::int64_t rows = rowsOf(x), cols = colsOf(x);
  Tensor gamma = in.required(1, "weight").contiguous();
  Tensor mean = in.required(2, "mean").contiguous(), rstd = in.required(3, "rstd").contiguous();
  Tensor dy = in.required(4, "dy").contiguous();
  expectShape(op, "weight", gamma, {cols});
  expectShape(op, "mean", mean, rowShape(x));
  expectShape(op, "rstd", rstd, rowShape(x));
  expectShape(op, "dy", dy, x.shape());
  expectFloat32(op, "weight", gamma);
  expectFloat32(op, "mean", mean);
  expectFloat32(op, "rstd", rstd);
  expectSameDType(op, "dy", dy, x.dtype());
  Tensor passed;
  if (const Tensor* p = in.optional(5)) {
    passed = p->contiguous();
    expectShape(op, "dresidual", passed, x.shape());
    expectSameDType(op, "dresidual", passed, x.dtype());
  }
  Tensor dx = deviceEmpty(x.shape(), x.dtype());
  Tensor dgamma = deviceZeros({cols}), dbeta = deviceZeros({cols});
  if (rows == 0 || cols == 0) return {dx, dgamma, dbeta};
  withDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw());
    const T* dyp = static_cast<const T*>(dy.raw());
    const T* passedp = passed.defined() ? static_cast<const T*>(passed.raw()) : nullptr;
    launch(layerNormBackwardKernel<T>, gridForRows(rows), kThreads, 0, stream(), xp, gamma.data(), mean.data(), rstd.data(), dyp,
           passedp, static_cast<T*>(dx.raw()), rows, cols);
    CASTLING_CUDA_CHECK_LAUNCH();
    columnSums(rows, cols, LayerNormParamTerm<T>{xp, dyp, mean.data(), rstd.data(), cols}, dgamma.data(), dbeta.data());
  });
  return {dx, dgamma, dbeta};
}

// ---- checkFinite: the first NaN or infinity, found on the device ----

template <typename T>
__global__ void firstNonFiniteKernel(const T* x, std::int64_t n, unsigned long long* first) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    if (!isfinite(toFloat(x[i]))) atomicMin(first, (unsigned long long)i);
}

// The first non-finite element found (if any) becomes the deferred error, unless one is pending.
template <typename T>
__global__ void reportNonFiniteKernel(const T* x, const unsigned long long* first, DeferredReport* report) {
  const unsigned long long i = *first;
  if (i == ~0ull || report->code != kNoDeferredError) return;
  report->code = kNonFiniteInput;
  report->index = i;
  report->value = toFloat(x[i]);
}

// Reports through the deferred error (cuda_context.h) instead of waiting for the device: the
// next synchronisation throws the CPU op's message (the addon waits at the end of a plan's run).
std::vector<Tensor> checkFiniteOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  if (x.numel() == 0) return {};
  Tensor slot = deviceEmpty({2});  // 8 bytes for the index
  auto* first = static_cast<unsigned long long*>(slot.raw());
  CASTLING_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream()));
  withDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch(firstNonFiniteKernel<T>, gridFor(x.numel()), kThreads, 0, stream(), static_cast<const T*>(x.raw()), x.numel(), first);
    launch(reportNonFiniteKernel<T>, 1, 1, 0, stream(), static_cast<const T*>(x.raw()), static_cast<const unsigned long long*>(first),
           deferredReport());
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return {};
}

}  // namespace

Tensor castTensor(const Tensor& source, DType dtype) {
  Tensor x = source.contiguous();
  if (x.dtype() == dtype) return x;
  Tensor y = deviceEmpty(x.shape(), dtype);
  if (x.numel() == 0) return y;
  withDType(x.dtype(), [&](auto from) {
    withDType(dtype, [&](auto to) {
      using From = decltype(from);
      using To = decltype(to);
      launch(castKernel<From, To>, gridFor(x.numel()), kThreads, 0, stream(), static_cast<const From*>(x.raw()),
                                                                         static_cast<To*>(y.raw()), x.numel());
    });
  });
  CASTLING_CUDA_CHECK_LAUNCH();
  return y;
}

void registerElementwiseOps(OpRegistry& r) {
  r.add(Device::Cuda, "checkFinite", {"x"}, checkFiniteOp);
  r.add(Device::Cuda, "add", {"a", "b"}, addOp);
  r.add(Device::Cuda, "scale", {"a"}, scaleOp);
  r.add(Device::Cuda, "cast", {"x"}, castOp);
  r.add(Device::Cuda, "gelu", {"x"}, geluOp);
  r.add(Device::Cuda, "geluBackward", {"x", "dy"}, geluBackwardOp);
  r.add(Device::Cuda, "softmax", {"x"}, softmaxOp);
  r.add(Device::Cuda, "softmaxBackward", {"y", "dy"}, softmaxBackwardOp);
  r.add(Device::Cuda, "layerNorm", {"x", "weight", "bias"}, layerNormOp);
  r.add(Device::Cuda, "layerNormBackward", {"x", "weight", "mean", "rstd", "dy", "dresidual"}, layerNormBackwardOp);
}

}  // namespace castling::cuda
