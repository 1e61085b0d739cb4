// What the CPU attention ops share: the job runner that gives each pool worker its own scratch
// area, and the flash backward. The (B, H, N, d) layout checks are every backend's
// (native/ops/heads_shape.h).
#pragma once
#include <cstdint>
#include <functional>

#include "../core/op_registry.h"
#include "../core/tensor.h"
#include "../ops/heads_shape.h"

namespace castling::cpu {

// Where the kernels find the rows of a (B, H, N, d) tensor with dense rows (contiguous, or
// splitHeads' views of the qkv projection): head `index` (b * H + h) starts at head(index) and
// its token rows lie `ld` floats apart.
template <typename Float>
struct HeadRowsOf {
  Float* base;
  std::int64_t heads, batchStride, headStride, ld;
  Float* head(std::int64_t index) const { return base + index / heads * batchStride + index % heads * headStride; }
  // Row `row` of all heads' token rows taken in order (head index * tokens + token).
  Float* tokenRow(std::int64_t row, std::int64_t tokens) const { return head(row / tokens) + row % tokens * ld; }
};
using HeadRows = HeadRowsOf<const float>;
// t must have dense rows (Tensor::hasDenseRows; Tensor::withDenseRows gives such a tensor).
HeadRows headRows(const Tensor& t);
// The rows of an output the op writes.
HeadRowsOf<float> outputRows(Tensor& t);

// An attention op's (B, H, N, d) output y: contiguous, or with the attribute tokenOrder laid out as
// (B, N, H, d), each token's heads side by side as mergeHeads returns them, and viewed as
// (B, H, N, d): mergeHeads then hands it on without a copy (areTokenOrderHeads).
Tensor headsOutput(const ops::HeadsShape& s, const Attrs& attrs);
// A backward op's dq, dk and dv, uninitialised (its kernels write every row before any adds into
// it): three contiguous tensors, or with the attribute tokenOrder views of one (B, N, 3 x H x d)
// buffer laid out as splitHeads reads q, k and v from the qkv projection, which
// mergeHeads([dq, dk, dv]) then hands on without a copy.
std::vector<Tensor> headsGradients(const ops::HeadsShape& s, const Attrs& attrs);

// Runs fn(job, scratch) for job in [0, jobs) on the global pool, handing jobs out dynamically.
// Each worker gets its own scratch of scratchFloats floats, allocated here on the calling thread
// first: running out of memory is then a castling::Error for the caller, never an exception
// inside a worker.
void runAttentionJobs(std::int64_t jobs, std::int64_t scratchFloats,
                      const std::function<void(std::int64_t job, float* scratch)>& fn);

// How many ranges to cut each head's `blocks` blocks into so that every thread has work even
// when there are fewer heads than threads (1 when there are plenty of heads).
std::int64_t rangesPerHead(std::int64_t headCount, std::int64_t blocks);

// a . b over n floats (portable; for the O(N d) row terms around the kernels).
float dotProduct(const float* a, const float* b, std::int64_t n);

// The flash backward over every head (attention_softmax.cpp), shared by softmax attention, which
// has it write dq, dk and dv, and the auxiliary branch of linear-angular attention, which has it
// add into them (`accumulate`; see FlashBackwardArgs). q, k, v and dout need dense rows
// (HeadRows), and so do dq, dk and dv (contiguous, or headsGradients' views).
void flashBackwardAllHeads(const ops::HeadsShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& dout, const Tensor& lse, const Tensor& rowTerm, float scale,
                           bool masked, float tau, float lambda, bool accumulate, Tensor& dq, Tensor& dk,
                           Tensor& dv);

void registerAttentionSoftmaxOps(OpRegistry& registry);
void registerAttentionLinearAngularOps(OpRegistry& registry);

}  // namespace castling::cpu
