#include "attention_common.h"

#include <algorithm>
#include <atomic>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "cpu_ops.h"

namespace castling::cpu {

namespace {
// The rows of t, starting at base (t's data through a const or a mutable accessor).
template <typename Float>
HeadRowsOf<Float> rowsFrom(Float* base, const Tensor& t) {
  const Shape& st = t.strides();
  return HeadRowsOf<Float>{base, t.dim(1), st[0], st[1], st[2]};
}

// `parts` (B, H, N, d) outputs, uninitialised: contiguous tensors, or with the attribute tokenOrder
// views of one (B, N, parts x H x d) buffer, part p at columns p H d.
std::vector<Tensor> headsOutputs(const ops::HeadsShape& s, const Attrs& attrs, std::int64_t parts) {
  if (attrs.flag("tokenOrder", false))
    return ops::headsInTokenRows(Tensor::empty({s.batch, s.tokens, parts * s.heads * s.width}), s, parts);
  std::vector<Tensor> out;
  for (std::int64_t p = 0; p < parts; ++p) out.push_back(Tensor::empty(s.full()));
  return out;
}
}  // namespace

HeadRows headRows(const Tensor& t) { return rowsFrom(t.data(), t); }

HeadRowsOf<float> outputRows(Tensor& t) { return rowsFrom(t.data(), t); }

Tensor headsOutput(const ops::HeadsShape& s, const Attrs& attrs) { return headsOutputs(s, attrs, 1)[0]; }

std::vector<Tensor> headsGradients(const ops::HeadsShape& s, const Attrs& attrs) { return headsOutputs(s, attrs, 3); }

void runAttentionJobs(std::int64_t jobs, std::int64_t scratchFloats,
                      const std::function<void(std::int64_t, float*)>& fn) {
  if (jobs <= 0) return;
  ThreadPool& pool = ThreadPool::global();
  int workers = int(std::min<std::int64_t>(pool.threads(), jobs));
  // Whole cache lines per worker, so that two workers never write the same line.
  std::int64_t stride = (std::max<std::int64_t>(scratchFloats, 1) + 15) / 16 * 16;
  Tensor scratch = Tensor::empty({std::int64_t(workers), stride});
  pool.forEachJob(jobs, workers, [&](std::int64_t job, int worker) { fn(job, scratch.data() + std::int64_t(worker) * stride); });
}

std::int64_t rangesPerHead(std::int64_t headCount, std::int64_t blocks) {
  std::int64_t threads = ThreadPool::global().threads();
  // About two jobs per thread, to even out heads of unequal cost and uneven splits.
  std::int64_t wanted = (2 * threads + headCount - 1) / std::max<std::int64_t>(headCount, 1);
  return std::clamp<std::int64_t>(wanted, 1, std::max<std::int64_t>(blocks, 1));
}

float dotProduct(const float* a, const float* b, std::int64_t n) {
  float acc[8] = {0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float total = 0;
  for (int j = 0; j < 8; ++j) total += acc[j];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

void registerAttentionOps(OpRegistry& registry) {
  registerAttentionSoftmaxOps(registry);
  registerAttentionLinearAngularOps(registry);
}

}  // namespace castling::cpu
