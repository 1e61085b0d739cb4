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

// Where the kernels find one head's rows of q, k and v (outputs left for the caller).
struct InputRows {
  HeadRows q, k, v;
};

InputRows inputRows(const SparseInputs& x) { return {headRows(x.q), headRows(x.k), headRows(x.v)}; }

// The kernel arguments of one head (outputs left for the caller).
SparseAttentionArgs headArgs(const SparseInputs& x, const InputRows& rows, std::int64_t head, float scale) {
  const HeadsShape& s = x.s;
  SparseAttentionArgs a{};
  a.q = rows.q.head(head);
  a.k = rows.k.head(head);
  a.v = rows.v.head(head);
  a.ldq = rows.q.ld;
  a.ldkv = rows.k.ld;  // v's too (readSparseInputs)
  a.indices = x.indices.data() + head * s.tokens * x.kept;
  a.n = s.tokens;
  a.d = s.width;
  a.kept = x.kept;
  a.scale = scale;
  return a;
}

// inputs (q, k, v, indices): q, k, v (B, H, N, d), read in place when their rows are dense
// (splitHeads' views); indices (B, H, N, kept) key indices as floats, -1 for padding, kept ones
// strictly increasing per row (row 0's slots are ignored: dense).
// attrs scale (default 1/sqrt(d)), tokenOrder (0; 1 lays y out for mergeHeads, see headsOutput).
// outputs [y (B, H, N, d), lse (B, H, N)]: per row, softmax of scale q_n . k_m over its kept keys.
std::vector<Tensor> sparseAttentionOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparseAttention";
  SparseInputs x = readSparseInputs(op, in, true);
  const HeadsShape& s = x.s;
  float scale = sparseAttentionScale(op, attrs, s.width);
  Tensor y = headsOutput(s, attrs), lse = Tensor::empty(s.perToken());
  const InputRows rows = inputRows(x);
  const HeadRowsOf<float> hy = outputRows(y);
  const SparsifinerKernels& kt = sparsifinerKernels();
  std::int64_t blocks = (s.tokens + kSparseBlockRows - 1) / kSparseBlockRows;
  std::vector<char> valid(std::size_t(s.count() * blocks), 1);
  runAttentionJobs(s.count() * blocks, kt.sparseForwardScratchFloats(s.tokens, s.width, x.kept), [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / blocks, row0 = job % blocks * kSparseBlockRows;
    SparseAttentionArgs a = headArgs(x, rows, head, scale);
    a.y = hy.head(head);
    a.ldy = hy.ld;
    a.lse = lse.data() + head * s.tokens;
    valid[std::size_t(job)] = kt.sparseForward(a, row0, std::min(s.tokens, row0 + kSparseBlockRows), scratch);
  });
  if (std::find(valid.begin(), valid.end(), 0) != valid.end()) reportBadIndices(op, x.indices, s, x.kept);
  return {y, lse};
}

// inputs (q, k, v, indices, y, lse, dy), y and lse as returned by sparseAttention (q, k, v, y and
// dy read in place when their rows are dense); attrs scale, tokenOrder (0; 1 lays dq, dk and dv
// out for mergeHeads, see headsGradients).
// outputs [dq, dk, dv]. dk and dv gather from many query rows: each job adds into contiguous
// accumulators of its own (a head's rows stay within a few pages, where the outputs' token-order
// rows lie 3 H d floats apart), then writes them out: a whole head's directly, the query ranges
// of a head cut into several summed in range order, so the result does not depend on which
// thread ran what.
std::vector<Tensor> sparseAttentionBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparseAttentionBackward";
  SparseInputs x = readSparseInputs(op, in, true);
  const HeadsShape& s = x.s;
  const SparseSaved saved = readSparseSaved(op, in, s, true);
  const HeadRows hy = headRows(saved.y), hdy = headRows(saved.dy);
  const Tensor& lse = saved.lse;
  float scale = sparseAttentionScale(op, attrs, s.width);

  std::vector<Tensor> grads = headsGradients(s, attrs);  // every row written once
  Tensor &dq = grads[0], &dk = grads[1], &dv = grads[2];
  const HeadRowsOf<float> hdq = outputRows(dq), hdk = outputRows(dk), hdv = outputRows(dv);
  const std::int64_t ranges = rangesPerHead(s.count(), (s.tokens + kRowsPerJob - 1) / kRowsPerJob);
  const std::int64_t headFloats = s.headFloats(), total = s.count() * headFloats;
  // Several ranges a head: every range's dk and dv, contiguous, summed at the end. One: each job's
  // own in its scratch.
  Tensor rangeGrads = ranges > 1 ? Tensor::zerosOnPool({2, ranges, total}) : Tensor();
  auto writeRows = [&](const HeadRowsOf<float>& out, std::int64_t head, const float* from) {
    float* to = out.head(head);
    for (std::int64_t n = 0; n < s.tokens; ++n) std::copy_n(from + n * s.width, s.width, to + n * out.ld);
  };
  const InputRows rows = inputRows(x);
  const SparsifinerKernels& kt = sparsifinerKernels();
  const std::int64_t kernelFloats = kt.sparseBackwardScratchFloats(s.tokens, s.width, x.kept);
  const std::int64_t ownPiece = ranges > 1 ? 0 : (headFloats + 15) / 16 * 16;  // a job's dk (then dv), whole lines
  std::vector<char> valid(std::size_t(s.count() * ranges), 1);
  runAttentionJobs(s.count() * ranges, kernelFloats + 2 * ownPiece, [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / ranges, range = job % ranges;
    SparseAttentionArgs a = headArgs(x, rows, head, scale);
    a.dy = hdy.head(head);
    a.lddy = hdy.ld;
    a.savedY = hy.head(head);
    a.ldSavedY = hy.ld;
    a.savedLse = lse.data() + head * s.tokens;
    a.dq = hdq.head(head);
    a.lddq = hdq.ld;
    a.lddkv = s.width;
    if (ranges > 1) {
      a.dk = rangeGrads.data() + range * total + head * headFloats;
      a.dv = rangeGrads.data() + (ranges + range) * total + head * headFloats;
    } else {
      a.dk = scratch + kernelFloats;
      a.dv = a.dk + ownPiece;
      std::fill_n(a.dk, 2 * ownPiece, 0.0f);
    }
    valid[std::size_t(job)] = kt.sparseBackward(a, s.tokens * range / ranges, s.tokens * (range + 1) / ranges, scratch);
    if (ranges == 1) {
      writeRows(hdk, head, a.dk);
      writeRows(hdv, head, a.dv);
    }
  });
  if (std::find(valid.begin(), valid.end(), 0) != valid.end()) reportBadIndices(op, x.indices, s, x.kept);
  if (ranges > 1) {
    ThreadPool::global().parallelFor(s.count() * s.tokens, std::max<std::int64_t>(1, 32768 / s.width), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t row = b; row < e; ++row) {
        for (int which = 0; which < 2; ++which) {
          const HeadRowsOf<float>& out = which == 0 ? hdk : hdv;
          float* to = out.tokenRow(row, s.tokens);
          const float* from = rangeGrads.data() + which * ranges * total + row * s.width;
          std::copy_n(from, s.width, to);
          for (std::int64_t r = 1; r < ranges; ++r)  // in range order: the same sums on any thread count
            for (std::int64_t c = 0; c < s.width; ++c) to[c] += from[r * total + c];
        }
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
