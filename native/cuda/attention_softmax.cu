// Softmax attention on the GPU (the CPU's attention_softmax.cpp): y = softmax(scale q k^T) v per
// head through the flash kernels (flash.cu), saving each row's log-sum-exp for the backward.
// The forward takes float32, bfloat16 or float16 q, k, v (lse float32); the backward float32.
#include <cmath>
#include <vector>

#include "../ops/heads_shape.h"
#include "../ops/shape_checks.h"
#include "cuda_kernels.cuh"
#include "cuda_ops.h"
#include "flash.h"

namespace castling::cuda {

using ops::expectQkvHeads;
using ops::expectShape;
using ops::HeadsShape;

namespace {

float scaleAttr(const Attrs& attrs, const char* op, std::int64_t width) {
  float scale = float(attrs.number("scale", 1.0 / std::sqrt(double(width))));
  if (!std::isfinite(scale)) fail(op, ": scale is ", scale, ", expected a finite number");
  return scale;
}

// D_n = dy_n . y_n, one warp per row.
__global__ void rowDotKernel(const float* a, const float* b, float* out, std::int64_t rows, std::int64_t d) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float s = 0.0f;
  for (std::int64_t c = lane; c < d; c += 32) s += a[row * d + c] * b[row * d + c];
  s = warpSum(s);
  if (lane == 0) out[row] = s;
}

std::vector<Tensor> attentionSoftmaxOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionSoftmax";
  Tensor q = in.required(0, "q").contiguous(), k = in.required(1, "k").contiguous(), v = in.required(2, "v").contiguous();
  HeadsShape s = expectQkvHeads(op, q, k, v);
  expectSameDType(op, "k", k, q.dtype());
  expectSameDType(op, "v", v, q.dtype());
  float scale = scaleAttr(attrs, op, s.width);
  Tensor y = deviceEmpty(s.full(), q.dtype()), lse = deviceEmpty(s.perToken());
  FlashForward f;
  f.q = q.raw();
  f.k = k.raw();
  f.v = v.raw();
  f.out = y.raw();
  f.lse = lse.data();
  f.heads = s.count();
  f.n = s.tokens;
  f.d = s.width;
  f.scale = scale;
  f.dtype = q.dtype();
  flashForward(f);
  return {y, lse};
}

std::vector<Tensor> attentionSoftmaxBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionSoftmaxBackward";
  Tensor q = in.required(0, "q").contiguous(), k = in.required(1, "k").contiguous(), v = in.required(2, "v").contiguous(),
         y = in.required(3, "y").contiguous(), lse = in.required(4, "lse").contiguous(), dy = in.required(5, "dy").contiguous();
  HeadsShape s = expectQkvHeads(op, q, k, v);
  expectShape(op, "y", y, s.full());
  expectShape(op, "lse", lse, s.perToken());
  expectShape(op, "dy", dy, s.full());
  for (const Tensor* t : {&q, &k, &v, &y, &lse, &dy}) expectFloat32(op, "q, k, v, y, lse and dy", *t);
  float scale = scaleAttr(attrs, op, s.width);
  std::int64_t rows = s.count() * s.tokens;
  Tensor rowTerm = deviceEmpty(s.perToken());
  launch(rowDotKernel, gridForRows(rows), kThreads, 0, stream(), dy.data(), y.data(), rowTerm.data(), rows, s.width);
  CASTLING_CUDA_CHECK_LAUNCH();
  Tensor dq = deviceZeros(s.full()), dk = deviceZeros(s.full()), dv = deviceZeros(s.full());
  FlashBackward b;
  b.q = q.data();
  b.k = k.data();
  b.v = v.data();
  b.dout = dy.data();
  b.lse = lse.data();
  b.rowTerm = rowTerm.data();
  b.dq = dq.data();
  b.dk = dk.data();
  b.dv = dv.data();
  b.heads = s.count();
  b.n = s.tokens;
  b.d = s.width;
  b.scale = scale;
  flashBackward(b);
  return {dq, dk, dv};
}

}  // namespace

void registerAttentionSoftmaxOps(OpRegistry& r) {
  r.add(Device::Cuda, "attentionSoftmax", {"q", "k", "v"}, attentionSoftmaxOp);
  r.add(Device::Cuda, "attentionSoftmaxBackward", {"q", "k", "v", "y", "lse", "dy"}, attentionSoftmaxBackwardOp);
}

}  // namespace castling::cuda
