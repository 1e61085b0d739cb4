// What the CPU Sparsifiner ops share (docs/algorithms.md section 4): the low-rank basis every predictor
// op starts from (the inputs and their checks are every backend's: native/ops/sparsifiner_inputs.h):
//   qp = q Wq^T + bq,  kp = k Wk^T + bk        (d -> d/2; weights shared by all heads)
//   Kp = kp^T P                                 (d/2 x r per head; P is N x r, r = max(1, N/8))
//   C  = softmax_row(scale * qp Kp)             (N x r per head)
//   approx = C Bb^T                             (N x N per head: only ever a block of rows)
#pragma once
#include <cstdint>
#include <memory>

#include "../core/op_registry.h"
#include "../ops/sparsifiner_inputs.h"
#include "attention_common.h"

namespace castling::cpu {

struct PredictorBasis {
  Tensor qp;  // (B, H, N, d/2)
  Tensor kp;  // (B, H, N, d/2)
  Tensor kpBasis;  // Kp (B, H, d/2, r)
  Tensor coeff;    // C (B, H, N, r)
  std::shared_ptr<const Storage> bbT;  // Bb^T (r, N): the basis rows the approximation combines
};

// q and k (B, H, N, d) need dense rows (contiguous, or splitHeads' views).
PredictorBasis computePredictorBasis(const ops::PredictorShape& s, const Tensor& q, const Tensor& k,
                                     const ops::PredictorWeights& w, float scale);

// Rows [row0, row0 + rows) of one head's approximate attention: out (rows x N) = C Bb^T there.
// Runs single-threaded when called inside a pool job (nested sgemm runs inline).
void approximateAttentionRows(const ops::PredictorShape& s, const PredictorBasis& basis,
                              std::int64_t head, std::int64_t row0, std::int64_t rows, float* out);

// Rows per block of the approximate attention: big enough that the GEMM's packing of Bb (N x r per
// block) is cheap next to the block's product, small enough for a scratch of rows x N floats and
// for every thread to get blocks.
std::int64_t approxRowBlock(std::int64_t headCount, std::int64_t tokens);

void registerSparseAttentionOps(OpRegistry& registry);
void registerSparsifinerPredictorOps(OpRegistry& registry);
void registerSparsifinerReconstructionOps(OpRegistry& registry);

}  // namespace castling::cpu
