// Training ops: softmax cross-entropy (forward and its gradient fused: the gradient is nearly
// free once the probabilities exist) and the AdamW update, applied in place.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "cpu_ops.h"
#include "dense_kernels.h"
#include "../ops/adamw_update.h"
#include "../ops/shape_checks.h"

namespace castling::cpu {

using namespace ops;

namespace {

// Mean over the batch of -sum_c q_c log softmax(logits)_c with q = (1 - s) onehot(label) + s / K.
// Outputs: loss [1], dlogits [B, K] (gradient of the mean loss), correct [1] (argmax == label).
std::vector<Tensor> crossEntropyOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "crossEntropy";
  Tensor logits = in.required(0, "logits").contiguous(), labels = in.required(1, "labels").contiguous();
  if (logits.rank() != 2 || logits.dim(1) < 1) fail(op, ": logits has shape ", shapeToString(logits.shape()), ", expected [batch, classes]");
  std::int64_t B = logits.dim(0), K = logits.dim(1);
  expectShape(op, "labels", labels, {B});
  double smoothing = attrs.number("labelSmoothing", 0.0);
  if (!(smoothing >= 0 && smoothing < 1)) fail(op, ": labelSmoothing is ", smoothing, ", expected a number in [0, 1)");
  for (std::int64_t b = 0; b < B; ++b) {
    float l = labels.data()[b];
    if (!(l >= 0 && l < float(K)) || l != std::floor(l)) {
      fail(op, ": labels[", b, "] is ", l, ", expected an integer class from 0 to ", K - 1);
    }
  }
  Tensor dlogits = Tensor::empty({B, K}), loss = Tensor::empty({1}), correct = Tensor::empty({1});
  double total = 0;
  std::int64_t hits = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const float* z = logits.data() + b * K;
    float* g = dlogits.data() + b * K;
    std::int64_t label = std::int64_t(labels.data()[b]), best = 0;
    double max = z[0];
    for (std::int64_t c = 0; c < K; ++c) {
      if (!std::isfinite(z[c])) fail(op, ": logits[", b, ", ", c, "] is ", z[c], ": the model produced NaN or infinity (diverged training?)");
      if (z[c] > max) max = z[c], best = c;
    }
    double sum = 0;
    for (std::int64_t c = 0; c < K; ++c) sum += std::exp(double(z[c]) - max);
    double lse = max + std::log(sum);
    double mean_logit = 0;
    for (std::int64_t c = 0; c < K; ++c) mean_logit += z[c];
    mean_logit /= double(K);
    total += lse - (1 - smoothing) * z[label] - smoothing * mean_logit;
    for (std::int64_t c = 0; c < K; ++c) {
      double target = smoothing / double(K) + (c == label ? 1 - smoothing : 0);
      g[c] = float((std::exp(double(z[c]) - lse) - target) / double(B));
    }
    hits += best == label;
  }
  loss.data()[0] = float(B ? total / double(B) : 0);
  correct.data()[0] = float(hits);
  return {loss, dlogits, correct};
}

// AdamW with decoupled weight decay, in place on param, m (first moment) and v (second moment):
//   g = grad * clipScale  (clipScale = min(1, maxGradNorm / sqrt(gradSquaredNorm)) when given)
//   param -= lr * weightDecay * param
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// with m and v kept out of the subnormal range (ops/adamw_update.h).
std::vector<Tensor> adamwOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "adamw";
  Tensor param = in.required(0, "param"), grad = in.required(1, "grad").contiguous();
  Tensor m = in.required(2, "m"), v = in.required(3, "v");
  // A plan recorded once reads the step's learning rate and step number from a small tensor
  // [lr, step] instead of attributes fixed at recording time.
  double lr = attrs.number("lr", 1e-3);
  std::int64_t step = attrs.integer("step", 1, 1, std::int64_t(1) << 50);
  if (const Tensor* schedule = in.optional(4)) {
    expectShape(op, "schedule", *schedule, {2});
    lr = schedule->data()[0];
    double s = schedule->data()[1];
    // The same range as the step attribute: past it the conversion to an integer is undefined.
    if (!(s >= 1 && s <= double(std::int64_t(1) << 50)) || s != std::floor(s)) {
      fail(op, ": schedule step is ", s, ", expected an integer from 1 to 2^50");
    }
    step = std::int64_t(s);
  }
  float clip = 1.0f;
  if (const Tensor* norm2 = in.optional(5)) {
    expectShape(op, "gradSquaredNorm", *norm2, {1});
    double max_norm = attrs.number("maxGradNorm", 0.0);
    double norm = std::sqrt(double(norm2->data()[0]));
    if (!std::isfinite(norm)) fail(op, ": the gradient norm is ", norm, " (NaN or infinity: diverged training?)");
    if (max_norm > 0 && norm > max_norm) clip = float(max_norm / norm);
  }
  for (const Tensor* t : {&param, &m, &v})
    if (!t->isContiguous()) fail(op, ": param, m and v must be contiguous (they are updated in place)");
  expectShape(op, "grad", grad, param.shape());
  expectShape(op, "m", m, param.shape());
  expectShape(op, "v", v, param.shape());
  double b1 = attrs.number("beta1", 0.9), b2 = attrs.number("beta2", 0.999);
  double eps = attrs.number("eps", 1e-8), wd = attrs.number("weightDecay", 0.0);
  if (!(lr >= 0) || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) || !(eps > 0) || !(wd >= 0)) {
    fail(op, ": expected lr >= 0, beta1 and beta2 in [0, 1), eps > 0 and weightDecay >= 0; got lr=", lr, " beta1=", b1,
         " beta2=", b2, " eps=", eps, " weightDecay=", wd);
  }
  const AdamwStep s = adamwStep(lr, b1, b2, eps, wd, double(step), clip);
  // Updated in place through mutable copies of the handles, whose accessors record the write
  // (a linear layer's packed form of the weight is then rebuilt: Storage::derived).
  Tensor param_out = param, m_out = m, v_out = v;
  float *p = param_out.data(), *mm = m_out.data(), *vv = v_out.data();
  const float* g = grad.data();
  ThreadPool::global().parallelFor(param.numel(), 1 << 14, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) adamwUpdate(s, g[i], p[i], mm[i], vv[i]);
  });
  return {};
}

// Knowledge distillation from a teacher's logits (Sparsifiner's stage 2 learns from the dense
// model it was made from): weight * T^2 * mean over the batch of KL(softmax(t/T) || softmax(z/T)).
// Outputs [loss (1), dlogits (B, K)]; the gradient is weight * T * (softmax(z/T) - softmax(t/T)) / B.
std::vector<Tensor> distillationOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "distillation";
  Tensor z = in.required(0, "logits").contiguous(), t = in.required(1, "teacherLogits").contiguous();
  if (z.rank() != 2) fail(op, ": logits has shape ", shapeToString(z.shape()), ", expected [batch, classes]");
  expectShape(op, "teacherLogits", t, z.shape());
  double T = attrs.number("temperature", 1.0), weight = attrs.number("weight", 1.0);
  if (!(T > 0) || !(weight >= 0)) fail(op, ": expected temperature > 0 and weight >= 0, got ", T, " and ", weight);
  std::int64_t B = z.dim(0), K = z.dim(1);
  Tensor loss = Tensor::empty({1}), dlogits = Tensor::empty({B, K});
  std::vector<double> ps(static_cast<std::size_t>(K)), pt(static_cast<std::size_t>(K));
  auto softmaxT = [&](const float* x, std::vector<double>& p) {
    double max = -INFINITY, sum = 0;
    for (std::int64_t c = 0; c < K; ++c) max = std::max(max, double(x[c]) / T);
    for (std::int64_t c = 0; c < K; ++c) sum += p[std::size_t(c)] = std::exp(double(x[c]) / T - max);
    for (auto& v : p) v /= sum;
  };
  double total = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    softmaxT(z.data() + b * K, ps);
    softmaxT(t.data() + b * K, pt);
    for (std::int64_t c = 0; c < K; ++c) {
      double s = ps[std::size_t(c)], q = pt[std::size_t(c)];
      if (q > 0) total += q * (std::log(q) - std::log(std::max(s, 1e-300)));
      dlogits.data()[b * K + c] = float(weight * T * (s - q) / double(B));
    }
  }
  loss.data()[0] = float(B ? weight * T * T * total / double(B) : 0);
  return {loss, dlogits};
}

// acc + sum(x^2) as a [1] tensor (acc optional): chained over all gradients it gives the squared
// global norm for clipping. Summed in double so the order of a few million squares does not matter.
std::vector<Tensor> sumSquaresOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  double total = 0;
  if (const Tensor* acc = in.optional(1)) {
    expectShape("sumSquares", "acc", *acc, {1});
    total = acc->data()[0];
  }
  const float* v = x.data();
  for (std::int64_t i = 0; i < x.numel(); ++i) total += double(v[i]) * double(v[i]);
  Tensor out = Tensor::empty({1});
  out.data()[0] = float(total);
  return {out};
}

// x [B, ...] times scale[b] for each batch item: drop-path (stochastic depth) scales each image's
// residual branch by 0 or 1/(1-p), and its backward scales the gradient the same way.
std::vector<Tensor> scaleBatchOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous(), scale = in.required(1, "scale").contiguous();
  expectRankAtLeast("scaleBatch", "x", x, 1);
  expectShape("scaleBatch", "scale", scale, {x.dim(0)});
  Tensor out = Tensor::empty(x.shape());
  std::int64_t per = x.dim(0) ? x.numel() / x.dim(0) : 0;
  const DenseKernels& kt = denseKernels();
  for (std::int64_t b = 0; b < x.dim(0); ++b) kt.scale(x.data() + b * per, scale.data()[b], out.data() + b * per, per);
  return {out};
}

}  // namespace

void registerTrainOps(OpRegistry& r) {
  r.add("crossEntropy", {"logits", "labels"}, crossEntropyOp);
  r.add("adamw", {"param", "grad", "m", "v", "schedule", "gradSquaredNorm"}, adamwOp);
  r.add("sumSquares", {"x", "acc"}, sumSquaresOp);
  r.add("distillation", {"logits", "teacherLogits"}, distillationOp);
  r.add("scaleBatch", {"x", "scale"}, scaleBatchOp);
}

}  // namespace castling::cpu
