// Castling-ViT linear-angular attention (docs/algorithms.md sections 2 and 3), forward and backward:
//   z = 0.5 v + (1/pi) qhat S [+ (M . A) v],  u = normalize(z),  y = u + dconv(v)
// with S = sum_n khat_n^T v_n per head. Two passes over the tokens (build S, then apply it): with at
// least two heads per thread, one job runs both over a whole head; with fewer, each pass runs over
// token ranges of every head in turn. O(N d) extra memory. The optional auxiliary masked
// softmax branch (training only) runs the flash kernels first and is added to z.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "attention_common.h"
#include "attention_kernels.h"
#include "../ops/attention_linear_angular_shapes.h"
#include "cpu_ops.h"

namespace castling::cpu {

using namespace ops;

namespace {

// The inputs, in full: q, k, v and dconvWeight (ops/attention_linear_angular_shapes.h), checked.
AngularInputs readAngularInputs(const char* op, const OpInputs& in, const Attrs& attrs, bool rowsInPlace = false) {
  AngularInputs a = readAngularTensors(op, in, rowsInPlace);
  a.o = readAngularOptions(op, attrs, a.s, a.weight);
  return a;
}

AngularConv convForHead(const AngularOptions& o, const Tensor& weight, std::int64_t head, std::int64_t heads) {
  return AngularConv{o.form, o.taps, o.gridSide, weight.data() + (head % heads) * o.weightsPerHead};
}

// How a head's tokens are cut into ranges for the two passes (ranges start at block multiples).
struct TokenRanges {
  std::int64_t ranges, blocks, block, tokens;
  std::int64_t begin(std::int64_t r) const { return std::min(tokens, blocks * r / ranges * block); }
  std::int64_t end(std::int64_t r) const { return std::min(tokens, blocks * (r + 1) / ranges * block); }
};

TokenRanges tokenRanges(const HeadsShape& s, const AttentionKernels& kt) {
  std::int64_t blocks = (s.tokens + kt.flashBlock - 1) / kt.flashBlock;
  return {rangesPerHead(s.count(), blocks), blocks, kt.flashBlock, s.tokens};
}

// out[head] = sum over ranges of partial[head][range] (count floats each), in range order.
void sumRanges(const Tensor& partial, std::int64_t heads, std::int64_t ranges, std::int64_t count, float* out) {
  ThreadPool::global().parallelFor(heads, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t h = b; h < e; ++h) {
      float* o = out + h * count;
      const float* p = partial.data() + h * ranges * count;
      std::copy(p, p + count, o);
      for (std::int64_t r = 1; r < ranges; ++r)
        for (std::int64_t i = 0; i < count; ++i) o[i] += p[r * count + i];
    }
  });
}

// inputs (q, k, v, dconvWeight): q, k, v (B, H, N, d); dconvWeight (H, K) for form 0 ('tokens')
// or (H, K, K) for form 1 ('spatial').
// attrs form (0), aux (0), tau (0.02), auxScale (1/sqrt(d)), tokenOrder (0; 1 lays y out for
// mergeHeads, see headsOutput).
// outputs [y, qnorm, knorm, S, znorm] and with aux also [lse, auxOut, auxMass, l1]:
//   y (B, H, N, d); qnorm, knorm, znorm (B, H, N) = max(|.|, 1e-12); S (B, H, d, d);
//   lse (B, H, N) of auxScale q k^T; auxOut (B, H, N, d) = (M . A) v; auxMass (B, H, N) = row
//   sums of M . A; l1 (1) = sum of M . A over everything.
std::vector<Tensor> attentionLinearAngularOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionLinearAngular";
  // q, k and v read in place when their rows are dense (splitHeads' views of the qkv projection).
  AngularInputs inputs = readAngularInputs(op, in, attrs, true);
  const Tensor &q = inputs.q, &k = inputs.k, &v = inputs.v, &weight = inputs.weight;
  const HeadsShape& s = inputs.s;
  const AngularOptions& o = inputs.o;
  const AttentionKernels& kt = attentionKernels();
  const std::int64_t d = s.width;
  const HeadRows hq = headRows(q), hk = headRows(k), hv = headRows(v);

  Tensor lse, auxOut, auxMass, l1;
  if (o.aux) {
    lse = Tensor::empty(s.perToken());
    auxOut = Tensor::empty(s.full());
    auxMass = Tensor::empty(s.perToken());
    TokenRanges tr = tokenRanges(s, kt);
    runAttentionJobs(s.count() * tr.ranges, kt.maskedForwardScratchFloats(s.tokens, d),
                     [&](std::int64_t job, float* scratch) {
      std::int64_t head = job / tr.ranges, range = job % tr.ranges, off = head * s.headFloats();
      FlashForwardArgs a{hq.head(head), hk.head(head), hv.head(head), hq.ld, hk.ld, hv.ld, s.tokens, d, o.auxScale, true,
                         o.tau, auxOut.data() + off, d, lse.data() + head * s.tokens,
                         auxMass.data() + head * s.tokens};
      if (tr.begin(range) < tr.end(range)) kt.flashForward(a, tr.begin(range), tr.end(range), scratch);
    });
    double total = 0;
    for (std::int64_t i = 0; i < auxMass.numel(); ++i) total += auxMass.data()[i];
    l1 = Tensor::empty({1});
    l1.data()[0] = float(total);
  }

  Tensor y = headsOutput(s, attrs);
  const HeadRowsOf<float> hy = outputRows(y);
  Tensor qnorm = Tensor::empty(s.perToken()), knorm = Tensor::empty(s.perToken()),
         znorm = Tensor::empty(s.perToken()), S = Tensor::empty({s.batch, s.heads, d, d});
  TokenRanges tr = tokenRanges(s, kt);
  auto headArgs = [&](std::int64_t head) {
    std::int64_t off = head * s.headFloats(), rows = head * s.tokens;
    return AngularForwardArgs{hq.head(head), hk.head(head), hv.head(head), hq.ld, hk.ld, hv.ld, s.tokens, d,
                              convForHead(o, weight, head, s.heads), knorm.data() + rows,
                              S.data() + head * d * d,
                              o.aux ? auxOut.data() + off : nullptr, o.aux ? auxMass.data() + rows : nullptr,
                              qnorm.data() + rows, znorm.data() + rows, hy.head(head), hy.ld};
  };
  std::int64_t scratch = kt.angularScratchFloats(d);
  if (tr.ranges == 1) {
    // At least two heads per thread: each job runs both passes over one head, back to back, so
    // that the second pass reads the head's v while it is still in L3 (a first pass over every
    // head reads 2 x 19 MB at 12545 tokens, H = 6, d = 64, and pushes it out), and there is one
    // dispatch and no partial S to sum. The same bits as the ranges below with one range.
    runAttentionJobs(s.count(), scratch, [&](std::int64_t head, float* area) {
      AngularForwardArgs a = headArgs(head);
      kt.angularKeys(a, 0, s.tokens, S.data() + head * d * d, area);
      kt.angularApply(a, 0, s.tokens, area);
    });
    if (o.aux) return {y, qnorm, knorm, S, znorm, lse, auxOut, auxMass, l1};
    return {y, qnorm, knorm, S, znorm};
  }
  // Pass 1: knorm and S, a partial S per token range summed in range order (deterministic).
  Tensor sPartial = Tensor::empty({s.count(), tr.ranges, d, d});
  runAttentionJobs(s.count() * tr.ranges, scratch, [&](std::int64_t job, float* area) {
    std::int64_t head = job / tr.ranges, range = job % tr.ranges;
    kt.angularKeys(headArgs(head), tr.begin(range), tr.end(range),
                   sPartial.data() + (head * tr.ranges + range) * d * d, area);
  });
  sumRanges(sPartial, s.count(), tr.ranges, d * d, S.data());
  // Pass 2: z, znorm and y. (u = z / znorm is not kept: the backward recomputes it.)
  runAttentionJobs(s.count() * tr.ranges, scratch, [&](std::int64_t job, float* area) {
    std::int64_t head = job / tr.ranges, range = job % tr.ranges;
    kt.angularApply(headArgs(head), tr.begin(range), tr.end(range), area);
  });
  if (o.aux) return {y, qnorm, knorm, S, znorm, lse, auxOut, auxMass, l1};
  return {y, qnorm, knorm, S, znorm};
}

// inputs, in this order (the forward's inputs, then its saved outputs, then the gradient):
//   0 q, 1 k, 2 v, 3 dconvWeight, 4 qnorm, 5 knorm, 6 S, 7 znorm,
//   8 lse, 9 auxOut, 10 auxMass (only with aux; empty slots otherwise), 11 dy
// attrs as the forward (tokenOrder lays dq, dk and dv out for mergeHeads, see headsGradients), plus
// l1 (lambda, default 0: the loss had lambda * sum M . A added).
// outputs [dq, dk, dv, dWeight] (dWeight shaped like dconvWeight).
std::vector<Tensor> attentionLinearAngularBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionLinearAngularBackward";
  // q, k, v and dy are read in place when their rows are dense (splitHeads' views).
  AngularInputs inputs = readAngularInputs(op, in, attrs, true);
  const Tensor &q = inputs.q, &k = inputs.k, &v = inputs.v, &weight = inputs.weight;
  const HeadsShape& s = inputs.s;
  const AngularOptions& o = inputs.o;
  const std::int64_t d = s.width;
  const AngularSaved saved = readAngularSaved(op, in, s, true);
  const Tensor &qnorm = saved.qnorm, &knorm = saved.knorm, &S = saved.S, &znorm = saved.znorm, &dy = saved.dy;
  const AngularAuxSaved auxSaved = o.aux ? readAngularAuxSaved(op, in, s) : AngularAuxSaved{};
  const Tensor &lse = auxSaved.lse, &auxOut = auxSaved.auxOut, &auxMass = auxSaved.auxMass;
  const AttentionKernels& kt = attentionKernels();

  // dz, the auxiliary branch's incoming gradient, is kept only for the branch.
  Tensor dz = o.aux ? Tensor::empty(s.full()) : Tensor(), dS = Tensor::empty({s.count(), d, d});
  std::vector<Tensor> grads = headsGradients(s, attrs);  // every row is written before it is added to
  Tensor &dq = grads[0], &dk = grads[1], &dv = grads[2];
  const HeadRows hq = headRows(q), hk = headRows(k), hv = headRows(v), hdy = headRows(dy);
  const HeadRowsOf<float> hdq = outputRows(dq), hdk = outputRows(dk), hdv = outputRows(dv);
  TokenRanges tr = tokenRanges(s, kt);
  Tensor dwPartial = Tensor::empty({s.count(), tr.ranges, o.weightsPerHead});
  auto headArgs = [&](std::int64_t head) {
    std::int64_t off = head * s.headFloats(), rows = head * s.tokens;
    return AngularBackwardArgs{hq.head(head), hk.head(head), hv.head(head),
                               o.aux ? auxOut.data() + off : nullptr, o.aux ? auxMass.data() + rows : nullptr,
                               qnorm.data() + rows, knorm.data() + rows, znorm.data() + rows,
                               S.data() + head * d * d, hdy.head(head), s.tokens, d,
                               convForHead(o, weight, head, s.heads), dS.data() + head * d * d,
                               o.aux ? dz.data() + off : nullptr, hdq.head(head), hdk.head(head), hdv.head(head),
                               hq.ld, hk.ld, hv.ld, hdy.ld, hdq.ld};
  };
  std::int64_t scratch = kt.angularScratchFloats(d);
  if (tr.ranges == 1) {
    // At least two heads per thread, as in the forward: each job runs both passes over one head
    // back to back, so that the key side reads what the query side just read and wrote (v, dz)
    // while it is still in cache; with one range a head's dS is whole after its query side.
    runAttentionJobs(s.count(), scratch, [&](std::int64_t head, float* area) {
      AngularBackwardArgs a = headArgs(head);
      kt.angularBackwardQueries(a, 0, s.tokens, dS.data() + head * d * d, dwPartial.data() + head * o.weightsPerHead,
                                area);
      kt.angularBackwardKeys(a, 0, s.tokens, area);
    });
  } else {
    // Pass 1 (query side): dz, dq, dv's direct and conv terms, partial dS and dWeight.
    Tensor dSPartial = Tensor::empty({s.count(), tr.ranges, d, d});
    runAttentionJobs(s.count() * tr.ranges, scratch, [&](std::int64_t job, float* area) {
      std::int64_t head = job / tr.ranges, range = job % tr.ranges;
      std::int64_t slot = head * tr.ranges + range;
      kt.angularBackwardQueries(headArgs(head), tr.begin(range), tr.end(range),
                                dSPartial.data() + slot * d * d,
                                dwPartial.data() + slot * o.weightsPerHead, area);
    });
    sumRanges(dSPartial, s.count(), tr.ranges, d * d, dS.data());
    // Pass 2 (key side): dk, and dv's share through S.
    runAttentionJobs(s.count() * tr.ranges, scratch, [&](std::int64_t job, float* area) {
      std::int64_t head = job / tr.ranges, range = job % tr.ranges;
      kt.angularBackwardKeys(headArgs(head), tr.begin(range), tr.end(range), area);
    });
  }
  Tensor dWeight = Tensor::empty(weight.shape());
  for (std::int64_t h = 0; h < s.heads; ++h) {
    for (std::int64_t w = 0; w < o.weightsPerHead; ++w) {
      double total = 0;
      for (std::int64_t b = 0; b < s.batch; ++b)
        for (std::int64_t r = 0; r < tr.ranges; ++r)
          total += dwPartial.data()[((b * s.heads + h) * tr.ranges + r) * o.weightsPerHead + w];
      dWeight.data()[h * o.weightsPerHead + w] = float(total);
    }
  }
  if (o.aux) {
    // The branch adds (M . A) v to z, so its incoming gradient is dz. Rows that kept nothing
    // contribute nothing at all (dA = 0 and their row term is 0): when no row kept anything
    // (tau >= 1) the branch is skipped, and the gradients are bit-identical to aux off.
    // The row terms over the pool (as attentionSoftmaxBackward's): on one thread they were the
    // largest serial section of a castling training step (9456 rows of 64 at DeiT-S batch 8).
    std::int64_t rows = s.count() * s.tokens;
    Tensor rowTerm = Tensor::empty(s.perToken());
    std::atomic<bool> anyKept{false};
    ThreadPool::global().parallelFor(rows, std::max<std::int64_t>(1, 16384 / d), [&](std::int64_t b, std::int64_t e) {
      bool kept = false;
      for (std::int64_t r = b; r < e; ++r) {
        float mass = auxMass.data()[r];
        kept |= mass > 0.0f;
        rowTerm.data()[r] = dotProduct(dz.data() + r * d, auxOut.data() + r * d, d) + o.lambda * mass;
      }
      if (kept) anyKept.store(true, std::memory_order_relaxed);
    });
    if (anyKept.load())
      flashBackwardAllHeads(s, q, k, v, dz, lse, rowTerm, o.auxScale, true, o.tau, o.lambda, true, dq, dk, dv);
  }
  return {dq, dk, dv, dWeight};
}

}  // namespace

void registerAttentionLinearAngularOps(OpRegistry& r) {
  r.add("attentionLinearAngular", {"q", "k", "v", "dconvWeight"}, attentionLinearAngularOp);
  r.add("attentionLinearAngularBackward",
        {"q", "k", "v", "dconvWeight", "qnorm", "knorm", "S", "znorm", "lse", "auxOut", "auxMass", "dy"},
        attentionLinearAngularBackwardOp);
}

}  // namespace castling::cpu
