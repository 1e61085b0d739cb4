// Sparsifiner's connectivity predictor (docs/algorithms.md section 4): from the low-rank approximate
// attention approx = C Bb^T it picks, per query row, the keys the sparse attention will use. The
// approximation exists one block of rows at a time (rows x N floats per worker), never N x N.
// The mask carries no gradient, so there is no backward op: the predictor learns through
// sparsifinerReconstruction (stage 1) only.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops/shape_checks.h"
#include "sparsifiner_common.h"
#include "sparsifiner_kernels.h"

namespace castling::cpu {

using namespace ops;

namespace {

enum class SelectMode { TopK = 0, Threshold = 1 };

// Up to this many kept coefficients, the top-k reads the approximation's row straight from the
// basis rows (selectTopKOfCombination: one pass that reads coefficientKeep rows per vector);
// beyond, combineRows' sweeps of four rows stream better.
constexpr std::int64_t kFusedCoefficients = 8;

// Floats of scratch for n values, in whole cache lines.
std::int64_t scratchFloatsFor(std::int64_t n) { return (n + 15) / 16 * 16; }

// The coefficient top-k (the release's BASIS_COEF.TOPK): keeps the `keep` largest coefficients
// of row c (r of them; ties to the lower index), zeroes the others in place, and lists the kept
// ones in `which` (ascending). The row of approx then costs keep N multiply-adds instead of r N.
void keepLargestCoefficients(const SparsifinerKernels& kt, float* c, std::int64_t r, std::int64_t keep,
                             std::int32_t* which, float* picked, float* scratch) {
  kt.selectTopK(c, r, keep, picked, scratch);  // positions, ascending
  for (std::int64_t t = 0; t < keep; ++t) {
    which[t] = std::int32_t(picked[t]);
    picked[t] = c[which[t]];
  }
  // The row zeroed whole and the kept values put back: no branch per coefficient.
  std::fill(c, c + r, 0.0f);
  for (std::int64_t t = 0; t < keep; ++t) c[which[t]] = picked[t];
}

// inputs (q, k, Wq, bq, Wk, bk, P, Bb): q, k (B, H, N, d) with d even, read in place when their
// rows are dense (splitHeads' views); Wq, Wk (d/2, d); bq, bk
// (d/2); P, Bb (N, r), r = max(1, floor(N/8)). A shared basis (P = Bb) is the same tensor twice.
// attrs keepRate (0.25, in (0, 1]), scale (1/sqrt(H)), mode (0 top-k, 1 threshold), threshold
// (mode 1, required), coefficientKeep (0 = all r; else 1..r: the top-k on the coefficients).
// outputs [indices (B, H, N, kept), C (B, H, N, r), qp (B, H, N, d/2), Kp (B, H, d/2, r)]:
//   mode 0: kept = clamp(ceil(keepRate N), 1, N) (double precision); row n >= 1 holds the indices
//           of the kept largest entries of approx row n, ascending, ties to the lower index.
//   mode 1: kept = N; row n >= 1 holds the keys with approx > threshold (at least the argmax),
//           ascending, then -1 padding.
//   Row 0 (the class token, dense in sparseAttention) is all -1 in both modes.
//   With coefficientKeep, approx = C' Bb^T where C' keeps the coefficientKeep largest entries of
//   each row of C (zeros elsewhere): C' is the C output.
std::vector<Tensor> sparsifinerPredictOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparsifinerPredict";
  Tensor q, k;
  PredictorWeights w;
  PredictorShape s = readPredictorInputs(op, in, q, k, w, true);
  const HeadsShape& h = s.heads;
  const std::int64_t N = h.tokens, r = s.basis;
  float scale = predictorScale(op, attrs, h);
  double keepRate = attrs.number("keepRate", 0.25);
  if (!(keepRate > 0.0 && keepRate <= 1.0)) fail(op, ": keepRate is ", keepRate, ", expected a number in (0, 1]");
  auto mode = SelectMode(attrs.integer("mode", 0, 0, 1));
  float threshold = 0.0f;
  if (mode == SelectMode::Threshold) {
    if (!attrs.has("threshold")) fail(op, ": mode 1 (threshold) needs the attribute 'threshold'");
    threshold = float(attrs.number("threshold", 0.0));
    if (!std::isfinite(threshold)) fail(op, ": threshold is ", threshold, ", expected a finite number");
  }
  std::int64_t coefficientKeep = attrs.integer("coefficientKeep", 0, 0, r);
  bool sparseCoefficients = coefficientKeep > 0 && coefficientKeep < r;
  std::int64_t kept = mode == SelectMode::TopK
                          ? std::clamp<std::int64_t>(std::int64_t(std::ceil(keepRate * double(N))), 1, N)
                          : N;

  PredictorBasis basis = computePredictorBasis(s, q, k, w, scale);
  Tensor indices = Tensor::empty({h.batch, h.heads, N, kept});
  const SparsifinerKernels& kt = sparsifinerKernels();
  std::int64_t blockRows = approxRowBlock(h.count(), N);
  std::int64_t blocks = (N + blockRows - 1) / blockRows;
  // The approximation of a block of rows (one GEMM), or of one row at a time (coefficient top-k).
  std::int64_t approxFloats = scratchFloatsFor((sparseCoefficients ? 1 : blockRows) * N);
  std::int64_t coefficientFloats = sparseCoefficients ? 2 * scratchFloatsFor(r) : 0;
  std::int64_t selectFloats = kt.topKScratchFloats(N);
  runAttentionJobs(h.count() * blocks, approxFloats + coefficientFloats + selectFloats, [&](std::int64_t job, float* scratch) {
    std::int64_t head = job / blocks, row0 = job % blocks * blockRows;
    std::int64_t rows = std::min(blockRows, N - row0);
    float* approx = scratch;
    float* selectScratch = scratch + approxFloats + coefficientFloats;
    auto select = [&](std::int64_t row, const float* approxRow) {
      float* out = indices.data() + (head * N + row) * kept;
      if (row == 0)
        std::fill(out, out + kept, -1.0f);
      else if (mode == SelectMode::TopK)
        kt.selectTopK(approxRow, N, kept, out, selectScratch);
      else
        kt.selectAboveThreshold(approxRow, N, threshold, out, selectScratch);
    };
    if (sparseCoefficients) {
      // Row by row: each row of approx is selected from while it is still in L1.
      auto* which = reinterpret_cast<std::int32_t*>(scratch + approxFloats);
      float* picked = scratch + approxFloats + coefficientFloats / 2;
      for (std::int64_t i = 0; i < rows; ++i) {
        float* c = basis.coeff.data() + (head * N + row0 + i) * r;
        keepLargestCoefficients(kt, c, r, coefficientKeep, which, picked, selectScratch);
        if (row0 + i > 0 && mode == SelectMode::TopK && coefficientKeep <= kFusedCoefficients) {
          float* out = indices.data() + (head * N + row0 + i) * kept;
          kt.selectTopKOfCombination(picked, which, coefficientKeep, basis.bbT->data(), N, kept, out, selectScratch);
          continue;
        }
        if (row0 + i > 0) kt.combineRows(picked, which, coefficientKeep, basis.bbT->data(), N, approx);
        select(row0 + i, approx);
      }
    } else {
      approximateAttentionRows(s, basis, head, row0, rows, approx);  // a block of rows: one GEMM
      for (std::int64_t i = 0; i < rows; ++i) select(row0 + i, approx + i * N);
    }
  });
  return {indices, basis.coeff, basis.qp, basis.kpBasis};
}

}  // namespace

void registerSparsifinerPredictorOps(OpRegistry& r) {
  r.add("sparsifinerPredict", {"q", "k", "Wq", "bq", "Wk", "bk", "P", "Bb"}, sparsifinerPredictOp);
}

}  // namespace castling::cpu
