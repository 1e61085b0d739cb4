// Matrix products on the GPU (the CPU's ops_linear.cpp): matmul (batched, either operand
// transposed), linear (x W^T through cuBLAS, then one epilogue pass for bias, GELU and residual)
// and linear's backward (dx = dy W, dW = dy^T x, db = column sums of dy). Any of the three
// element types, the same for every input; accumulation in float32 (db too). linear also takes a
// 16-bit weight with float32 x, bias and residual (a model whose weights are stored in 16 bits):
// x is rounded to the weight's type for the GEMM, which accumulates into a float32 output.
#include <vector>

#include "../ops/shape_checks.h"
#include "cuda_blas.h"
#include "cuda_kernels.cuh"
#include "cuda_math.cuh"
#include "cuda_ops.h"
#include "cuda_reduce.cuh"

namespace castling::cuda {

using ops::expectRankAtLeast;
using ops::expectShape;
using ops::rowsOf;

namespace {

// out = act(out + bias) + residual, in place, row-major rows of `cols`.
template <typename T>
__global__ void epilogueKernel(T* out, const T* bias, const T* residual, bool applyGelu, std::int64_t n, std::int64_t cols) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    float v = toFloat(out[i]);
    if (bias) v += toFloat(bias[i % cols]);
    if (applyGelu) v = devmath::gelu(v);
    if (residual) v += toFloat(residual[i]);
    out[i] = fromFloat<T>(v);
  }
}

std::vector<Tensor> matmulOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "matmul";
  Tensor a = in.required(0, "a").contiguous(), b = in.required(1, "b").contiguous();
  expectSameDType(op, "b", b, a.dtype());
  bool transA = attrs.flag("transA", false), transB = attrs.flag("transB", false);
  float alpha = float(attrs.number("alpha", 1.0));
  expectRankAtLeast(op, "a", a, 2);
  expectRankAtLeast(op, "b", b, 2);
  std::int64_t M = transA ? a.dim(-1) : a.dim(-2), K = transA ? a.dim(-2) : a.dim(-1);
  std::int64_t Kb = transB ? b.dim(-1) : b.dim(-2), N = transB ? b.dim(-2) : b.dim(-1);
  if (K != Kb) {
    fail(op, ": inner dimensions differ: a ", shapeToString(a.shape()), (transA ? " (transposed)" : ""), " has K=", K, " but b ",
         shapeToString(b.shape()), (transB ? " (transposed)" : ""), " has K=", Kb);
  }
  Shape batch(a.shape().begin(), a.shape().end() - 2);
  bool sharedB = b.rank() == 2;
  if (!sharedB && Shape(b.shape().begin(), b.shape().end() - 2) != batch) {
    fail(op, ": b has shape ", shapeToString(b.shape()), ", expected a 2-D matrix or the batch dimensions ", shapeToString(batch),
         " of a followed by a matrix");
  }
  std::int64_t batches = 1;
  for (auto d : batch) batches *= d;
  Shape outShape = batch;
  outShape.push_back(M);
  outShape.push_back(N);
  Tensor out = deviceEmpty(outShape, a.dtype());
  if (sharedB && !transA) {
    // A stack of row-major matrices against one B is a single taller GEMM.
    Gemm g = denseGemm(batches * M, N, K, a.raw(), false, b.raw(), transB, out.raw(), a.dtype());
    g.alpha = alpha;
    gemm(g);
    return {out};
  }
  Gemm g = denseGemm(M, N, K, a.raw(), transA, b.raw(), transB, out.raw(), a.dtype());
  g.alpha = alpha;
  g.batch = batches;
  g.strideA = M * K;
  g.strideB = sharedB ? 0 : K * N;
  g.strideC = M * N;
  gemm(g);
  return {out};
}

std::vector<Tensor> linearOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "linear";
  Tensor x = in.required(0, "x").contiguous(), w = in.required(1, "weight").contiguous();
  // 16-bit weight storage: float32 activations meet a 16-bit weight (see the file's comment).
  const bool storedWeight = w.dtype() != DType::Float32 && x.dtype() == DType::Float32;
  if (!storedWeight) expectSameDType(op, "weight", w, x.dtype());
  expectRankAtLeast(op, "x", x, 1);
  if (w.rank() != 2) fail(op, ": weight has shape ", shapeToString(w.shape()), ", expected [out, in]");
  std::int64_t K = x.dim(-1), N = w.dim(0);
  if (w.dim(1) != K) {
    fail(op, ": weight has shape ", shapeToString(w.shape()), ", expected [", N, ", ", K, "] to match the last dimension of x ",
         shapeToString(x.shape()));
  }
  Shape outShape = x.shape();
  outShape.back() = N;
  Tensor out = deviceEmpty(outShape, x.dtype());
  Tensor bias, residual;
  if (const Tensor* b = in.optional(2)) {
    bias = b->contiguous();
    expectShape(op, "bias", bias, {N});
    expectSameDType(op, "bias", bias, x.dtype());
  }
  if (const Tensor* r = in.optional(3)) {
    residual = r->contiguous();
    expectShape(op, "residual", residual, outShape);
    expectSameDType(op, "residual", residual, x.dtype());
  }
  bool applyGelu = attrs.flag("gelu", false);
  Tensor gemmX = storedWeight ? castTensor(x, w.dtype()) : x;  // released after the GEMM is queued: the stream keeps the order
  Gemm product = denseGemm(rowsOf(x), N, K, gemmX.raw(), false, w.raw(), true, out.raw(), w.dtype());
  product.outDtype = x.dtype();
  gemm(product);
  if ((bias.defined() || residual.defined() || applyGelu) && out.numel() > 0) {
    withDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch(epilogueKernel<T>, gridFor(out.numel()), kThreads, 0, stream(),
          static_cast<T*>(out.raw()), bias.defined() ? static_cast<const T*>(bias.raw()) : nullptr,
          residual.defined() ? static_cast<const T*>(residual.raw()) : nullptr, applyGelu, out.numel(), N);
    });
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return {out};
}

// outputs [dx (like x; empty [0] when inputGrad is 0), dweight [out, in], dbias [out] float32 (when bias)].
std::vector<Tensor> linearBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "linearBackward";
  Tensor x = in.required(0, "x").contiguous(), w = in.required(1, "weight").contiguous();
  Tensor dy = in.required(2, "dy").contiguous();
  expectSameDType(op, "weight", w, x.dtype());
  expectSameDType(op, "dy", dy, x.dtype());
  expectRankAtLeast(op, "x", x, 1);
  if (w.rank() != 2 || w.dim(1) != x.dim(-1)) fail(op, ": weight has shape ", shapeToString(w.shape()), ", expected [out, ", x.dim(-1), "]");
  std::int64_t K = w.dim(1), N = w.dim(0), M = rowsOf(x);
  Shape dyShape = x.shape();
  dyShape.back() = N;
  expectShape(op, "dy", dy, dyShape);
  std::vector<Tensor> out;
  if (attrs.flag("inputGrad", true)) {
    Tensor dx = deviceEmpty(x.shape(), x.dtype());
    gemm(denseGemm(M, K, N, dy.raw(), false, w.raw(), false, dx.raw(), x.dtype()));  // dx = dy W
    out.push_back(dx);
  } else {
    out.push_back(deviceEmpty({0}));
  }
  Tensor dw = deviceEmpty(w.shape(), x.dtype());
  gemm(denseGemm(N, K, M, dy.raw(), true, x.raw(), false, dw.raw(), x.dtype()));  // dW = dy^T x
  out.push_back(dw);
  if (attrs.flag("bias", true)) {
    Tensor db = deviceEmpty({N});
    withDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      columnSums(M, N, MatrixTerm<T>{static_cast<const T*>(dy.raw()), N}, db.data());
    });
    out.push_back(db);
  }
  return out;
}

}  // namespace

void registerLinearOps(OpRegistry& r) {
  r.add(Device::Cuda, "matmul", {"a", "b"}, matmulOp);
  r.add(Device::Cuda, "linear", {"x", "weight", "bias", "residual"}, linearOp);
  r.add(Device::Cuda, "linearBackward", {"x", "weight", "dy"}, linearBackwardOp);
}

}  // namespace castling::cuda
