// The (B, H, N, d) layout of the attention ops' q, k and v, and its checks: shared by every
// backend so that all accept the same inputs and name the same faults.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/tensor.h"

namespace castling::ops {

// A (B, H, N, d) stack of heads.
struct HeadsShape {
  std::int64_t batch = 0, heads = 0, tokens = 0, width = 0;
  std::int64_t count() const { return batch * heads; }  // heads over the whole batch
  Shape full() const { return {batch, heads, tokens, width}; }
  Shape perToken() const { return {batch, heads, tokens}; }
  std::int64_t headFloats() const { return tokens * width; }
};

// The strides of a (B, H, N, d) view of heads that lie in token rows [B, N, parts x H x d]: part
// p's head h of image b is d columns of each of that image's token rows (splitHeads' q, k and v;
// with parts = 1, an attention output written in the order mergeHeads returns).
inline Shape headsInTokenRowsStrides(const HeadsShape& s, std::int64_t parts) {
  const std::int64_t row = parts * s.heads * s.width;
  return {s.tokens * row, s.width, row, 1};
}

// Those `parts` views of `rows` ([B, N, parts x H x d]): part p starts at column p x H x d.
std::vector<Tensor> headsInTokenRows(const Tensor& rows, const HeadsShape& s, std::int64_t parts);

// A (B, H, N, d) input as an op's kernels read it: contiguous, or with rowsInPlace t itself when
// its rows are dense (Tensor::hasDenseRows: splitHeads' views of the qkv projection), for kernels
// that read rows with a stride (the CPU ops); anything else is made contiguous.
inline Tensor headsOperand(const Tensor& t, bool rowsInPlace) {
  return rowsInPlace ? t.withDenseRows() : t.contiguous();
}

// Checks that t is (B, H, N, d) with N >= 1 and d >= 1; the error names the op and the input.
HeadsShape expectHeads(const char* op, const char* name, const Tensor& t);

// q's (B, H, N, d) shape (expectHeads), after checking that k and v have it too.
HeadsShape expectQkvHeads(const char* op, const Tensor& q, const Tensor& k, const Tensor& v);

}  // namespace castling::ops
