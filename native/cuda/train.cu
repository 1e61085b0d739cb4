// Training ops on the GPU (the CPU's ops_train.cpp): softmax cross-entropy with its gradient
// fused, AdamW in place (reading the learning rate and step from the schedule tensor on the
// device, so a recorded plan needs no host values), the squared gradient norm, distillation and
// drop-path's per-image scaling. float32. Sums over the batch or over a tensor are reduced in a
// fixed order (no atomics) so that the results do not depend on scheduling.
#include <cmath>
#include <vector>

#include "../ops/adamw_update.h"
#include "../ops/shape_checks.h"
#include "cuda_kernels.cuh"
#include "cuda_ops.h"

namespace castling::cuda {

using ops::expectRankAtLeast;
using ops::expectShape;

namespace {

// ---- a deterministic sum of per-row (or per-block) double partials ----

constexpr int kSumThreads = 256;

// out[0] = (acc ? acc[0] : 0) + scale * sum(parts[0..n)), in a fixed order: thread t sums
// parts t, t + 256, ... and the 256 partial sums are added as a tree.
__global__ void sumPartsKernel(const double* parts, std::int64_t n, double scale, const float* acc, float* out) {
  CASTLING_SHARED(double, shared, [kSumThreads]);
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += kSumThreads) s += parts[i];
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int width = kSumThreads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = float((acc ? double(acc[0]) : 0.0) + scale * shared[0]);
}

void sumParts(const double* parts, std::int64_t n, double scale, const float* acc, float* out) {
  launch(sumPartsKernel, 1, kSumThreads, 0, stream(), parts, n, scale, acc, out);
  CASTLING_CUDA_CHECK_LAUNCH();
}

// ---- cross-entropy: one warp per row ----

// An input error found on the device: the smallest (row * 2 + kind), kind 0 a bad label, 1 a
// non-finite logit. The host reads it after the kernel and fails like the CPU op.
__global__ void crossEntropyKernel(const float* logits, const float* labels, float* dlogits, double* rowLoss, double* rowHit,
                                   unsigned long long* error, std::int64_t B, std::int64_t K, float smoothing) {
  const std::int64_t b = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (b >= B) return;
  const float* z = logits + b * K;
  float l = labels[b];
  if (!(l >= 0.0f && l < float(K)) || l != floorf(l)) {
    if (lane == 0) atomicMin(error, (unsigned long long)(b * 2));
    return;
  }
  const std::int64_t label = std::int64_t(l);
  // max and argmax (the lowest index among equal maxima, as the CPU's strict > scan gives)
  float best = -INFINITY;
  std::int64_t bestIndex = K;
  bool finite = true;
  double sumLogits = 0.0;
  for (std::int64_t c = lane; c < K; c += 32) {
    float v = z[c];
    finite &= isfinite(v);
    sumLogits += v;
    if (v > best || (v == best && c < bestIndex)) best = v, bestIndex = c;
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    float ov = __shfl_xor_sync(kFullMask, best, offset);
    long long oi = __shfl_xor_sync(kFullMask, (long long)bestIndex, offset);
    if (ov > best || (ov == best && oi < bestIndex)) best = ov, bestIndex = oi;
  }
  if (!__all_sync(kFullMask, finite)) {
    if (lane == 0) atomicMin(error, (unsigned long long)(b * 2 + 1));
    return;
  }
  double sum = 0.0;
  for (std::int64_t c = lane; c < K; c += 32) sum += exp(double(z[c]) - double(best));
  sum = warpSumDouble(sum);
  sumLogits = warpSumDouble(sumLogits);
  const double lse = double(best) + log(sum), meanLogit = sumLogits / double(K);
  for (std::int64_t c = lane; c < K; c += 32) {
    double target = double(smoothing) / double(K) + (c == label ? 1.0 - smoothing : 0.0);
    dlogits[b * K + c] = float((exp(double(z[c]) - lse) - target) / double(B));
  }
  if (lane == 0) {
    rowLoss[b] = lse - (1.0 - smoothing) * double(z[label]) - double(smoothing) * meanLogit;
    rowHit[b] = bestIndex == label ? 1.0 : 0.0;
  }
}

std::vector<Tensor> crossEntropyOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "crossEntropy";
  Tensor logits = in.required(0, "logits").contiguous(), labels = in.required(1, "labels").contiguous();
  if (logits.rank() != 2 || logits.dim(1) < 1) fail(op, ": logits has shape ", shapeToString(logits.shape()), ", expected [batch, classes]");
  std::int64_t B = logits.dim(0), K = logits.dim(1);
  expectShape(op, "labels", labels, {B});
  expectFloat32(op, "logits", logits);
  expectFloat32(op, "labels", labels);
  double smoothing = attrs.number("labelSmoothing", 0.0);
  if (!(smoothing >= 0 && smoothing < 1)) fail(op, ": labelSmoothing is ", smoothing, ", expected a number in [0, 1)");
  Tensor dlogits = deviceEmpty({B, K}), loss = deviceEmpty({1}), correct = deviceEmpty({1});
  Tensor rows = deviceEmpty({std::max<std::int64_t>(B, 1) * 4});  // two doubles per row
  Tensor errorSlot = deviceEmpty({2});
  auto* rowLoss = reinterpret_cast<double*>(rows.data());
  double* rowHit = rowLoss + std::max<std::int64_t>(B, 1);
  auto* error = static_cast<unsigned long long*>(errorSlot.raw());
  CASTLING_CUDA_CHECK(cudaMemsetAsync(error, 0xff, sizeof(unsigned long long), stream()));
  if (B > 0) {
    launch(crossEntropyKernel, gridForRows(B), kThreads, 0, stream(), logits.data(), labels.data(), dlogits.data(), rowLoss, rowHit,
                                                                  error, B, K, float(smoothing));
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  sumParts(rowLoss, B, B ? 1.0 / double(B) : 0.0, nullptr, loss.data());
  sumParts(rowHit, B, 1.0, nullptr, correct.data());
  unsigned long long code = 0;
  CASTLING_CUDA_CHECK(cudaMemcpyAsync(&code, error, sizeof(code), cudaMemcpyDeviceToHost, stream()));
  CASTLING_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (code != ~0ull) {
    std::int64_t b = std::int64_t(code / 2);
    if (code % 2 == 0) {
      float l = 0;
      CASTLING_CUDA_CHECK(cudaMemcpy(&l, labels.data() + b, sizeof(float), cudaMemcpyDeviceToHost));
      fail(op, ": labels[", b, "] is ", l, ", expected an integer class from 0 to ", K - 1);
    }
    std::vector<float> row(static_cast<std::size_t>(K));
    CASTLING_CUDA_CHECK(cudaMemcpy(row.data(), logits.data() + b * K, std::size_t(K) * sizeof(float), cudaMemcpyDeviceToHost));
    std::int64_t c = 0;
    while (c + 1 < K && std::isfinite(row[std::size_t(c)])) ++c;
    fail(op, ": logits[", b, ", ", c, "] is ", row[std::size_t(c)], ": the model produced NaN or infinity (diverged training?)");
  }
  return {loss, dlogits, correct};
}

// ---- AdamW, in place ----

struct AdamwArgs {
  float* param;
  const float* grad;
  float* m;
  float* v;
  std::int64_t n;
  const float* schedule;  // [lr, step] or null (then lr, step below)
  const float* norm2;     // squared gradient norm or null
  double lr, maxGradNorm, b1, b2, eps, wd;
  std::int64_t step;
  int* deferred;
};

// Every thread derives the step's scalars itself (a few flops) so that the update needs no host
// value: a plan recorded once runs every step from the schedule tensor.
__global__ void adamwKernel(AdamwArgs a) {
  double lr = a.lr, step = double(a.step);
  if (a.schedule) {
    lr = a.schedule[0];
    step = a.schedule[1];
    if (!(step >= 1.0) || step != floor(step)) {
      if (blockIdx.x == 0 && threadIdx.x == 0) atomicExch(a.deferred, int(kAdamwBadStep));
      return;
    }
  }
  float clip = 1.0f;
  if (a.norm2) {
    double norm = sqrt(double(a.norm2[0]));
    if (!isfinite(norm)) {
      if (blockIdx.x == 0 && threadIdx.x == 0) atomicExch(a.deferred, int(kAdamwNonFiniteNorm));
      return;
    }
    if (a.maxGradNorm > 0 && norm > a.maxGradNorm) clip = float(a.maxGradNorm / norm);
  }
  const ops::AdamwStep s = ops::adamwStep(lr, a.b1, a.b2, a.eps, a.wd, step, clip);
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.n; i += std::int64_t(gridDim.x) * blockDim.x) {
    float p = a.param[i], m = a.m[i], v = a.v[i];
    ops::adamwUpdate(s, a.grad[i], p, m, v);
    a.param[i] = p;
    a.m[i] = m;
    a.v[i] = v;
  }
}

std::vector<Tensor> adamwOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "adamw";
  Tensor param = in.required(0, "param"), grad = in.required(1, "grad").contiguous();
  Tensor m = in.required(2, "m"), v = in.required(3, "v");
  AdamwArgs a{};
  a.lr = attrs.number("lr", 1e-3);
  a.step = attrs.integer("step", 1, 1, std::int64_t(1) << 50);
  if (const Tensor* schedule = in.optional(4)) {
    expectShape(op, "schedule", *schedule, {2});
    expectFloat32(op, "schedule", *schedule);
    a.schedule = schedule->data();
  }
  if (const Tensor* norm2 = in.optional(5)) {
    expectShape(op, "gradSquaredNorm", *norm2, {1});
    expectFloat32(op, "gradSquaredNorm", *norm2);
    a.norm2 = norm2->data();
    a.maxGradNorm = attrs.number("maxGradNorm", 0.0);
  }
  for (const Tensor* t : {&param, &m, &v})
    if (!t->isContiguous()) fail(op, ": param, m and v must be contiguous (they are updated in place)");
  expectShape(op, "grad", grad, param.shape());
  expectShape(op, "m", m, param.shape());
  expectShape(op, "v", v, param.shape());
  for (const Tensor* t : {&param, &grad, &m, &v}) expectFloat32(op, "param, grad, m and v", *t);
  a.b1 = attrs.number("beta1", 0.9);
  a.b2 = attrs.number("beta2", 0.999);
  a.eps = attrs.number("eps", 1e-8);
  a.wd = attrs.number("weightDecay", 0.0);
  if (!(a.lr >= 0) || !(a.b1 >= 0 && a.b1 < 1) || !(a.b2 >= 0 && a.b2 < 1) || !(a.eps > 0) || !(a.wd >= 0)) {
    fail(op, ": expected lr >= 0, beta1 and beta2 in [0, 1), eps > 0 and weightDecay >= 0; got lr=", a.lr, " beta1=", a.b1,
         " beta2=", a.b2, " eps=", a.eps, " weightDecay=", a.wd);
  }
  Tensor param_out = param, m_out = m, v_out = v;  // updated in place; the mutable accessors record it
  a.param = param_out.data();
  a.grad = grad.data();
  a.m = m_out.data();
  a.v = v_out.data();
  a.n = param.numel();
  a.deferred = deferredErrorWord();
  if (a.n) {
    launch(adamwKernel, gridFor(a.n), kThreads, 0, stream(), a);
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return {};
}

// ---- sum of squares: fixed-size grid of block partials, then one ordered sum ----

constexpr int kSquareBlocks = 512;

__global__ void sumSquaresKernel(const float* x, std::int64_t n, double* partial) {
  CASTLING_SHARED(double, shared, [kThreads]);
  double s = 0.0;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    s += double(x[i]) * double(x[i]);
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = shared[0];
}

std::vector<Tensor> sumSquaresOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous();
  expectFloat32("sumSquares", "x", x);
  const float* acc = nullptr;
  if (const Tensor* a = in.optional(1)) {
    expectShape("sumSquares", "acc", *a, {1});
    expectFloat32("sumSquares", "acc", *a);
    acc = a->data();
  }
  Tensor partial = deviceEmpty({kSquareBlocks * 2});
  auto* parts = reinterpret_cast<double*>(partial.data());
  launch(sumSquaresKernel, kSquareBlocks, kThreads, 0, stream(), x.data(), x.numel(), parts);
  CASTLING_CUDA_CHECK_LAUNCH();
  Tensor out = deviceEmpty({1});
  sumParts(parts, kSquareBlocks, 1.0, acc, out.data());
  return {out};
}

// ---- distillation: one warp per row, in double as on the CPU ----

__global__ void distillationKernel(const float* z, const float* t, float* dlogits, double* rowLoss, std::int64_t B, std::int64_t K,
                                   double T, double weight) {
  const std::int64_t b = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (b >= B) return;
  const float *zr = z + b * K, *tr = t + b * K;
  double maxZ = -INFINITY, maxT = -INFINITY;
  for (std::int64_t c = lane; c < K; c += 32) {
    maxZ = fmax(maxZ, double(zr[c]) / T);
    maxT = fmax(maxT, double(tr[c]) / T);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    maxZ = fmax(maxZ, __shfl_xor_sync(kFullMask, maxZ, offset));
    maxT = fmax(maxT, __shfl_xor_sync(kFullMask, maxT, offset));
  }
  double sumZ = 0.0, sumT = 0.0;
  for (std::int64_t c = lane; c < K; c += 32) {
    sumZ += exp(double(zr[c]) / T - maxZ);
    sumT += exp(double(tr[c]) / T - maxT);
  }
  sumZ = warpSumDouble(sumZ);
  sumT = warpSumDouble(sumT);
  double kl = 0.0;
  for (std::int64_t c = lane; c < K; c += 32) {
    double s = exp(double(zr[c]) / T - maxZ) / sumZ, q = exp(double(tr[c]) / T - maxT) / sumT;
    if (q > 0) kl += q * (log(q) - log(fmax(s, 1e-300)));
    dlogits[b * K + c] = float(weight * T * (s - q) / double(B));
  }
  kl = warpSumDouble(kl);
  if (lane == 0) rowLoss[b] = kl;
}

std::vector<Tensor> distillationOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "distillation";
  Tensor z = in.required(0, "logits").contiguous(), t = in.required(1, "teacherLogits").contiguous();
  if (z.rank() != 2) fail(op, ": logits has shape ", shapeToString(z.shape()), ", expected [batch, classes]");
  expectShape(op, "teacherLogits", t, z.shape());
  expectFloat32(op, "logits", z);
  expectFloat32(op, "teacherLogits", t);
  double T = attrs.number("temperature", 1.0), weight = attrs.number("weight", 1.0);
  if (!(T > 0) || !(weight >= 0)) fail(op, ": expected temperature > 0 and weight >= 0, got ", T, " and ", weight);
  std::int64_t B = z.dim(0), K = z.dim(1);
  Tensor loss = deviceEmpty({1}), dlogits = deviceEmpty({B, K});
  Tensor rows = deviceEmpty({std::max<std::int64_t>(B, 1) * 2});
  auto* rowLoss = reinterpret_cast<double*>(rows.data());
  if (B > 0 && K > 0) {
    launch(distillationKernel, gridForRows(B), kThreads, 0, stream(), z.data(), t.data(), dlogits.data(), rowLoss, B, K, T, weight);
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  sumParts(rowLoss, K > 0 ? B : 0, B ? weight * T * T / double(B) : 0.0, nullptr, loss.data());
  return {loss, dlogits};
}

// ---- drop-path: x[b] * scale[b] ----

__global__ void scaleBatchKernel(const float* x, const float* scale, float* out, std::int64_t n, std::int64_t per) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = x[i] * scale[i / per];
}

std::vector<Tensor> scaleBatchOp(const OpInputs& in, const Attrs&) {
  Tensor x = in.required(0, "x").contiguous(), scale = in.required(1, "scale").contiguous();
  expectRankAtLeast("scaleBatch", "x", x, 1);
  expectShape("scaleBatch", "scale", scale, {x.dim(0)});
  expectFloat32("scaleBatch", "x", x);
  expectFloat32("scaleBatch", "scale", scale);
  Tensor out = deviceEmpty(x.shape());
  std::int64_t per = x.dim(0) ? x.numel() / x.dim(0) : 0;
  if (x.numel()) {
    launch(scaleBatchKernel, gridFor(x.numel()), kThreads, 0, stream(), x.data(), scale.data(), out.data(), x.numel(), per);
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return {out};
}

}  // namespace

void registerTrainOps(OpRegistry& r) {
  r.add(Device::Cuda, "crossEntropy", {"logits", "labels"}, crossEntropyOp);
  r.add(Device::Cuda, "adamw", {"param", "grad", "m", "v", "schedule", "gradSquaredNorm"}, adamwOp);
  r.add(Device::Cuda, "sumSquares", {"x", "acc"}, sumSquaresOp);
  r.add(Device::Cuda, "distillation", {"logits", "teacherLogits"}, distillationOp);
  r.add(Device::Cuda, "scaleBatch", {"x", "scale"}, scaleBatchOp);
}

}  // namespace castling::cuda
