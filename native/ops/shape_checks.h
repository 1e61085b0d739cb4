// Shape checks shared by the ops of every backend; each throws castling::Error with the op, the
// input's name, what it got and what it expected.
#pragma once
#include <algorithm>
#include <string>

#include "../core/error.h"
#include "../core/tensor.h"

namespace castling::ops {

inline void expectShape(const std::string& op, const char* name, const Tensor& t,
                        const Shape& expected) {
  if (t.shape() != expected) {
    fail(op, ": ", name, " has shape ", shapeToString(t.shape()), ", expected ",
         shapeToString(expected));
  }
}

inline void expectRankAtLeast(const std::string& op, const char* name, const Tensor& t, int rank) {
  if (t.rank() < rank) {
    fail(op, ": ", name, " has shape ", shapeToString(t.shape()), ", expected at least ", rank,
         " dimension", rank == 1 ? "" : "s");
  }
}

// Rows and columns of a tensor viewed as [rows, last dimension].
inline std::int64_t rowsOf(const Tensor& t) {
  return t.rank() == 0 ? 1 : t.numel() / std::max<std::int64_t>(1, t.dim(-1));
}
inline std::int64_t colsOf(const Tensor& t) { return t.rank() == 0 ? 1 : t.dim(-1); }

}  // namespace castling::ops
