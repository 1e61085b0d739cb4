// The inputs of Sparsifiner's connectivity predictor and their checks (docs/algorithms.md section 4),
// shared by every backend so that all accept the same inputs and name the same faults:
//   qp = q Wq^T + bq,  kp = k Wk^T + bk        (d -> d/2; weights shared by all heads)
//   Kp = kp^T P                                 (d/2 x r per head; P is N x r, r = max(1, N/8))
//   C  = softmax_row(scale * qp Kp)             (N x r per head)
//   approx = C Bb^T                             (N x N per head: only ever a block of rows)
#pragma once
#include <cstdint>

#include "../core/op_registry.h"
#include "heads_shape.h"

namespace castling::ops {

// r, the number of basis columns of P and Bb for N tokens: floor(N / 8), at least 1.
std::int64_t basisColumns(std::int64_t tokens);

struct PredictorShape {
  HeadsShape heads;       // of q and k: (B, H, N, d)
  std::int64_t half = 0;  // d / 2, the predictor's width
  std::int64_t basis = 0; // r
};

// The learned predictor parameters of one layer, shared across heads (PyTorch (out, in) layout).
struct PredictorWeights {
  Tensor wq, bq, wk, bk;  // (d/2, d), (d/2), (d/2, d), (d/2)
  Tensor p, bb;           // (N, r) each
};

// Reads and checks inputs (q, k, Wq, bq, Wk, bk, P, Bb) at positions 0..7 of `in`: all contiguous,
// or with rowsInPlace q and k with dense rows as they are (headsOperand).
PredictorShape readPredictorInputs(const char* op, const OpInputs& in, Tensor& q, Tensor& k,
                                   PredictorWeights& w, bool rowsInPlace = false);

// The coefficient softmax scale: attr `scale`, default 1/sqrt(H) as in the release.
float predictorScale(const char* op, const Attrs& attrs, const HeadsShape& s);

}  // namespace castling::ops
