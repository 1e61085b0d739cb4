// The Sparsifiner group of the CPU kernel table (cpu_kernels.h; docs/algorithms.md section 4), one
// instance per instruction set, like attention_kernels.h: the ops (sparse_attention.cpp,
// sparsifiner_predictor.cpp, sparsifiner_reconstruction.cpp) own shapes, threads and buffers; the
// per-row inner loops live in sparsifiner_kernels.inc, compiled once per ISA in
// isa/<name>/kernels.cpp.
//
// Kernels work on ONE head (rows of width d, contiguous unless the arguments give a row stride),
// never allocate and never throw (they run inside pool workers): they get a scratch area of the
// size the matching *ScratchFloats asked for.
#pragma once
#include <cstdint>

namespace castling::cpu {

// Sparse attention of one head. Row 0 (the class token) attends to every key; row n >= 1 to the
// keys indices[n * kept + j] for j < kept, skipping -1 padding. The kernels check the rows as
// they read them (integers in [-1, n), kept ones strictly increasing, at least one per row) and
// return false on a bad row, leaving outputs unfinished; the op then reports the error.
// Every (n, d) operand has its rows ld* floats apart (d when contiguous; splitHeads' views of the
// qkv projection and the token-order outputs lie further apart); lse and the indices are contiguous.
struct SparseAttentionArgs {
  const float* q;
  const float* k;
  const float* v;
  std::int64_t ldq, ldkv;  // k and v share a row stride (the gathers turn a key into one row offset)
  const float* indices;  // (n, kept), key indices stored as floats
  std::int64_t n, d, kept;
  float scale;  // scores s = scale * q.k
  // forward: y = softmax(s over the kept keys) v, lse = log-sum-exp of the kept scores.
  float* y;
  std::int64_t ldy;
  float* lse;
  // backward (y and lse as saved by the forward): with A recomputed from lse,
  //   ds = A . (dy v^T - dy.y),  dq = scale ds k,  dk += scale ds^T q,  dv += A^T dy
  const float* dy;
  const float* savedY;
  std::int64_t lddy, ldSavedY;
  const float* savedLse;
  float* dq;  // written for the rows of the range
  float* dk;  // accumulated (the caller gives each concurrent range its own buffer)
  float* dv;  // accumulated, like dk
  std::int64_t lddq, lddkv;
};

// Query rows the forward (and the backward) take together: the block walks its key lists in step,
// so the stretch of K and V a step touches in L1 serves this many queries (the forward's callers
// hand out jobs of this many rows).
constexpr std::int64_t kSparseBlockRows = 32;

struct SparsifinerKernels {
  std::int64_t (*sparseForwardScratchFloats)(std::int64_t n, std::int64_t d, std::int64_t kept);
  std::int64_t (*sparseBackwardScratchFloats)(std::int64_t n, std::int64_t d, std::int64_t kept);
  // Query rows [rowBegin, rowEnd) of one head; false when an index row is invalid.
  bool (*sparseForward)(const SparseAttentionArgs& args, std::int64_t rowBegin, std::int64_t rowEnd,
                        float* scratch);
  bool (*sparseBackward)(const SparseAttentionArgs& args, std::int64_t rowBegin, std::int64_t rowEnd,
                         float* scratch);

  // Floats of scratch selectTopK needs for a row of n.
  std::int64_t (*topKScratchFloats)(std::int64_t n);
  // Writes the indices of the `keep` largest entries of row[0, n) to out in ascending order (as
  // floats). Exact: ties go to the lower index; NaN ranks below everything.
  void (*selectTopK)(const float* row, std::int64_t n, std::int64_t keep, float* out, float* scratch);
  // Writes the indices of the entries of row[0, n) above `threshold` to out, ascending, then -1 up
  // to n; a row with none above keeps its largest entry alone (the lowest index among equal
  // maxima; NaN ranks below everything). Scratch: topKScratchFloats(n).
  void (*selectAboveThreshold)(const float* row, std::int64_t n, float threshold, float* out, float* scratch);

  // out[m] = sum over t < count of coeff[t] * rows[which[t] * n + m], for m < n: one row of the
  // approximate attention from the few coefficients the coefficient top-k keeps.
  void (*combineRows)(const float* coeff, const std::int32_t* which, std::int64_t count, const float* rows,
                      std::int64_t n, float* out);
  // selectTopK(row, n, keep, out) of the row combineRows(coeff, which, count, rows, n) would write,
  // without writing it (the same floats, so the same answer). Scratch: topKScratchFloats(n).
  void (*selectTopKOfCombination)(const float* coeff, const std::int32_t* which, std::int64_t count,
                                  const float* rows, std::int64_t n, std::int64_t keep, float* out, float* scratch);

  // x[r][c] = softmax over c of (scale * x[r][c]) for rows x cols, in place.
  void (*softmaxRows)(float* x, std::int64_t rows, std::int64_t cols, float scale);

  // The attention-reconstruction residual of a block of rows (sparsifinerReconstruction): with
  // A = exp(attnScale * scores - lse[row]) for each row, replaces approx by G = 2 (approx - A)
  // and returns sum (approx - A)^2. Rows are contiguous with stride cols.
  double (*reconstructionResidual)(float* approx, const float* scores, const float* lse,
                                   std::int64_t rows, std::int64_t cols, float attnScale);
};

// The Sparsifiner group of the active table (cpuKernels().sparsifiner, see cpu_kernels.h).
const SparsifinerKernels& sparsifinerKernels();

}  // namespace castling::cpu
