// Elementwise and row-wise ops: add, scale, GELU, softmax over the last axis, LayerNorm over the
// last axis. Forward and backward of each side by side; the arithmetic is in elementwise.inc.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/thread_pool.h"
#include "cpu_ops.h"
#include "dense_kernels.h"
#include "../ops/shape_checks.h"

namespace castling::cpu {

using namespace ops;

namespace {

// Elementwise work is memory-bound: split it only into chunks big enough to be worth a thread.
constexpr std::int64_t kElementGrain = 1 << 15;

std::int64_t rowGrain(std::int64_t cols) { return std::max<std::int64_t>(1, kElementGrain / std::max<std::int64_t>(cols, 1)); }

std::vector<Tensor> addOp(const OpInputs& in, const Attrs&) {
  Tensor a = in.required(0, "a").contiguous(), b = in.required(1, "b").contiguous();
  // b either matches a, or is a trailing block of a's shape repeated over the leading axes
  // (a bias row added to every row, say).
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  bool suffix = bs.size() <= as.size() && std::equal(bs.begin(), bs.end(), as.end() - bs.size());
  if (!suffix) {
    fail("add: b has shape ", shapeToString(bs), ", expected ", shapeToString(as),
         " or a trailing part of it");
  }
  Tensor out = Tensor::empty(as);
  const DenseKernels& kt = denseKernels();
  std::int64_t block = b.numel();
  if (block == a.numel()) {
    ThreadPool::global().parallelFor(a.numel(), kElementGrain, [&](std::int64_t s, std::int64_t e) {
      kt.add(a.data() + s, b.data() + s, out.data() + s, e - s);
    });
  } else if (block > 0) {
    std::int64_t repeats = a.numel() / block;
    ThreadPool::global().parallelFor(repeats, rowGrain(block), [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t r = s; r < e; ++r)
        kt.add(a.data() + r * block, b.data(), out.data() + r * block, block);
    });
  }
  return {out};
}

std::vector<Tensor> scaleOp(const OpInputs& in, const Attrs& attrs) {
  Tensor a = in.required(0, "a").contiguous();
  if (!attrs.has("scale")) fail("scale: attribute 'scale' is missing");
  float s = float(attrs.number("scale", 1.0));
  Tensor out = Tensor::empty(a.shape());
  const DenseKernels& kt = denseKernels();
  ThreadPool::global().parallelFor(a.numel(), kElementGrain, [&](std::int64_t b, std::int64_t e) {
    kt.scale(a.data() + b, s, out.data() + b, e - b);
  });
  return {out};
}

std::vector<Tensor> geluOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  Tensor y = Tensor::empty(x.shape());
  const DenseKernels& kt = denseKernels();
  ThreadPool::global().parallelFor(x.numel(), kElementGrain / 4, [&](std::int64_t b, std::int64_t e) {
    kt.gelu(x.data() + b, y.data() + b, e - b);
  });
  return {y};
}

std::vector<Tensor> geluBackwardOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous(), dy = in.required(1, "dy").contiguous();
  expectShape("geluBackward", "dy", dy, x.shape());
  Tensor dx = Tensor::empty(x.shape());
  const DenseKernels& kt = denseKernels();
  ThreadPool::global().parallelFor(x.numel(), kElementGrain / 4, [&](std::int64_t b, std::int64_t e) {
    kt.geluBackward(x.data() + b, dy.data() + b, dx.data() + b, e - b);
  });
  return {dx};
}

std::vector<Tensor> softmaxOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  expectRankAtLeast("softmax", "x", x, 1);
  Tensor y = Tensor::empty(x.shape());
  std::int64_t rows = rowsOf(x), cols = colsOf(x);
  const DenseKernels& kt = denseKernels();
  ThreadPool::global().parallelFor(rows, rowGrain(cols), [&](std::int64_t b, std::int64_t e) {
    kt.softmaxRows(x.data() + b * cols, y.data() + b * cols, e - b, cols);
  });
  return {y};
}

std::vector<Tensor> softmaxBackwardOp(const OpInputs& in, const Attrs&) {
  Tensor y = in.required(0, "y").contiguous(), dy = in.required(1, "dy").contiguous();
  expectRankAtLeast("softmaxBackward", "y", y, 1);
  expectShape("softmaxBackward", "dy", dy, y.shape());
  Tensor dx = Tensor::empty(y.shape());
  std::int64_t rows = rowsOf(y), cols = colsOf(y);
  const DenseKernels& kt = denseKernels();
  ThreadPool::global().parallelFor(rows, rowGrain(cols), [&](std::int64_t b, std::int64_t e) {
    kt.softmaxRowsBackward(y.data() + b * cols, dy.data() + b * cols, dx.data() + b * cols, e - b, cols);
  });
  return {dx};
}

Shape rowShape(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 1); }

std::vector<Tensor> layerNormOp(const OpInputs& in, const Attrs& attrs) {
  Tensor x = in.required(0, "x").contiguous();
  expectRankAtLeast("layerNorm", "x", x, 1);
  std::int64_t rows = rowsOf(x), cols = colsOf(x);
  Tensor gamma = in.required(1, "weight").contiguous(), beta = in.required(2, "bias").contiguous();
  expectShape("layerNorm", "weight", gamma, {cols});
  expectShape("layerNorm", "bias", beta, {cols});
  float eps = float(attrs.number("eps", 1e-6));
  if (!(eps > 0)) fail("layerNorm: eps is ", eps, ", expected a positive number");
  Tensor y = Tensor::empty(x.shape());
  Tensor mean = Tensor::empty(rowShape(x)), rstd = Tensor::empty(rowShape(x));
  const DenseKernels& kt = denseKernels();
  ThreadPool::global().parallelFor(rows, rowGrain(cols), [&](std::int64_t b, std::int64_t e) {
    kt.layerNormRows(x.data() + b * cols, gamma.data(), beta.data(), y.data() + b * cols,
                     mean.data() + b, rstd.data() + b, e - b, cols, eps);
  });
  return {y, mean, rstd};
}

std::vector<Tensor> layerNormBackwardOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  expectRankAtLeast("layerNormBackward", "x", x, 1);
  std::int64_t rows = rowsOf(x), cols = colsOf(x);
  Tensor gamma = in.required(1, "weight").contiguous();
  Tensor mean = in.required(2, "mean").contiguous(), rstd = in.required(3, "rstd").contiguous();
  Tensor dy = in.required(4, "dy").contiguous();
  expectShape("layerNormBackward", "weight", gamma, {cols});
  expectShape("layerNormBackward", "mean", mean, rowShape(x));
  expectShape("layerNormBackward", "rstd", rstd, rowShape(x));
  expectShape("layerNormBackward", "dy", dy, x.shape());
  // The gradient that reaches x around the norm (a residual connection), added to dx.
  Tensor passed;
  if (const Tensor* p = in.optional(5)) {
    passed = p->contiguous();
    expectShape("layerNormBackward", "dresidual", passed, x.shape());
  }
  Tensor dx = Tensor::empty(x.shape());
  // dgamma and dbeta sum over rows: each worker sums its rows into its own partial, and the
  // partials are added in worker order, so the result does not depend on thread timing.
  ThreadPool& pool = ThreadPool::global();
  int workers = int(std::min<std::int64_t>(pool.threads(), std::max<std::int64_t>(1, rows / rowGrain(cols))));
  Tensor partial = Tensor::zeros({std::int64_t(workers), 2, cols});
  const DenseKernels& kt = denseKernels();
  pool.run(workers, [&](int w) {
    std::int64_t b = rows * w / workers, e = rows * (w + 1) / workers;
    float* dgamma = partial.data() + std::int64_t(w) * 2 * cols;
    kt.layerNormRowsBackward(x.data() + b * cols, gamma.data(), mean.data() + b, rstd.data() + b,
                             dy.data() + b * cols, passed.defined() ? passed.data() + b * cols : nullptr,
                             dx.data() + b * cols, dgamma, dgamma + cols,
                             e - b, cols);
  });
  Tensor dgamma = Tensor::zeros({cols}), dbeta = Tensor::zeros({cols});
  for (int w = 0; w < workers; ++w) {
    const float* p = partial.data() + std::int64_t(w) * 2 * cols;
    kt.add(dgamma.data(), p, dgamma.data(), cols);
    kt.add(dbeta.data(), p + cols, dbeta.data(), cols);
  }
  return {dx, dgamma, dbeta};
}

// Throws when x holds a NaN or an infinity, naming the first such element: a model checks its
// input with it before spending a forward pass on values that can only give garbage. The scan is
// split over the pool (a batch of images is megabytes: on one thread it was the largest serial
// section of a predict); each chunk stops at its first bad element and the smallest index wins,
// so the message names the same element whatever the thread count.
std::vector<Tensor> checkFiniteOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  const float* v = x.data();
  const std::int64_t n = x.numel();
  std::atomic<std::int64_t> first{n};
  ThreadPool::global().parallelFor(n, kElementGrain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e && i < first.load(std::memory_order_relaxed); ++i) {
      if (std::isfinite(v[i])) continue;
      std::int64_t seen = first.load(std::memory_order_relaxed);
      while (i < seen && !first.compare_exchange_weak(seen, i, std::memory_order_relaxed)) {
      }
      return;
    }
  });
  const std::int64_t i = first.load();
  if (i < n) {
    fail("checkFinite: element ", i, " is ", std::isnan(v[i]) ? "NaN" : v[i] > 0 ? "Infinity" : "-Infinity",
         ", expected a finite number");
  }
  return {};
}

}  // namespace

void registerElementwiseOps(OpRegistry& r) {
  r.add("checkFinite", {"x"}, checkFiniteOp);
  r.add("add", {"a", "b"}, addOp);
  r.add("scale", {"a"}, scaleOp);
  r.add("gelu", {"x"}, geluOp);
  r.add("geluBackward", {"x", "dy"}, geluBackwardOp);
  r.add("softmax", {"x"}, softmaxOp);
  r.add("softmaxBackward", {"y", "dy"}, softmaxBackwardOp);
  r.add("layerNorm", {"x", "weight", "bias"}, layerNormOp);
  r.add("layerNormBackward", {"x", "weight", "mean", "rstd", "dy", "dresidual"}, layerNormBackwardOp);
}

}  // namespace castling::cpu
