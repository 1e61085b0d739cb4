#include "sparsifiner_common.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "cpu_ops.h"
#include "gemm.h"
#include "sparsifiner_kernels.h"

namespace castling::cpu {

using namespace ops;

namespace {

// Bb^T (r x N), kept with Bb's storage until Bb changes (Storage::derived): a weight, transposed
// on every call otherwise (serially, ~0.1 ms at N = 785).
std::shared_ptr<const Storage> basisTransposed(const Tensor& bb, std::int64_t N, std::int64_t r) {
  std::string key = "sparsifiner.BbT at " + std::to_string(bb.storageOffset()) + " " + std::to_string(N) + "x" +
                    std::to_string(r);
  return bb.storage()->derived(key, [&] {
    auto t = std::make_shared<Storage>(N * r);
    const float* from = bb.data();  // const: a read
    for (std::int64_t m = 0; m < N; ++m)
      for (std::int64_t j = 0; j < r; ++j) t->data()[j * N + m] = from[m * r + j];
    return t;
  });
}

}  // namespace

PredictorBasis computePredictorBasis(const PredictorShape& s, const Tensor& q, const Tensor& k,
                                     const PredictorWeights& w, float scale) {
  const HeadsShape& h = s.heads;
  const std::int64_t N = h.tokens, d = h.width, half = s.half, r = s.basis;
  PredictorBasis b;
  b.qp = Tensor::empty({h.batch, h.heads, N, half});
  b.kp = Tensor::empty({h.batch, h.heads, N, half});
  b.kpBasis = Tensor::empty({h.batch, h.heads, half, r});
  b.coeff = Tensor::empty({h.batch, h.heads, N, r});
  b.bbT = basisTransposed(w.bb, N, r);

  // The projections (weights shared by all heads), a GEMM per head of q or k: their rows lie ld
  // floats apart (d contiguous, 3 H d in splitHeads' views of the qkv projection). Jobs of one
  // head each; the GEMMs inside run inline.
  const HeadRows qRows = headRows(q), kRows = headRows(k);
  runAttentionJobs(2 * h.count(), 0, [&](std::int64_t job, float*) {
    const bool isQ = job < h.count();
    const std::int64_t head = isQ ? job : job - h.count();
    const HeadRows& rows = isQ ? qRows : kRows;
    GemmArgs g;
    g.transB = true;
    g.M = N; g.N = half; g.K = d;
    g.A = rows.head(head); g.lda = rows.ld;
    g.B = (isQ ? w.wq : w.wk).data(); g.ldb = d;
    g.C = (isQ ? b.qp : b.kp).data() + head * N * half; g.ldc = half;
    g.epilogue.bias = (isQ ? w.bq : w.bk).data();
    sgemm(g);
  });

  // Kp = kp^T P for every head of a batch entry at once: one (H half x N) (N x r) product, whose
  // rows (head, c) are kpBasis's layout. Head by head, each GEMM packed all of P (N x r, 4.9 MB at
  // N = 3137) for a product of only half rows; here P is packed once per entry, after kp's heads
  // are laid side by side (N x H half, half P's size at H = 6, d = 64) so that one lda reaches them.
  const std::int64_t sideBySideFloats = N * h.heads * half;
  auto entryBasis = [&](std::int64_t entry, float* kpSideBySide) {
    const float* kpEntry = b.kp.data() + entry * h.heads * N * half;
    ThreadPool::global().parallelFor(N, 256, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t n = begin; n < end; ++n)
        for (std::int64_t head = 0; head < h.heads; ++head)
          std::copy_n(kpEntry + (head * N + n) * half, half, kpSideBySide + (n * h.heads + head) * half);
    });
    GemmArgs g;  // (kp of every head)^T P: (H half x N) (N x r)
    g.transA = true;
    g.M = h.heads * half; g.N = r; g.K = N;
    g.A = kpSideBySide; g.lda = h.heads * half;
    g.B = w.p.data(); g.ldb = r;
    g.C = b.kpBasis.data() + entry * h.heads * half * r; g.ldc = r;
    sgemm(g);
  };
  const double entryFlops = 2.0 * double(h.heads * half) * double(r) * double(N);
  if (h.batch >= ThreadPool::global().threads() || entryFlops < 4e6) {
    // An entry per job (its copy and product inline): at 197 tokens an entry's product is ~2 MFLOP,
    // one thread's worth (sgemm gives a thread 2 MFLOP at least), and entry after entry they left
    // the other threads idle.
    runAttentionJobs(h.batch, sideBySideFloats, entryBasis);
  } else {
    // Fewer entries than threads (a long sequence of one image): each entry's copy and product
    // spread over the pool.
    Tensor kpSideBySide = Tensor::empty({N, h.heads * half});
    for (std::int64_t entry = 0; entry < h.batch; ++entry) entryBasis(entry, kpSideBySide.data());
  }

  // Per head (small products: one head per job, the GEMMs inside run inline).
  const SparsifinerKernels& kt = sparsifinerKernels();
  runAttentionJobs(h.count(), 0, [&](std::int64_t head, float*) {
    const float* qpHead = b.qp.data() + head * N * half;
    const float* kpBasis = b.kpBasis.data() + head * half * r;
    float* coeff = b.coeff.data() + head * N * r;
    GemmArgs g;  // C = softmax(scale qp Kp): (N x half) (half x r)
    g.M = N; g.N = r; g.K = half;
    g.A = qpHead; g.lda = half;
    g.B = kpBasis; g.ldb = r;
    g.C = coeff; g.ldc = r;
    sgemm(g);
    kt.softmaxRows(coeff, N, r, scale);
  });
  return b;
}

void approximateAttentionRows(const PredictorShape& s, const PredictorBasis& basis,
                              std::int64_t head, std::int64_t row0, std::int64_t rows, float* out) {
  const std::int64_t N = s.heads.tokens, r = s.basis;
  GemmArgs g;  // C[rows] Bb^T: (rows x r) (r x N), Bb^T stored as such (its packing is a copy)
  g.M = rows; g.N = N; g.K = r;
  g.A = basis.coeff.data() + (head * N + row0) * r; g.lda = r;
  g.B = basis.bbT->data(); g.ldb = N;
  g.C = out; g.ldc = N;
  sgemm(g);
}

std::int64_t approxRowBlock(std::int64_t headCount, std::int64_t tokens) {
  constexpr std::int64_t kMaxRows = 256, kMinRows = 16;
  std::int64_t threads = ThreadPool::global().threads();
  // At least two blocks per thread over all heads, when the rows allow it.
  std::int64_t blocksPerHead = std::max((tokens + kMaxRows - 1) / kMaxRows,
                                        (2 * threads + headCount - 1) / std::max<std::int64_t>(headCount, 1));
  std::int64_t rows = (tokens + blocksPerHead - 1) / blocksPerHead;
  return std::clamp(rows, std::min(kMinRows, tokens), kMaxRows);
}

void registerSparsifinerOps(OpRegistry& registry) {
  registerSparsifinerPredictorOps(registry);
  registerSparsifinerReconstructionOps(registry);
  registerSparseAttentionOps(registry);
}

}  // namespace castling::cpu
