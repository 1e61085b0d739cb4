#include "heads_shape.h"

#include "../core/error.h"
#include "shape_checks.h"

namespace castling::ops {

std::vector<Tensor> headsInTokenRows(const Tensor& rows, const HeadsShape& s, std::int64_t parts) {
  std::vector<Tensor> out;
  for (std::int64_t p = 0; p < parts; ++p)
    out.push_back(rows.strided(s.full(), headsInTokenRowsStrides(s, parts), p * s.heads * s.width));
  return out;
}

HeadsShape expectHeads(const char* op, const char* name, const Tensor& t) {
  if (t.rank() != 4) {
    fail(op, ": ", name, " has shape ", shapeToString(t.shape()),
         ", expected 4 dimensions (batch, heads, tokens, head width)");
  }
  HeadsShape s{t.dim(0), t.dim(1), t.dim(2), t.dim(3)};
  if (s.tokens < 1 || s.width < 1) {
    fail(op, ": ", name, " has shape ", shapeToString(t.shape()),
         ", expected at least one token and a head width of at least 1");
  }
  return s;
}

HeadsShape expectQkvHeads(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  HeadsShape s = expectHeads(op, "q", q);
  expectShape(op, "k", k, s.full());
  expectShape(op, "v", v, s.full());
  return s;
}

}  // namespace castling::ops
