// Matrix products: matmul (batched, either operand transposed) and linear (x W^T + b with the
// GELU / residual epilogue fused into the GEMM, so the output is written once), and linear's
// backward (dx = dy W, dW = dy^T x, db = column sums of dy).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dense_kernels.h"

#include "cpu_ops.h"
#include "gemm.h"
#include "../ops/shape_checks.h"
#include "../core/thread_pool.h"

namespace castling::cpu {

using namespace ops;

namespace {

std::vector<Tensor> matmulOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "matmul";
  Tensor a = in.required(0, "a").contiguous(), b = in.required(1, "b").contiguous();
  bool trans_a = attrs.flag("transA", false), trans_b = attrs.flag("transB", false);
  float alpha = float(attrs.number("alpha", 1.0));
  expectRankAtLeast(op, "a", a, 2);
  expectRankAtLeast(op, "b", b, 2);
  std::int64_t M = trans_a ? a.dim(-1) : a.dim(-2), K = trans_a ? a.dim(-2) : a.dim(-1);
  std::int64_t Kb = trans_b ? b.dim(-1) : b.dim(-2), N = trans_b ? b.dim(-2) : b.dim(-1);
  if (K != Kb) {
    fail(op, ": inner dimensions differ: a ", shapeToString(a.shape()), (trans_a ? " (transposed)" : ""),
         " has K=", K, " but b ", shapeToString(b.shape()), (trans_b ? " (transposed)" : ""), " has K=", Kb);
  }
  Shape batch(a.shape().begin(), a.shape().end() - 2);
  bool shared_b = b.rank() == 2;
  if (!shared_b && Shape(b.shape().begin(), b.shape().end() - 2) != batch) {
    fail(op, ": b has shape ", shapeToString(b.shape()), ", expected a 2-D matrix or the batch dimensions ",
         shapeToString(batch), " of a followed by a matrix");
  }
  std::int64_t batches = 1;
  for (auto d : batch) batches *= d;
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape);

  if (shared_b && !trans_a) {
    // A stack of row-major matrices against one B is a single taller GEMM.
    GemmArgs g = denseGemm(batches * M, N, K, a.data(), false, b.data(), trans_b, out.data());
    g.alpha = alpha;
    sgemm(g);
    return {out};
  }
  for (std::int64_t i = 0; i < batches; ++i) {
    GemmArgs g = denseGemm(M, N, K, a.data() + i * M * K, trans_a, b.data() + (shared_b ? 0 : i * K * N), trans_b,
                           out.data() + i * M * N);
    g.alpha = alpha;
    sgemm(g);
  }
  return {out};
}

// The weight W (N x K) packed whole for the GEMM's B = W^T, kept with W's storage until W
// changes (Storage::derived). Batch-1 inference multiplies each weight by ~200 rows only, so
// packing it on every call (a transposing copy of every weight) was a tenth of the GEMM time.
std::shared_ptr<const Storage> packedWeight(const DenseKernels& kt, const Tensor& w, const GemmArgs& g) {
  std::string key = "linear.packedB nr=" + std::to_string(kt.nr) + " at " + std::to_string(w.storageOffset()) + " " +
                    std::to_string(g.N) + "x" + std::to_string(g.K);
  return w.storage()->derived(key, [&] {
    auto packed = std::make_shared<Storage>(packedBFloats(kt, g));
    packWholeB(kt, g, packed->data());
    return packed;
  });
}

std::vector<Tensor> linearOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "linear";
  Tensor x = in.required(0, "x").contiguous();
  const Tensor w = in.required(1, "weight").contiguous();  // const: read only (see packedWeight)
  expectRankAtLeast(op, "x", x, 1);
  if (w.rank() != 2) fail(op, ": weight has shape ", shapeToString(w.shape()), ", expected [out, in]");
  std::int64_t K = x.dim(-1), N = w.dim(0);
  if (w.dim(1) != K) {
    fail(op, ": weight has shape ", shapeToString(w.shape()), ", expected [", N, ", ", K,
         "] to match the last dimension of x ", shapeToString(x.shape()));
  }
  Shape out_shape = x.shape();
  out_shape.back() = N;
  Tensor out = Tensor::empty(out_shape);
  Tensor bias, residual;
  GemmArgs g = denseGemm(rowsOf(x), N, K, x.data(), false, w.data(), true, out.data());
  if (const Tensor* b = in.optional(2)) {
    bias = b->contiguous();
    expectShape(op, "bias", bias, {N});
    g.epilogue.bias = bias.data();
  }
  if (const Tensor* r = in.optional(3)) {
    residual = r->contiguous();
    expectShape(op, "residual", residual, out_shape);
    g.epilogue.residual = residual.data();
    g.epilogue.ldr = N;
  }
  g.epilogue.gelu = attrs.flag("gelu", false);
  const DenseKernels& kt = denseKernels();
  std::shared_ptr<const Storage> packed;
  if (g.M > 0 && g.N > 0 && g.K > 0) {
    packed = packedWeight(kt, w, g);
    g.packedB = packed->data();
    g.packedNr = kt.nr;
  }
  sgemm(kt, g, ThreadPool::global().threads());
  return {out};
}

// Column sums of x [rows, cols] into out [cols] (a bias gradient), the same bits on any thread
// count: fixed blocks of kRowsPerBlock rows, each summed in row order into its own partial over the
// pool, then the partials added in block order. Each block is read as it lies in memory; splitting
// by columns instead (every thread walking all the rows, a few cache lines of each) read dy rows
// 6 KB apart at fc1's width and cost 28 ms of a 284 ms linearBackward at a batch of 32 images.
void columnSums(const DenseKernels& kt, const float* x, std::int64_t rows, std::int64_t cols, float* out) {
  constexpr std::int64_t kRowsPerBlock = 128;
  std::fill(out, out + cols, 0.0f);
  if (rows == 0 || cols == 0) return;
  const std::int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  Tensor partial = Tensor::empty({blocks, cols});
  ThreadPool::global().parallelFor(blocks, std::max<std::int64_t>(1, (1 << 15) / (kRowsPerBlock * cols)), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      float* sum = partial.data() + b * cols;
      const std::int64_t first = b * kRowsPerBlock, last = std::min(rows, first + kRowsPerBlock);
      std::memcpy(sum, x + first * cols, std::size_t(cols) * sizeof(float));
      addRowsInto(kt, x + (first + 1) * cols, last - first - 1, cols, sum);
    }
  });
  addRowsInto(kt, partial.data(), blocks, cols, out);
}

// inputs (x [..., in], weight [out, in], dy [..., out]); attrs inputGrad (1), bias (1).
// outputs [dx (like x; empty [0] when inputGrad is 0), dweight [out, in], dbias [out] (when bias)].
// The leading dimensions of x and dy are flattened: dW sums over every row of the batch.
std::vector<Tensor> linearBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "linearBackward";
  Tensor x = in.required(0, "x").contiguous();
  const Tensor w = in.required(1, "weight").contiguous();  // const: reading keeps its packed form
  Tensor dy = in.required(2, "dy").contiguous();
  expectRankAtLeast(op, "x", x, 1);
  if (w.rank() != 2 || w.dim(1) != x.dim(-1)) {
    fail(op, ": weight has shape ", shapeToString(w.shape()), ", expected [out, ", x.dim(-1), "]");
  }
  std::int64_t K = w.dim(1), N = w.dim(0), M = rowsOf(x);
  Shape dy_shape = x.shape();
  dy_shape.back() = N;
  expectShape(op, "dy", dy, dy_shape);
  std::vector<Tensor> out;
  if (attrs.flag("inputGrad", true)) {
    Tensor dx = Tensor::empty(x.shape());
    sgemm(denseGemm(M, K, N, dy.data(), false, w.data(), false, dx.data()));  // dx = dy W
    out.push_back(dx);
  } else {
    out.push_back(Tensor::empty({0}));
  }
  Tensor dw = Tensor::empty(w.shape());
  sgemm(denseGemm(N, K, M, dy.data(), true, x.data(), false, dw.data()));  // dW = dy^T x
  out.push_back(dw);
  if (attrs.flag("bias", true)) {
    Tensor db = Tensor::empty({N});
    columnSums(denseKernels(), dy.data(), M, N, db.data());
    out.push_back(db);
  }
  return out;
}

}  // namespace

void registerLinearOps(OpRegistry& r) {
  r.add("matmul", {"a", "b"}, matmulOp);
  r.add("linear", {"x", "weight", "bias", "residual"}, linearOp);
  r.add("linearBackward", {"x", "weight", "dy"}, linearBackwardOp);
}

}  // namespace castling::cpu
