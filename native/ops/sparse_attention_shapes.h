// The input checks of Sparsifiner's sparse attention (sparseAttention and its backward), shared by
// the CPU ops (sparse_attention.cpp) and the CUDA ops (native/cuda/sparsifiner.cu) so that both
// accept the same inputs and name the same faults: the shapes, the scale attribute, and the rule a
// row of key indices must follow with the message for a row that breaks it. The kernels find bad
// rows on their own (the CUDA ones on the device); the ops then report the first one in index
// order with badIndexRow. The CUDA side adds its element-type and head-width checks.
#pragma once
#include <cmath>
#include <cstdint>

#include "../core/op_registry.h"
#include "heads_shape.h"
#include "shape_checks.h"

namespace castling::ops {

// The attribute scale, default 1/sqrt(d).
inline float sparseAttentionScale(const char* op, const Attrs& attrs, std::int64_t width) {
  float scale = float(attrs.number("scale", 1.0 / std::sqrt(double(width))));
  if (!std::isfinite(scale)) fail(op, ": scale is ", scale, ", expected a finite number");
  return scale;
}

// The index tensor's per-row slot count, after checking its shape against q's.
inline std::int64_t expectIndexShape(const char* op, const Tensor& indices, const HeadsShape& s) {
  if (indices.rank() != 4 || indices.dim(0) != s.batch || indices.dim(1) != s.heads ||
      indices.dim(2) != s.tokens || indices.dim(3) < 1 || indices.dim(3) > s.tokens) {
    fail(op, ": indices has shape ", shapeToString(indices.shape()), ", expected [", s.batch, ", ", s.heads,
         ", ", s.tokens, ", kept] with 1 <= kept <= N = ", s.tokens);
  }
  // Key indices travel as float32: exact only up to 2^24.
  if (s.tokens > (std::int64_t(1) << 24)) fail(op, ": N=", s.tokens, " tokens, expected at most 2^24");
  return indices.dim(3);
}

// Whether row (of `kept` slots) is a valid key list: -1 padding or integers in [0, n), the kept
// ones strictly increasing (so no key counts twice), at least one kept. Returns the first bad
// slot, kept when the row is fine and -1 for "keeps nothing".
inline std::int64_t firstBadSlot(const float* row, std::int64_t kept, std::int64_t n) {
  float previous = -1.0f;
  bool any = false;
  for (std::int64_t j = 0; j < kept; ++j) {
    float m = row[j];
    if (m == -1.0f) continue;
    // (The integer test casts only after the range test, where the cast is defined.)
    if (!(m >= 0.0f && m < float(n) && m > previous) || float(std::int32_t(m)) != m) return j;
    previous = m;
    any = true;
  }
  return any ? kept : -1;
}

// Fails with what is wrong with index row `row` (over all heads: (b * H + h) * N + n), whose
// `kept` slots are at `slots` in host memory; a row that is valid after all is an internal error.
[[noreturn]] inline void badIndexRow(const char* op, const float* slots, std::int64_t kept, const HeadsShape& s,
                                     std::int64_t row) {
  std::int64_t head = row / s.tokens, n = row % s.tokens;
  std::int64_t b = head / s.heads, h = head % s.heads;
  std::int64_t j = firstBadSlot(slots, kept, s.tokens);
  if (j < 0) {
    fail(op, ": indices row [", b, ", ", h, ", ", n, "] keeps no key (all -1), expected at least one key for ",
         "every query row n >= 1");
  }
  if (j < kept) {
    fail(op, ": indices[", b, ", ", h, ", ", n, ", ", j, "] is ", slots[j], ", expected -1 (padding) or an integer ",
         "key index in [0, ", s.tokens, ") greater than the row's previous kept index");
  }
  failAs(ErrorKind::Internal, op, ": the kernel rejected indices row [", b, ", ", h, ", ", n, "] but the row is valid (internal error)");
}

// q, k, v (B, H, N, d) and the key indices (B, H, N, kept, contiguous).
struct SparseInputs {
  Tensor q, k, v, indices;
  HeadsShape s;
  std::int64_t kept = 0;
};

// Inputs 0-3 (q, k, v, indices), k and v shaped like q, indices by expectIndexShape. With
// rowsInPlace q, k and v keep dense rows in place (headsOperand), k and v with one row stride.
inline SparseInputs readSparseInputs(const char* op, const OpInputs& in, bool rowsInPlace = false) {
  SparseInputs x;
  x.q = headsOperand(in.required(0, "q"), rowsInPlace);
  x.k = headsOperand(in.required(1, "k"), rowsInPlace);
  x.v = headsOperand(in.required(2, "v"), rowsInPlace);
  if (x.k.rank() == 4 && x.v.rank() == 4 && x.k.strides()[2] != x.v.strides()[2]) {
    x.k = x.k.contiguous();  // the gathers turn a key into one row offset for k and v
    x.v = x.v.contiguous();
  }
  x.indices = in.required(3, "indices").contiguous();
  x.s = expectQkvHeads(op, x.q, x.k, x.v);
  x.kept = expectIndexShape(op, x.indices, x.s);
  return x;
}

// The backward's other inputs: the forward's y and lse and the gradient dy (inputs 4-6).
struct SparseSaved {
  Tensor y, lse, dy;
};

// With rowsInPlace, y and dy keep dense rows in place like q, k and v.
inline SparseSaved readSparseSaved(const char* op, const OpInputs& in, const HeadsShape& s, bool rowsInPlace = false) {
  SparseSaved t{headsOperand(in.required(4, "y"), rowsInPlace), in.required(5, "lse").contiguous(),
                headsOperand(in.required(6, "dy"), rowsInPlace)};
  expectShape(op, "y", t.y, s.full());
  expectShape(op, "lse", t.lse, s.perToken());
  expectShape(op, "dy", t.dy, s.full());
  return t;
}

}  // namespace castling::ops
