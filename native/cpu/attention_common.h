// What the attention ops share: the (B, H, N, d) layout checks and the job runner that gives
// each pool worker its own scratch area.
#pragma once
#include <cstdint>
#include <functional>

#include "../core/op_registry.h"
#include "../core/tensor.h"

namespace castling::cpu {

// A (B, H, N, d) stack of heads.
struct HeadsShape {
  std::int64_t batch = 0, heads = 0, tokens = 0, width = 0;
  std::int64_t count() const { return batch * heads; }  // heads over the whole batch
  Shape full() const { return {batch, heads, tokens, width}; }
  Shape perToken() const { return {batch, heads, tokens}; }
  std::int64_t headFloats() const { return tokens * width; }
};

// Checks that t is (B, H, N, d) with N >= 1 and d >= 1; the error names the op and the input.
HeadsShape expectHeads(const char* op, const char* name, const Tensor& t);

// q's (B, H, N, d) shape (expectHeads), after checking that k and v have it too.
HeadsShape expectQkvHeads(const char* op, const Tensor& q, const Tensor& k, const Tensor& v);

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

// The flash backward over every head (attention_softmax.cpp), shared by softmax attention and the
// auxiliary branch of linear-angular attention: adds into dq, dk and dv (see FlashBackwardArgs).
void flashBackwardAllHeads(const HeadsShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& dout, const Tensor& lse, const Tensor& rowTerm, float scale,
                           bool masked, float tau, float lambda, Tensor& dq, Tensor& dk, Tensor& dv);

void registerAttentionSoftmaxOps(OpRegistry& registry);
void registerAttentionLinearAngularOps(OpRegistry& registry);

}  // namespace castling::cpu
