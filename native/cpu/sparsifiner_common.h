// What the Sparsifiner ops share (ALGORITHMS.md section 4): the connectivity predictor's inputs
// and their checks, and the low-rank basis every predictor op starts from:
//   qp = q Wq^T + bq,  kp = k Wk^T + bk        (d -> d/2; weights shared by all heads)
//   Kp = kp^T P                                 (d/2 x r per head; P is N x r, r = max(1, N/8))
//   C  = softmax_row(scale * qp Kp)             (N x r per head)
//   approx = C Bb^T                             (N x N per head: only ever a block of rows)
#pragma once
#include <cstdint>
#include <memory>

#include "../core/op_registry.h"
#include "attention_common.h"

namespace castling::cpu {

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

// Reads and checks inputs (q, k, Wq, bq, Wk, bk, P, Bb) at positions 0..7 of `in`.
PredictorShape readPredictorInputs(const char* op, const OpInputs& in, Tensor& q, Tensor& k,
                                   PredictorWeights& w);

// The coefficient softmax scale: attr `scale`, default 1/sqrt(H) as in the release.
float predictorScale(const char* op, const Attrs& attrs, const HeadsShape& s);

struct PredictorBasis {
  Tensor qp;  // (B, H, N, d/2)
  Tensor kp;  // (B, H, N, d/2)
  Tensor kpBasis;  // Kp (B, H, d/2, r)
  Tensor coeff;    // C (B, H, N, r)
  std::shared_ptr<const Storage> bbT;  // Bb^T (r, N): the basis rows the approximation combines
};

PredictorBasis computePredictorBasis(const PredictorShape& s, const Tensor& q, const Tensor& k,
                                     const PredictorWeights& w, float scale);

// Rows [row0, row0 + rows) of one head's approximate attention: out (rows x N) = C Bb^T there.
// Runs single-threaded when called inside a pool job (nested sgemm runs inline).
void approximateAttentionRows(const PredictorShape& s, const PredictorBasis& basis,
                              std::int64_t head, std::int64_t row0, std::int64_t rows, float* out);

// Rows per block of the approximate attention: big enough that the GEMM's packing of Bb (N x r per
// block) is cheap next to the block's product, small enough for a scratch of rows x N floats and
// for every thread to get blocks.
std::int64_t approxRowBlock(std::int64_t headCount, std::int64_t tokens);

void registerSparseAttentionOps(OpRegistry& registry);
void registerSparsifinerPredictorOps(OpRegistry& registry);
void registerSparsifinerReconstructionOps(OpRegistry& registry);

}  // namespace castling::cpu
