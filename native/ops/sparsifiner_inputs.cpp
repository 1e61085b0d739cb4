#include "sparsifiner_inputs.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"
#include "shape_checks.h"

namespace castling::ops {

std::int64_t basisColumns(std::int64_t tokens) { return std::max<std::int64_t>(1, tokens / 8); }

namespace {

// P and Bb are (N, r) with N fixed by the image size: a mismatch in N is a config error (the
// parameters were made for another resolution), so it gets its own message.
void expectBasisMatrix(const char* op, const char* name, const Tensor& t, std::int64_t tokens) {
  std::int64_t r = basisColumns(tokens);
  if (t.rank() != 2) {
    fail(op, ": ", name, " has shape ", shapeToString(t.shape()), ", expected [N, r] = [", tokens, ", ", r, "]");
  }
  if (t.dim(0) != tokens) {
    fail(op, ": the token count is fixed by the config: ", name, " has N=", t.dim(0), ", q has N=", tokens,
         " (", name, " has shape ", shapeToString(t.shape()), ", expected [", tokens, ", ", r, "])");
  }
  if (t.dim(1) != r) {
    fail(op, ": ", name, " has shape ", shapeToString(t.shape()), ", expected [", tokens, ", ", r,
         "] (r = max(1, floor(N / 8)))");
  }
}

}  // namespace

PredictorShape readPredictorInputs(const char* op, const OpInputs& in, Tensor& q, Tensor& k,
                                   PredictorWeights& w, bool rowsInPlace) {
  q = headsOperand(in.required(0, "q"), rowsInPlace);
  k = headsOperand(in.required(1, "k"), rowsInPlace);
  PredictorShape s;
  s.heads = expectHeads(op, "q", q);
  expectShape(op, "k", k, s.heads.full());
  const std::int64_t d = s.heads.width;
  if (d % 2 != 0) {
    fail(op, ": q has shape ", shapeToString(q.shape()), " with head width d=", d,
         ", expected an even d (the predictor projects d to d/2)");
  }
  s.half = d / 2;
  s.basis = basisColumns(s.heads.tokens);
  w.wq = in.required(2, "Wq").contiguous();
  w.bq = in.required(3, "bq").contiguous();
  w.wk = in.required(4, "Wk").contiguous();
  w.bk = in.required(5, "bk").contiguous();
  w.p = in.required(6, "P").contiguous();
  w.bb = in.required(7, "Bb").contiguous();
  expectShape(op, "Wq", w.wq, {s.half, d});
  expectShape(op, "bq", w.bq, {s.half});
  expectShape(op, "Wk", w.wk, {s.half, d});
  expectShape(op, "bk", w.bk, {s.half});
  expectBasisMatrix(op, "P", w.p, s.heads.tokens);
  expectBasisMatrix(op, "Bb", w.bb, s.heads.tokens);
  return s;
}

float predictorScale(const char* op, const Attrs& attrs, const HeadsShape& s) {
  float scale = float(attrs.number("scale", 1.0 / std::sqrt(double(s.heads))));
  if (!std::isfinite(scale)) fail(op, ": scale is ", scale, ", expected a finite number");
  return scale;
}

}  // namespace castling::ops
