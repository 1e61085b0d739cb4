// Sparsifiner training stage 1, attention reconstruction (docs/algorithms.md section 4): with the
// backbone frozen, the predictor learns from
//   L = sum over batch, heads and rows n >= 1 of sum_m (approx_nm - A_nm)^2,
//   A_nm = exp(attnScale q_n . k_m - lse_n)    (the dense softmax attention, lse from attentionSoftmax)
// The loss and its gradient G = dL/d approx exist one block of rows at a time; G flows back
// through approx = C Bb^T, the coefficient softmax, Kp = kp^T P and the two projections. The
// backbone's q and k are constants here (no gradient for them).
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "../core/thread_pool.h"
#include "gemm.h"
#include "../ops/shape_checks.h"
#include "sparsifiner_common.h"
#include "sparsifiner_kernels.h"

namespace castling::cpu {

using namespace ops;

namespace {

// c (+)= op(a) op(b) as one sgemm call (inline when inside a pool job).
void multiply(bool transA, bool transB, std::int64_t M, std::int64_t N, std::int64_t K, const float* a,
              std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
  GemmArgs g;
  g.transA = transA; g.transB = transB;
  g.M = M; g.N = N; g.K = K;
  g.A = a; g.lda = lda;
  g.B = b; g.ldb = ldb;
  g.C = c; g.ldc = ldc;
  g.accumulate = accumulate;
  sgemm(g);
}

// Column sums of a rows x cols matrix, in row order (deterministic).
Tensor columnSums(const Tensor& x, std::int64_t rows, std::int64_t cols) {
  Tensor sums = Tensor::zeros({cols});
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) sums.data()[c] += x.data()[r * cols + c];
  return sums;
}

// inputs (q, k, Wq, bq, Wk, bk, P, Bb, lse): as sparsifinerPredict, plus lse (B, H, N) from
// attentionSoftmax on the same q, k with scale attnScale.
// attrs scale (the predictor's, 1/sqrt(H)), attnScale (the attention's, 1/sqrt(d)).
// outputs [loss (1), dWq (d/2, d), dbq (d/2), dWk (d/2, d), dbk (d/2), dP (N, r), dBb (N, r)].
std::vector<Tensor> sparsifinerReconstructionOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparsifinerReconstruction";
  Tensor q, k;
  PredictorWeights w;
  PredictorShape s = readPredictorInputs(op, in, q, k, w);  // (weights read through const: see Storage::derived)
  const HeadsShape& h = s.heads;
  const std::int64_t N = h.tokens, d = h.width, half = s.half, r = s.basis;
  Tensor lse = in.required(8, "lse").contiguous();
  expectShape(op, "lse", lse, h.perToken());
  float scale = predictorScale(op, attrs, h);
  float attnScale = float(attrs.number("attnScale", 1.0 / std::sqrt(double(d))));
  PredictorBasis basis = computePredictorBasis(s, q, k, w, scale);

  // Pass 1, blocks of rows: G = 2 (approx - A) (0 on row 0), loss, dC = G Bb, dBb = sum G^T C.
  // Blocks go to workers in a fixed pattern (worker w takes blocks w, w + W, ...) and each worker
  // sums dBb and the loss in its own slot, so the sums do not depend on thread timing.
  const SparsifinerKernels& kt = sparsifinerKernels();
  std::int64_t blockRows = approxRowBlock(h.count(), N);
  std::int64_t blocks = (N + blockRows - 1) / blockRows, jobs = h.count() * blocks;
  int workers = int(std::min<std::int64_t>(ThreadPool::global().threads(), jobs));
  std::int64_t slotFloats = (2 * blockRows * N + N * r + 15) / 16 * 16;
  Tensor slots = Tensor::zeros({workers, slotFloats});
  std::vector<double> lossPerWorker(std::size_t(workers), 0.0);
  Tensor dCoeff = Tensor::empty({h.batch, h.heads, N, r});
  ThreadPool::global().run(workers, [&](int worker) {
    float* approx = slots.data() + worker * slotFloats;
    float* scores = approx + blockRows * N;
    float* dBbPartial = scores + blockRows * N;
    for (std::int64_t job = worker; job < jobs; job += workers) {
      std::int64_t head = job / blocks, row0 = job % blocks * blockRows;
      std::int64_t rows = std::min(blockRows, N - row0);
      const float* qHead = q.data() + head * N * d;
      const float* coeff = basis.coeff.data() + (head * N + row0) * r;
      approximateAttentionRows(s, basis, head, row0, rows, approx);
      multiply(false, true, rows, N, d, qHead + row0 * d, d, k.data() + head * N * d, d, scores, N, false);
      std::int64_t skip = row0 == 0 ? 1 : 0;  // the class-token row is not reconstructed
      lossPerWorker[std::size_t(worker)] += kt.reconstructionResidual(
          approx + skip * N, scores + skip * N, lse.data() + head * N + row0 + skip, rows - skip, N, attnScale);
      if (skip) std::fill(approx, approx + N, 0.0f);
      multiply(false, false, rows, r, N, approx, N, std::as_const(w.bb).data(), r, dCoeff.data() + (head * N + row0) * r, r, false);
      multiply(true, false, N, r, rows, approx, N, coeff, r, dBbPartial, r, true);
    }
  });

  // Pass 2, per head, O(N r d): back through the softmax, qp Kp and kp^T P.
  Tensor dqp = Tensor::empty({h.batch, h.heads, N, half}), dkp = Tensor::empty({h.batch, h.heads, N, half});
  Tensor dKpBasis = Tensor::empty({h.batch, h.heads, half, r});
  runAttentionJobs(h.count(), 0, [&](std::int64_t head, float*) {
    float* dS = dCoeff.data() + head * N * r;  // becomes dL/d(qp Kp) in place
    const float* coeff = basis.coeff.data() + head * N * r;
    for (std::int64_t n = 0; n < N; ++n) {
      float* g = dS + n * r;
      const float* c = coeff + n * r;
      float dot = 0;
      for (std::int64_t j = 0; j < r; ++j) dot += g[j] * c[j];
      for (std::int64_t j = 0; j < r; ++j) g[j] = scale * c[j] * (g[j] - dot);
    }
    const float* kpBasis = basis.kpBasis.data() + head * half * r;
    float* dKp = dKpBasis.data() + head * half * r;
    multiply(false, true, N, half, r, dS, r, kpBasis, r, dqp.data() + head * N * half, half, false);  // dS Kp^T
    multiply(true, false, half, r, N, basis.qp.data() + head * N * half, half, dS, r, dKp, r, false);  // qp^T dS
    multiply(false, true, N, half, r, std::as_const(w.p).data(), r, dKp, r, dkp.data() + head * N * half, half, false);  // P dKp^T
  });

  // The shared parameters sum over heads and batch, in a fixed order.
  Tensor dP = Tensor::empty({N, r});
  for (std::int64_t head = 0; head < h.count(); ++head) {  // dP = sum kp dKp
    multiply(false, false, N, r, half, basis.kp.data() + head * N * half, half, dKpBasis.data() + head * half * r, r,
             dP.data(), r, head > 0);
  }
  Tensor dBb = Tensor::zeros({N, r});
  for (int worker = 0; worker < workers; ++worker) {
    const float* part = slots.data() + worker * slotFloats + 2 * blockRows * N;
    for (std::int64_t i = 0; i < N * r; ++i) dBb.data()[i] += part[i];
  }
  const std::int64_t allRows = h.count() * N;
  Tensor dWq = Tensor::empty({half, d}), dWk = Tensor::empty({half, d});
  multiply(true, false, half, d, allRows, dqp.data(), half, q.data(), d, dWq.data(), d, false);  // dqp^T q
  multiply(true, false, half, d, allRows, dkp.data(), half, k.data(), d, dWk.data(), d, false);  // dkp^T k
  Tensor dbq = columnSums(dqp, allRows, half), dbk = columnSums(dkp, allRows, half);

  double loss = 0;
  for (double part : lossPerWorker) loss += part;
  Tensor lossOut = Tensor::empty({1});
  lossOut.data()[0] = float(loss);
  return {lossOut, dWq, dbq, dWk, dbk, dP, dBb};
}

}  // namespace

void registerSparsifinerReconstructionOps(OpRegistry& r) {
  r.add("sparsifinerReconstruction", {"q", "k", "Wq", "bq", "Wk", "bk", "P", "Bb", "lse"},
        sparsifinerReconstructionOp);
}

}  // namespace castling::cpu
