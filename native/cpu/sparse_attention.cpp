// Sparsifiner's sparse attention (docs/algorithms.md section 4): each query row n >= 1 attends only to
// the keys its connectivity mask keeps, given as a list of key indices per row; row 0 (the class
// token) attends to every key. The kernels gather the kept keys per query, so the cost is
// O(N kept d) instead of O(N^2 d). Forward and backward side by side; the backward recomputes
// the probabilities from the saved log-sum-exp like the flash backward.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/thread_pool.h"
#include "../ops/sparse_attention_shapes.h"
#include "sparsifiner_common.h"
#include "sparsifiner_kernels.h"

namespace castling::cpu {

using namespace ops;

namespace {

// Query rows per backward job: enough to amortise handing out a job, few enough to balance the
// threads.
constexpr std::int64_t kRowsPerJob = 16;

// Called when a kernel found a bad index row: checks every row n >= 1 (row 0 is dense: its
// slots are never read) in parallel and reports the first bad row in index order, so that the
// message does not depend on thread timing.
[[noreturn]] void reportBadIndices(const char* op, const Tensor& indices, const HeadsShape& s, std::int64_t kept) {
  const std::int64_t rows = s.count() * s.tokens;
  std::atomic<std::int64_t> firstBadRow{rows};
  ThreadPool::global().parallelFor(rows, std::max<std::int64_t>(1, 65536 / kept), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t row = b; row < e; ++row) {
      if (row % s.tokens == 0) continue;
      if (firstBadSlot(indices.data() + row * kept, kept, s.tokens) != kept) {
        std::int64_t seen = firstBadRow.load();
        while (row < seen && !firstBadRow.compare_exchange_weak(seen, row)) {
        }
        return;
      }
    }
  });
  std::int64_t row = firstBadRow.load();
  if (row == rows) failAs(ErrorKind::Internal, op, ": a kernel rejected the indices but no row is invalid (internal error)");
  badIndexRow(op, indices.data() + row * kept, kept, s, row);
}

// The kernel arguments of one head (outputs left for the caller).
SparseAttentionArgs headArgs(const SparseInputs& x, std::int64_t head, float scale) {
  const HeadsShape& s = x.s;
  std::int64_t off = head * s.headFloats();
  SparseAttentionArgs a{};
  a.q = x.q.data() + off;
  a.k = x.k.data() + off;
  a.v = x.v.data() + off;
  a.indices = x.indices.data() + head * s.tokens * x.kept;
  a.n = s.tokens;
  a.d = s.width;
  a.kept = x.kept;
  a.scale = scale;
  return a;
}

// inputs (q, k, v, indices): q, k, v (B, H, N, d); indices (B, H, N, kept) key indices as floats,
// -1 for padding, kept ones strictly increasing per row (row 0's slots are ignored: dense).
// attrs scale (default 1/sqrt(d)).
// outputs [y (B, H, N, d), lse (B, H, N)]: per row, softmax of scale q_n . k_m over its kept keys.
std::vector<Tensor> sparseAttentionOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparseAttention";
  SparseInputs x = readSparseInputs(op, in);
  const HeadsShape& s = x.s;
  float scale = sparseAttentionScale(op, attrs, s.width);
  Tensor y = Tensor::empty(s.full()), lse = Tensor::empty(s.perToken());
  const SparsifinerKernels& kt = sparsifinerKernels();
  std::int64_t blocks = (s.tokens + kSparseBlockRows - 1) / kSparseBlockRows;
  std::vector<char> valid(std::size_t(s.count() * blocks), 1);
  runAttentionJobs(s.count() * blocks, kt.sparseForwardScratchFloats(s.tokens, s.width, x.kept), [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / blocks, row0 = job % blocks * kSparseBlockRows;
    SparseAttentionArgs a = headArgs(x, head, scale);
    a.y = y.data() + head * s.headFloats();
    a.lse = lse.data() + head * s.tokens;
    valid[std::size_t(job)] = kt.sparseForward(a, row0, std::min(s.tokens, row0 + kSparseBlockRows), scratch);
  });
  if (std::find(valid.begin(), valid.end(), 0) != valid.end()) reportBadIndices(op, x.indices, s, x.kept);
  return {y, lse};
}

// inputs (q, k, v, indices, y, lse, dy), y and lse as returned by sparseAttention; attrs scale.
// outputs [dq, dk, dv]. dk and dv gather from many query rows: each query range of a head adds
// into its own buffer and the buffers are summed in a fixed order, so the result does not depend
// on which thread ran what.
std::vector<Tensor> sparseAttentionBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparseAttentionBackward";
  SparseInputs x = readSparseInputs(op, in);
  const HeadsShape& s = x.s;
  const SparseSaved saved = readSparseSaved(op, in, s);
  const Tensor &y = saved.y, &lse = saved.lse, &dy = saved.dy;
  float scale = sparseAttentionScale(op, attrs, s.width);

  Tensor dq = Tensor::empty(s.full()), dk = Tensor::zerosOnPool(s.full()), dv = Tensor::zerosOnPool(s.full());
  std::int64_t ranges = rangesPerHead(s.count(), (s.tokens + kRowsPerJob - 1) / kRowsPerJob);
  const std::int64_t total = s.count() * s.headFloats();
  Tensor dkExtra, dvExtra;
  if (ranges > 1) {
    dkExtra = Tensor::zerosOnPool({ranges - 1, total});
    dvExtra = Tensor::zerosOnPool({ranges - 1, total});
  }
  const SparsifinerKernels& kt = sparsifinerKernels();
  std::vector<char> valid(std::size_t(s.count() * ranges), 1);
  runAttentionJobs(s.count() * ranges, kt.sparseBackwardScratchFloats(s.tokens, s.width, x.kept), [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / ranges, range = job % ranges, off = head * s.headFloats();
    SparseAttentionArgs a = headArgs(x, head, scale);
    a.dy = dy.data() + off;
    a.savedY = y.data() + off;
    a.savedLse = lse.data() + head * s.tokens;
    a.dq = dq.data() + off;
    a.dk = range == 0 ? dk.data() + off : dkExtra.data() + (range - 1) * total + off;
    a.dv = range == 0 ? dv.data() + off : dvExtra.data() + (range - 1) * total + off;
    valid[std::size_t(job)] = kt.sparseBackward(a, s.tokens * range / ranges, s.tokens * (range + 1) / ranges, scratch);
  });
  if (std::find(valid.begin(), valid.end(), 0) != valid.end()) reportBadIndices(op, x.indices, s, x.kept);
  for (std::int64_t r = 1; r < ranges; ++r) {
    const float* extraK = dkExtra.data() + (r - 1) * total;
    const float* extraV = dvExtra.data() + (r - 1) * total;
    ThreadPool::global().parallelFor(total, 1 << 15, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        dk.data()[i] += extraK[i];
        dv.data()[i] += extraV[i];
      }
    });
  }
  return {dq, dk, dv};
}

}  // namespace

void registerSparseAttentionOps(OpRegistry& r) {
  r.add("sparseAttention", {"q", "k", "v", "indices"}, sparseAttentionOp);
  r.add("sparseAttentionBackward", {"q", "k", "v", "indices", "y", "lse", "dy"}, sparseAttentionBackwardOp);
}

}  // namespace castling::cpu
