// Softmax attention, y = softmax(scale q k^T) v per head, the baseline the linear-angular
// attention is compared with (docs/algorithms.md section 1). Flash style: the kernels
// (attention_flash.inc) walk key blocks with an online softmax and never hold an N x N matrix;
// the forward saves each row's log-sum-exp so that the backward recomputes the probabilities
// tile by tile. Forward and backward side by side.
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "attention_common.h"
#include "attention_kernels.h"
#include "cpu_ops.h"
#include "../ops/shape_checks.h"

namespace castling::cpu {

using namespace ops;

namespace {

float scaleAttr(const Attrs& attrs, const char* op, std::int64_t width) {
  float scale = float(attrs.number("scale", 1.0 / std::sqrt(double(width))));
  if (!std::isfinite(scale)) fail(op, ": scale is ", scale, ", expected a finite number");
  return scale;
}

// inputs (q, k, v), each (B, H, N, d); attrs scale (default 1/sqrt(d)), tokenOrder (0; 1 lays y out
// for mergeHeads, see headsOutput).
// outputs [y (B, H, N, d), lse (B, H, N)]: lse = log sum_m exp(scale q_n . k_m).
std::vector<Tensor> attentionSoftmaxOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionSoftmax";
  // Read in place when their rows are dense (splitHeads' views): the kernels pack them anyway.
  const Tensor q = in.required(0, "q").withDenseRows(), k = in.required(1, "k").withDenseRows(),
               v = in.required(2, "v").withDenseRows();
  HeadsShape s = expectQkvHeads(op, q, k, v);
  float scale = scaleAttr(attrs, op, s.width);
  Tensor y = headsOutput(s, attrs), lse = Tensor::empty(s.perToken());
  const HeadRows hq = headRows(q), hk = headRows(k), hv = headRows(v);
  const HeadRowsOf<float> hy = outputRows(y);

  const AttentionKernels& kt = attentionKernels();
  std::int64_t blocks = (s.tokens + kt.flashBlock - 1) / kt.flashBlock;
  std::int64_t ranges = rangesPerHead(s.count(), blocks);
  runAttentionJobs(s.count() * ranges, kt.flashForwardScratchFloats(s.tokens, s.width),
                   [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / ranges, range = job % ranges;
    FlashForwardArgs a{hq.head(head), hk.head(head), hv.head(head), hq.ld, hk.ld, hv.ld, s.tokens, s.width, scale,
                       false, 0.0f, hy.head(head), hy.ld, lse.data() + head * s.tokens, nullptr};
    std::int64_t begin = blocks * range / ranges * kt.flashBlock;
    std::int64_t end = std::min(s.tokens, blocks * (range + 1) / ranges * kt.flashBlock);
    kt.flashForward(a, begin, end, scratch);
  });
  return {y, lse};
}

// inputs (q, k, v, y, lse, dy) as saved by attentionSoftmax; attrs scale, tokenOrder (0; 1 lays
// dq, dk and dv out for mergeHeads, see headsGradients).
// outputs [dq, dk, dv].
std::vector<Tensor> attentionSoftmaxBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionSoftmaxBackward";
  const Tensor q = in.required(0, "q").withDenseRows(), k = in.required(1, "k").withDenseRows(),
               v = in.required(2, "v").withDenseRows(), y = in.required(3, "y").withDenseRows(),
               lse = in.required(4, "lse").contiguous(), dy = in.required(5, "dy").withDenseRows();
  HeadsShape s = expectQkvHeads(op, q, k, v);
  expectShape(op, "y", y, s.full());
  expectShape(op, "lse", lse, s.perToken());
  expectShape(op, "dy", dy, s.full());
  float scale = scaleAttr(attrs, op, s.width);

  // D_n = dy_n . y_n: the row term of the softmax backward, from the saved output in O(N d).
  Tensor rowTerm = Tensor::empty(s.perToken());
  constexpr std::int64_t kRowsAhead = 6;
  std::int64_t rows = s.count() * s.tokens, d = s.width;
  const HeadRows hdy = headRows(dy), hy = headRows(y);
  ThreadPool::global().parallelFor(rows, std::max<std::int64_t>(1, 16384 / d), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      // Rows a stride apart (token order) are no stream for the hardware prefetchers: fetch a few ahead.
      if (const std::int64_t ahead = r + kRowsAhead; ahead < e) {
        for (std::int64_t c = 0; c < d; c += 16) {
          __builtin_prefetch(hdy.tokenRow(ahead, s.tokens) + c);
          __builtin_prefetch(hy.tokenRow(ahead, s.tokens) + c);
        }
      }
      rowTerm.data()[r] = dotProduct(hdy.tokenRow(r, s.tokens), hy.tokenRow(r, s.tokens), d);
    }
  });

  std::vector<Tensor> grads = headsGradients(s, attrs);  // every row is written once
  flashBackwardAllHeads(s, q, k, v, dy, lse, rowTerm, scale, false, 0.0f, 0.0f, false, grads[0], grads[1], grads[2]);
  return grads;
}

}  // namespace

void flashBackwardAllHeads(const HeadsShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& dout, const Tensor& lse, const Tensor& rowTerm, float scale,
                           bool masked, float tau, float lambda, bool accumulate, Tensor& dq, Tensor& dk,
                           Tensor& dv) {
  const AttentionKernels& kt = attentionKernels();
  std::int64_t blocks = (s.tokens + kt.flashBlock - 1) / kt.flashBlock;
  std::int64_t ranges = rangesPerHead(s.count(), blocks);
  // Key ranges of one head all add to that head's dq: range 0 goes into dq itself, the others
  // into their own buffers, summed afterwards in a fixed order (deterministic, no atomics). The
  // kernels write those buffers whole, or with `accumulate` add into them, which then start at 0.
  Tensor dqExtra;
  if (ranges > 1) {
    const Shape extra{ranges - 1, s.count(), s.tokens, s.width};
    dqExtra = accumulate ? Tensor::zerosOnPool(extra) : Tensor::empty(extra);
  }
  const HeadRows hq = headRows(q), hk = headRows(k), hv = headRows(v), hdout = headRows(dout);
  const HeadRowsOf<float> hdq = outputRows(dq), hdk = outputRows(dk), hdv = outputRows(dv);
  runAttentionJobs(s.count() * ranges, kt.flashBackwardScratchFloats(s.tokens, s.width),
                   [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / ranges, range = job % ranges, off = head * s.headFloats();
    float* dqTarget = range == 0 ? hdq.head(head) : dqExtra.data() + (range - 1) * s.count() * s.headFloats() + off;
    FlashBackwardArgs a{hq.head(head), hk.head(head), hv.head(head), hdout.head(head),
                        lse.data() + head * s.tokens, rowTerm.data() + head * s.tokens,
                        hq.ld, hk.ld, hv.ld, hdout.ld, s.tokens, s.width, scale, masked, tau, lambda,
                        dqTarget, hdk.head(head), hdv.head(head), range == 0 ? hdq.ld : s.width, hdk.ld, hdv.ld,
                        accumulate};
    std::int64_t begin = blocks * range / ranges * kt.flashBlock;
    std::int64_t end = std::min(s.tokens, blocks * (range + 1) / ranges * kt.flashBlock);
    if (begin < end) kt.flashBackward(a, begin, end, scratch);
  });
  const std::int64_t rows = s.count() * s.tokens, d = s.width;
  for (std::int64_t r = 1; r < ranges; ++r) {
    const float* extra = dqExtra.data() + (r - 1) * rows * d;
    const std::int64_t grain = std::max<std::int64_t>(1, (1 << 15) / d);
    ThreadPool::global().parallelFor(rows, grain, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t row = b; row < e; ++row) {
        float* out = hdq.tokenRow(row, s.tokens);
        const float* add = extra + row * d;
        for (std::int64_t c = 0; c < d; ++c) out[c] += add[c];
      }
    });
  }
}

void registerAttentionSoftmaxOps(OpRegistry& r) {
  r.add("attentionSoftmax", {"q", "k", "v"}, attentionSoftmaxOp);
  r.add("attentionSoftmaxBackward", {"q", "k", "v", "y", "lse", "dy"}, attentionSoftmaxBackwardOp);
}

}  // namespace castling::cpu
