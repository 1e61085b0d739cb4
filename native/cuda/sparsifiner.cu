// Sparsifiner on the GPU (the CPU's sparsifiner_common.cpp, sparsifiner_predictor.cpp,
// sparse_attention.cpp, sparsifiner_reconstruction.cpp; docs/algorithms.md section 4):
//   basis          qp, kp (cuBLAS + bias), Kp = kp^T P and C = softmax(scale qp Kp) (batched cuBLAS)
//   predict        a block per query row: the row of approx = C Bb^T in shared memory, then the
//                  exact top-k as on the CPU (the k-th largest key found bit by bit, ties to the
//                  lower index, indices ascending) or the threshold rule
//   sparse attn    a warp per query row over its kept keys (online softmax, 32 keys at a time),
//                  the index rows checked on the way; backward: dq per row, dk and dv scattered
//                  with atomics (so their last bits may vary from run to run)
//   reconstruction the dense softmax attention and approx a group of heads at a time (cuBLAS),
//                  the residual kernel, then the predictor's gradients through cuBLAS
// float32.
#include <cmath>
#include <vector>

#include "../ops/heads_shape.h"
#include "../ops/shape_checks.h"
#include "../ops/sparse_attention_shapes.h"
#include "../ops/sparsifiner_inputs.h"
#include "cuda_blas.h"
#include "cuda_kernels.cuh"
#include "cuda_ops.h"
#include "cuda_reduce.cuh"

namespace castling::cuda {

using ops::badIndexRow;
using ops::basisColumns;
using ops::expectHeads;
using ops::expectShape;
using ops::HeadsShape;
using ops::PredictorShape;
using ops::predictorScale;  // default 1/sqrt(H), as the release
using ops::readSparseInputs;
using ops::readSparseSaved;
using ops::SparseInputs;
using ops::sparseAttentionScale;
using ops::SparseSaved;

namespace {

// ---- inputs (the ops' readPredictorInputs, float32 on the device) ----

struct Predictor {
  PredictorShape s;
  Tensor q, k;
  ops::PredictorWeights w;
};

Predictor readPredictor(const char* op, const OpInputs& in) {
  Predictor x;
  x.s = ops::readPredictorInputs(op, in, x.q, x.k, x.w);
  for (const Tensor* t : {&x.q, &x.k, &x.w.wq, &x.w.bq, &x.w.wk, &x.w.bk, &x.w.p, &x.w.bb}) expectFloat32(op, "every input", *t);
  return x;
}

// ---- the basis: qp, kp, Kp, C ----

__global__ void addBiasRowsKernel(float* x, const float* bias, std::int64_t n, std::int64_t cols) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    x[i] += bias[i % cols];
}

// x = softmax(scale x) per row, in place; one warp per row.
__global__ void scaledSoftmaxRowsKernel(float* x, std::int64_t rows, std::int64_t cols, float scale) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* xr = x + row * cols;
  float mx = -INFINITY;
  for (std::int64_t c = lane; c < cols; c += 32) mx = fmaxf(mx, xr[c] * scale);
  mx = warpMax(mx);
  float sum = 0.0f;
  for (std::int64_t c = lane; c < cols; c += 32) sum += expf(xr[c] * scale - mx);
  const float inv = 1.0f / warpSum(sum);
  for (std::int64_t c = lane; c < cols; c += 32) xr[c] = expf(xr[c] * scale - mx) * inv;
}

struct Basis {
  Tensor qp, kp, kpBasis, coeff;
};

Basis computeBasis(const Predictor& x, float scale) {
  const HeadsShape& h = x.s.heads;
  const std::int64_t N = h.tokens, d = h.width, half = x.s.half, r = x.s.basis, count = h.count();
  Basis b;
  b.qp = deviceEmpty({h.batch, h.heads, N, half});
  b.kp = deviceEmpty({h.batch, h.heads, N, half});
  b.kpBasis = deviceEmpty({h.batch, h.heads, half, r});
  b.coeff = deviceEmpty({h.batch, h.heads, N, r});
  auto project = [&](const Tensor& in, const Tensor& w, const Tensor& bias, Tensor& out) {
    gemm(denseGemm(count * N, half, d, in.data(), false, w.data(), true, out.data()));
    if (out.numel()) {
      launch(addBiasRowsKernel, gridFor(out.numel()), kThreads, 0, stream(), out.data(), bias.data(), out.numel(), half);
      CASTLING_CUDA_CHECK_LAUNCH();
    }
  };
  project(x.q, x.w.wq, x.w.bq, b.qp);
  project(x.k, x.w.wk, x.w.bk, b.kp);
  Gemm g;  // Kp = kp^T P per head: (half x N)(N x r), P shared
  g.transA = true;
  g.M = half; g.N = r; g.K = N;
  g.A = b.kp.data(); g.lda = half; g.strideA = N * half;
  g.B = x.w.p.data(); g.ldb = r; g.strideB = 0;
  g.C = b.kpBasis.data(); g.ldc = r; g.strideC = half * r;
  g.batch = count;
  gemm(g);
  g = Gemm();  // C = qp Kp per head: (N x half)(half x r)
  g.M = N; g.N = r; g.K = half;
  g.A = b.qp.data(); g.lda = half; g.strideA = N * half;
  g.B = b.kpBasis.data(); g.ldb = r; g.strideB = half * r;
  g.C = b.coeff.data(); g.ldc = r; g.strideC = N * r;
  g.batch = count;
  gemm(g);
  launch(scaledSoftmaxRowsKernel, gridForRows(count * N), kThreads, 0, stream(), b.coeff.data(), count * N, r, scale);
  CASTLING_CUDA_CHECK_LAUNCH();
  return b;
}

// ---- block-wide scans for the top-k compaction ----

constexpr int kSelectThreads = 256;

// Exclusive prefix sum of v over the block (thread order); *total gets the sum. All threads call.
__device__ int blockExclusiveScan(int v, int* scratch, int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int inclusive = v;
  for (int offset = 1; offset < 32; offset <<= 1) {
    int other = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < kSelectThreads / 32; ++w) {
    if (w < warp) before += scratch[w];
    sum += scratch[w];
  }
  *total = sum;
  return before + inclusive - v;
}

// The CPU's orderedKey: unsigned order = float order, -0 folded into +0, NaN lowest.
__device__ __forceinline__ unsigned orderedKey(float x) {
  unsigned bits = __float_as_uint(x + 0.0f);
  unsigned key = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
  return x == x ? key : 0u;
}

struct SelectParams {
  const float* coeff;  // (heads, N, r)
  const float* bb;     // (N, r)
  float* indices;      // (heads, N, kept)
  std::int64_t n, r, kept;
  int mode;            // 0 top-k, 1 threshold
  float threshold;
};

// One block per (query row, head).
__global__ void __launch_bounds__(kSelectThreads) selectKernel(SelectParams p) {
  CASTLING_DYNAMIC_SHARED(float, shared);
  CASTLING_SHARED(int, scratch, [kSelectThreads / 32]);
  const std::int64_t row = blockIdx.x, head = blockIdx.y, n = p.n, r = p.r;
  float* out = p.indices + (head * n + row) * p.kept;
  if (row == 0) {  // the class token attends densely: its slots are padding
    for (std::int64_t j = threadIdx.x; j < p.kept; j += blockDim.x) out[j] = -1.0f;
    return;
  }
  float* approx = shared;         // n
  float* coeffRow = approx + n;   // r
  for (std::int64_t j = threadIdx.x; j < r; j += blockDim.x) coeffRow[j] = p.coeff[(head * n + row) * r + j];
  __syncthreads();
  for (std::int64_t m = threadIdx.x; m < n; m += blockDim.x) {
    float s = 0.0f;
    for (std::int64_t j = 0; j < r; ++j) s += coeffRow[j] * p.bb[m * r + j];
    approx[m] = s;
  }
  __syncthreads();
  if (p.mode == 1) {
    // Keys with approx > threshold, ascending, then -1; none: the first largest entry (in ordered
    // keys, as the CPU: NaN ranks below everything).
    int written = 0;
    for (std::int64_t base = 0; base < n; base += blockDim.x) {
      const std::int64_t m = base + threadIdx.x;
      const bool take = m < n && approx[m] > p.threshold;
      int total;
      int pos = blockExclusiveScan(take ? 1 : 0, scratch, &total);
      if (take) out[written + pos] = float(m);
      written += total;
    }
    if (written == 0 && threadIdx.x == 0) {
      std::int64_t best = 0;
      for (std::int64_t m = 1; m < n; ++m)
        if (orderedKey(approx[m]) > orderedKey(approx[best])) best = m;
      out[0] = float(best);
      written = 1;
    }
    __syncthreads();
    if (written == 0) written = 1;
    for (std::int64_t j = written + threadIdx.x; j < p.kept; j += blockDim.x) out[j] = -1.0f;
    return;
  }
  // Top-k: T = the keep-th largest key, bit by bit (the same search as the CPU).
  const std::int64_t keep = p.kept;
  auto countAtLeast = [&](unsigned bound) {
    int local = 0;
    for (std::int64_t m = threadIdx.x; m < n; m += blockDim.x) local += orderedKey(approx[m]) >= bound;
    int total;
    blockExclusiveScan(local, scratch, &total);
    return std::int64_t(total);
  };
  unsigned bound = 0;
  bool exact = keep == n;
  for (int bit = 31; bit >= 0 && !exact; --bit) {
    unsigned candidate = bound | (1u << bit);
    std::int64_t atLeast = countAtLeast(candidate);
    if (atLeast >= keep) {
      bound = candidate;
      exact = atLeast == keep;
    }
  }
  std::int64_t tiesToKeep = exact ? 0 : keep - countAtLeast(bound + 1);
  std::int64_t written = 0, tiesSeen = 0;
  for (std::int64_t base = 0; base < n; base += blockDim.x) {
    const std::int64_t m = base + threadIdx.x;
    const unsigned key = m < n ? orderedKey(approx[m]) : 0u;
    const bool inRange = m < n;
    const bool tie = inRange && !exact && key == bound;
    int tiesTotal;
    const int tieRank = blockExclusiveScan(tie ? 1 : 0, scratch, &tiesTotal);
    const bool take = inRange && (exact ? key >= bound : (key > bound || (tie && tiesSeen + tieRank < tiesToKeep)));
    int takeTotal;
    const int pos = blockExclusiveScan(take ? 1 : 0, scratch, &takeTotal);
    if (take && written + pos < keep) out[written + pos] = float(m);
    written += takeTotal;
    tiesSeen += tiesTotal;
  }
}

std::vector<Tensor> sparsifinerPredictOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparsifinerPredict";
  Predictor x = readPredictor(op, in);
  const HeadsShape& h = x.s.heads;
  const std::int64_t N = h.tokens;
  float scale = predictorScale(op, attrs, h);
  double keepRate = attrs.number("keepRate", 0.25);
  if (!(keepRate > 0.0 && keepRate <= 1.0)) fail(op, ": keepRate is ", keepRate, ", expected a number in (0, 1]");
  int mode = int(attrs.integer("mode", 0, 0, 2));
  if (mode == 2) fail(op, ": mode 2 (top-k on the coefficients C) is not implemented, expected mode 0 (top-k) or 1 (threshold)");
  float threshold = 0.0f;
  if (mode == 1) {
    if (!attrs.has("threshold")) fail(op, ": mode 1 (threshold) needs the attribute 'threshold'");
    threshold = float(attrs.number("threshold", 0.0));
  }
  std::int64_t kept = mode == 0 ? std::clamp<std::int64_t>(std::int64_t(std::ceil(keepRate * double(N))), 1, N) : N;
  Basis basis = computeBasis(x, scale);
  Tensor indices = deviceEmpty({h.batch, h.heads, N, kept});
  SelectParams p{basis.coeff.data(), x.w.bb.data(), indices.data(), N, x.s.basis, kept, mode, threshold};
  const std::size_t bytes = sizeof(float) * std::size_t(N + x.s.basis);
  if (bytes > 48 * 1024) CASTLING_CUDA_CHECK(cudaFuncSetAttribute(selectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  if (h.count() && N) {
    launch(selectKernel, dim3(unsigned(N), gridDimYZ(h.count(), "sparsifiner heads")), kSelectThreads, bytes, stream(), p);
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return {indices, basis.coeff, basis.qp, basis.kpBasis};
}

// ---- sparse attention ----

struct SparseParams {
  const float* q;
  const float* k;
  const float* v;
  const float* indices;
  float* y;
  float* lse;
  // backward
  const float* dy;
  const float* savedY;
  const float* savedLse;
  float* dq;
  float* dk;
  float* dv;
  std::int64_t heads, n, kept;
  int d;
  float scale;
  unsigned long long* badRow;  // the smallest invalid row (over all heads), for the error message
};

// The key of slot `slot` of a row (row 0: every key), and whether the row stays a valid list: the
// kept entries (not -1) integers in [0, n), strictly increasing (each above the maximum of all
// earlier ones), at least one. Lane-parallel over 32 slots at a time; `carry` is the maximum
// kept index so far.
__device__ bool slotKey(const SparseParams& p, const float* idx, std::int64_t row, std::int64_t slot, float& carry, int& key) {
  const int lane = threadIdx.x % 32;
  if (row == 0) {
    key = slot < p.n ? int(slot) : -1;
    return true;
  }
  const float m = slot < p.kept ? idx[slot] : -1.0f;
  const bool pad = m == -1.0f;
  bool ok = pad || (m >= 0.0f && m < float(p.n) && m == floorf(m));
  // exclusive prefix maximum of the kept values over the lanes
  float keptValue = pad ? -1.0f : m;
  float inclusive = keptValue;
  for (int offset = 1; offset < 32; offset <<= 1) {
    float other = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive = fmaxf(inclusive, other);
  }
  float before = __shfl_up_sync(kFullMask, inclusive, 1);
  if (lane == 0) before = -1.0f;
  before = fmaxf(before, carry);
  ok = ok && (pad || m > before);
  carry = fmaxf(carry, warpMax(keptValue));
  key = ok && !pad ? int(m) : -1;
  return __all_sync(kFullMask, ok);
}

__device__ void reportBadRow(const SparseParams& p, std::int64_t head, std::int64_t row) {
  if (threadIdx.x % 32 == 0) atomicMin(p.badRow, (unsigned long long)(head * p.n + row));
}

template <int DC>
__global__ void __launch_bounds__(256) sparseForwardKernel(SparseParams p) {
  const int lane = threadIdx.x % 32, d = p.d;
  const std::int64_t head = blockIdx.y, row = std::int64_t(blockIdx.x) * 8 + threadIdx.x / 32, n = p.n;
  if (row >= n) return;
  const std::int64_t off = head * n * d;
  const float* idx = p.indices + (head * n + row) * p.kept;
  const std::int64_t slots = row == 0 ? n : p.kept;
  float qv[DC], acc[DC];
  for (int i = 0; i < DC; ++i) {
    const int c = lane + 32 * i;
    qv[i] = c < d ? p.q[off + row * d + c] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f, carry = -1.0f;
  bool any = false;
  for (std::int64_t base = 0; base < slots; base += 32) {
    int key;
    if (!slotKey(p, idx, row, base + lane, carry, key)) return reportBadRow(p, head, row);
    any |= __any_sync(kFullMask, key >= 0);
    // score of this lane's key: the whole dot product (rows of k are gathered)
    float s = -INFINITY;
    if (key >= 0) {
      float dot = 0.0f;
      const float* kr = p.k + off + std::int64_t(key) * d;
      const float* qr = p.q + off + row * d;
      for (int c = 0; c < d; ++c) dot += qr[c] * kr[c];
      s = p.scale * dot;
    }
    const float mNew = fmaxf(m, warpMax(s));
    if (mNew == -INFINITY) continue;  // nothing kept in this chunk or before
    const float correction = m == -INFINITY ? 0.0f : expf(m - mNew);
    const float e = key >= 0 ? expf(s - mNew) : 0.0f;
    l = l * correction + warpSum(e);
    m = mNew;
    for (int i = 0; i < DC; ++i) acc[i] *= correction;
    for (int j = 0; j < 32; ++j) {
      const float pj = __shfl_sync(kFullMask, e, j);
      const int kj = __shfl_sync(kFullMask, key, j);
      if (kj < 0) continue;
      const float* vr = p.v + off + std::int64_t(kj) * d;
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) acc[i] += pj * vr[c];
      }
    }
  }
  (void)qv;
  if (!any) return reportBadRow(p, head, row);
  const float inv = 1.0f / l;
  for (int i = 0; i < DC; ++i) {
    const int c = lane + 32 * i;
    if (c < d) p.y[off + row * d + c] = acc[i] * inv;
  }
  if (lane == 0) p.lse[head * n + row] = m + logf(l);
}

template <int DC>
__global__ void __launch_bounds__(256) sparseBackwardKernel(SparseParams p) {
  const int lane = threadIdx.x % 32, d = p.d;
  const std::int64_t head = blockIdx.y, row = std::int64_t(blockIdx.x) * 8 + threadIdx.x / 32, n = p.n;
  if (row >= n) return;
  const std::int64_t off = head * n * d;
  const float* idx = p.indices + (head * n + row) * p.kept;
  const std::int64_t slots = row == 0 ? n : p.kept;
  const float* qr = p.q + off + row * d;
  const float* gr = p.dy + off + row * d;
  float qv[DC], gv[DC], dq[DC];
  float term = 0.0f;
  for (int i = 0; i < DC; ++i) {
    const int c = lane + 32 * i;
    qv[i] = c < d ? qr[c] : 0.0f;
    gv[i] = c < d ? gr[c] : 0.0f;
    term += c < d ? gv[i] * p.savedY[off + row * d + c] : 0.0f;
    dq[i] = 0.0f;
  }
  term = warpSum(term);  // dy . y
  const float lse = p.savedLse[head * n + row];
  float carry = -1.0f;
  bool any = false;
  for (std::int64_t base = 0; base < slots; base += 32) {
    int key;
    if (!slotKey(p, idx, row, base + lane, carry, key)) return reportBadRow(p, head, row);
    any |= __any_sync(kFullMask, key >= 0);
    float a = 0.0f, ds = 0.0f;
    if (key >= 0) {
      const float* kr = p.k + off + std::int64_t(key) * d;
      const float* vr = p.v + off + std::int64_t(key) * d;
      float s = 0.0f, dA = 0.0f;
      for (int c = 0; c < d; ++c) {
        s += qr[c] * kr[c];
        dA += gr[c] * vr[c];
      }
      a = expf(p.scale * s - lse);
      ds = p.scale * a * (dA - term);
    }
    for (int j = 0; j < 32; ++j) {
      const int kj = __shfl_sync(kFullMask, key, j);
      const float aj = __shfl_sync(kFullMask, a, j), dsj = __shfl_sync(kFullMask, ds, j);
      if (kj < 0) continue;
      const std::int64_t keyOff = off + std::int64_t(kj) * d;
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) {
          dq[i] += dsj * p.k[keyOff + c];
          atomicAdd(p.dk + keyOff + c, dsj * qv[i]);
          atomicAdd(p.dv + keyOff + c, aj * gv[i]);
        }
      }
    }
  }
  if (!any) return reportBadRow(p, head, row);
  for (int i = 0; i < DC; ++i) {
    const int c = lane + 32 * i;
    if (c < d) p.dq[off + row * d + c] = dq[i];
  }
}

// The shared checks (cpu/sparse_attention_shapes.h), then the head width and element types this
// file handles.
SparseInputs readInputs(const char* op, const OpInputs& in) {
  SparseInputs x = readSparseInputs(op, in);
  if (x.s.width > 128) fail(op, ": head width d=", x.s.width, ", expected at most 128 on cuda");
  for (const Tensor* t : {&x.q, &x.k, &x.v, &x.indices}) expectFloat32(op, "q, k, v and indices", *t);
  return x;
}

// After the kernels: the first invalid row, if any, as the CPU op reports it.
void checkIndices(const char* op, const SparseInputs& x, const Tensor& badRowSlot) {
  unsigned long long bad = 0;
  CASTLING_CUDA_CHECK(cudaMemcpyAsync(&bad, badRowSlot.raw(), sizeof(bad), cudaMemcpyDeviceToHost, stream()));
  CASTLING_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (bad == ~0ull) return;
  const HeadsShape& s = x.s;
  std::vector<float> slots(static_cast<std::size_t>(x.kept));
  CASTLING_CUDA_CHECK(cudaMemcpy(slots.data(), x.indices.data() + std::int64_t(bad) * x.kept, slots.size() * sizeof(float),
                                 cudaMemcpyDeviceToHost));
  badIndexRow(op, slots.data(), x.kept, s, std::int64_t(bad));
}

template <typename Fn>
void withSparseWidth(std::int64_t d, Fn&& fn) {
  if (d <= 32) fn(std::integral_constant<int, 1>{});
  else if (d <= 64) fn(std::integral_constant<int, 2>{});
  else fn(std::integral_constant<int, 4>{});
}

SparseParams sparseParams(const SparseInputs& x, float scale, unsigned long long* badRow) {
  SparseParams p{};
  p.q = x.q.data();
  p.k = x.k.data();
  p.v = x.v.data();
  p.indices = x.indices.data();
  p.heads = x.s.count();
  p.n = x.s.tokens;
  p.kept = x.kept;
  p.d = int(x.s.width);
  p.scale = scale;
  p.badRow = badRow;
  return p;
}

// Launches a sparse attention kernel (a warp per query row, 8 rows a block) over every head:
// kernelFor(chunks) names the instance for chunks = the values per lane. badRow (p.badRow) is
// cleared first; afterwards the first bad index row the kernel found, if any, is reported.
template <typename KernelFor>
void launchSparse(const char* op, const SparseInputs& x, KernelFor&& kernelFor, const SparseParams& p, Tensor& badRow) {
  const HeadsShape& s = x.s;
  CASTLING_CUDA_CHECK(cudaMemsetAsync(badRow.raw(), 0xff, sizeof(unsigned long long), stream()));
  dim3 grid(unsigned((s.tokens + 7) / 8), gridDimYZ(s.count(), "sparse attention heads"));
  withSparseWidth(s.width, [&](auto chunks) { launch(kernelFor(chunks), grid, 256, 0, stream(), p); });
  CASTLING_CUDA_CHECK_LAUNCH();
  checkIndices(op, x, badRow);
}

std::vector<Tensor> sparseAttentionOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparseAttention";
  SparseInputs x = readInputs(op, in);
  const HeadsShape& s = x.s;
  float scale = sparseAttentionScale(op, attrs, s.width);
  Tensor y = deviceEmpty(s.full()), lse = deviceEmpty(s.perToken()), badRow = deviceEmpty({2});
  SparseParams p = sparseParams(x, scale, static_cast<unsigned long long*>(badRow.raw()));
  p.y = y.data();
  p.lse = lse.data();
  launchSparse(op, x, [](auto chunks) { return sparseForwardKernel<decltype(chunks)::value>; }, p, badRow);
  return {y, lse};
}

std::vector<Tensor> sparseAttentionBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparseAttentionBackward";
  SparseInputs x = readInputs(op, in);
  const HeadsShape& s = x.s;
  SparseSaved saved = readSparseSaved(op, in, s);
  for (const Tensor* t : {&saved.y, &saved.lse, &saved.dy}) expectFloat32(op, "y, lse and dy", *t);
  Tensor &y = saved.y, &lse = saved.lse, &dy = saved.dy;
  float scale = sparseAttentionScale(op, attrs, s.width);
  Tensor dq = deviceEmpty(s.full()), dk = deviceZeros(s.full()), dv = deviceZeros(s.full()), badRow = deviceEmpty({2});
  SparseParams p = sparseParams(x, scale, static_cast<unsigned long long*>(badRow.raw()));
  p.dy = dy.data();
  p.savedY = y.data();
  p.savedLse = lse.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  launchSparse(op, x, [](auto chunks) { return sparseBackwardKernel<decltype(chunks)::value>; }, p, badRow);
  return {dq, dk, dv};
}

// ---- reconstruction ----

// G = 2 (approx - A) in place (0 on row 0), A = exp(attnScale s - lse); rowLoss = sum (approx - A)^2.
__global__ void residualKernel(float* approx, const float* scores, const float* lse, double* rowLoss, std::int64_t rows,
                               std::int64_t n, float attnScale) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;  // over the group's heads x n
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* g = approx + row * n;
  if (row % n == 0) {
    for (std::int64_t c = lane; c < n; c += 32) g[c] = 0.0f;
    if (lane == 0) rowLoss[row] = 0.0;
    return;
  }
  const float* s = scores + row * n;
  const float shift = lse[row];
  float sq = 0.0f;
  for (std::int64_t c = lane; c < n; c += 32) {
    float diff = g[c] - expf(attnScale * s[c] - shift);
    sq += diff * diff;
    g[c] = diff + diff;
  }
  sq = warpSum(sq);
  if (lane == 0) rowLoss[row] = double(sq);
}

// dS = scale c (g - sum g c) per row of r, in place on g.
__global__ void softmaxCoeffBackwardKernel(float* g, const float* coeff, std::int64_t rows, std::int64_t r, float scale) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* gr = g + row * r;
  const float* cr = coeff + row * r;
  float dot = 0.0f;
  for (std::int64_t j = lane; j < r; j += 32) dot += gr[j] * cr[j];
  dot = warpSum(dot);
  for (std::int64_t j = lane; j < r; j += 32) gr[j] = scale * cr[j] * (gr[j] - dot);
}

std::vector<Tensor> sparsifinerReconstructionOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "sparsifinerReconstruction";
  Predictor x = readPredictor(op, in);
  const HeadsShape& h = x.s.heads;
  const std::int64_t N = h.tokens, d = h.width, half = x.s.half, r = x.s.basis, count = h.count();
  Tensor lse = in.required(8, "lse").contiguous();
  expectShape(op, "lse", lse, h.perToken());
  expectFloat32(op, "lse", lse);
  float scale = predictorScale(op, attrs, h);
  float attnScale = float(attrs.number("attnScale", 1.0 / std::sqrt(double(d))));
  Basis basis = computeBasis(x, scale);

  // Pass 1, a group of heads at a time (two N x N buffers per head, bounded to about 512 MiB).
  const std::int64_t perHead = 2 * N * N * std::int64_t(sizeof(float));
  const std::int64_t group = std::clamp<std::int64_t>((std::int64_t(512) << 20) / std::max<std::int64_t>(perHead, 1), 1, std::max<std::int64_t>(count, 1));
  Tensor approx = deviceEmpty({group * N * N}), scores = deviceEmpty({group * N * N});
  Tensor rowLossBuffer = deviceEmpty({std::max<std::int64_t>(count * N, 1) * 2});
  auto* rowLoss = reinterpret_cast<double*>(rowLossBuffer.data());
  Tensor dCoeff = deviceEmpty({h.batch, h.heads, N, r});
  Tensor dBb = deviceZeros({N, r});
  for (std::int64_t h0 = 0; h0 < count; h0 += group) {
    const std::int64_t heads = std::min(group, count - h0);
    Gemm g;  // approx = C Bb^T
    g.transB = true;
    g.M = N; g.N = N; g.K = r;
    g.A = basis.coeff.data() + h0 * N * r; g.lda = r; g.strideA = N * r;
    g.B = x.w.bb.data(); g.ldb = r; g.strideB = 0;
    g.C = approx.data(); g.ldc = N; g.strideC = N * N;
    g.batch = heads;
    gemm(g);
    g = Gemm();  // scores = q k^T
    g.transB = true;
    g.M = N; g.N = N; g.K = d;
    g.A = x.q.data() + h0 * N * d; g.lda = d; g.strideA = N * d;
    g.B = x.k.data() + h0 * N * d; g.ldb = d; g.strideB = N * d;
    g.C = scores.data(); g.ldc = N; g.strideC = N * N;
    g.batch = heads;
    gemm(g);
    launch(residualKernel, gridForRows(heads * N), kThreads, 0, stream(), approx.data(), scores.data(), lse.data() + h0 * N, rowLoss + h0 * N,
                                                                      heads * N, N, attnScale);
    CASTLING_CUDA_CHECK_LAUNCH();
    g = Gemm();  // dC = G Bb
    g.M = N; g.N = r; g.K = N;
    g.A = approx.data(); g.lda = N; g.strideA = N * N;
    g.B = x.w.bb.data(); g.ldb = r; g.strideB = 0;
    g.C = dCoeff.data() + h0 * N * r; g.ldc = r; g.strideC = N * r;
    g.batch = heads;
    gemm(g);
    for (std::int64_t i = 0; i < heads; ++i) {  // dBb += G^T C, head by head (a fixed order)
      Gemm a = denseGemm(N, r, N, approx.data() + i * N * N, true, basis.coeff.data() + (h0 + i) * N * r, false, dBb.data());
      a.beta = 1.0f;
      gemm(a);
    }
  }
  // Pass 2: back through the softmax, qp Kp and kp^T P.
  launch(softmaxCoeffBackwardKernel, gridForRows(count * N), kThreads, 0, stream(), dCoeff.data(), basis.coeff.data(), count * N, r, scale);
  CASTLING_CUDA_CHECK_LAUNCH();
  Tensor dqp = deviceEmpty({h.batch, h.heads, N, half}), dkp = deviceEmpty({h.batch, h.heads, N, half});
  Tensor dKp = deviceEmpty({h.batch, h.heads, half, r});
  Gemm g;  // dqp = dS Kp^T
  g.transB = true;
  g.M = N; g.N = half; g.K = r;
  g.A = dCoeff.data(); g.lda = r; g.strideA = N * r;
  g.B = basis.kpBasis.data(); g.ldb = r; g.strideB = half * r;
  g.C = dqp.data(); g.ldc = half; g.strideC = N * half;
  g.batch = count;
  gemm(g);
  g = Gemm();  // dKp = qp^T dS
  g.transA = true;
  g.M = half; g.N = r; g.K = N;
  g.A = basis.qp.data(); g.lda = half; g.strideA = N * half;
  g.B = dCoeff.data(); g.ldb = r; g.strideB = N * r;
  g.C = dKp.data(); g.ldc = r; g.strideC = half * r;
  g.batch = count;
  gemm(g);
  g = Gemm();  // dkp = P dKp^T
  g.transB = true;
  g.M = N; g.N = half; g.K = r;
  g.A = x.w.p.data(); g.lda = r; g.strideA = 0;
  g.B = dKp.data(); g.ldb = r; g.strideB = half * r;
  g.C = dkp.data(); g.ldc = half; g.strideC = N * half;
  g.batch = count;
  gemm(g);
  Tensor dP = deviceZeros({N, r});
  for (std::int64_t head = 0; head < count; ++head) {  // dP = sum kp dKp
    Gemm a = denseGemm(N, r, half, basis.kp.data() + head * N * half, false, dKp.data() + head * half * r, false, dP.data());
    a.beta = 1.0f;
    gemm(a);
  }
  const std::int64_t allRows = count * N;
  Tensor dWq = deviceEmpty({half, d}), dWk = deviceEmpty({half, d}), dbq = deviceEmpty({half}), dbk = deviceEmpty({half});
  gemm(denseGemm(half, d, allRows, dqp.data(), true, x.q.data(), false, dWq.data()));
  gemm(denseGemm(half, d, allRows, dkp.data(), true, x.k.data(), false, dWk.data()));
  columnSums(allRows, half, MatrixTerm<float>{dqp.data(), half}, dbq.data());
  columnSums(allRows, half, MatrixTerm<float>{dkp.data(), half}, dbk.data());
  Tensor loss = deviceEmpty({1});
  sumAllDouble(rowLoss, count * N, 1.0, loss.data());
  return {loss, dWq, dbq, dWk, dbk, dP, dBb};
}

}  // namespace

void registerSparsifinerOps(OpRegistry& r) {
  r.add(Device::Cuda, "sparsifinerPredict", {"q", "k", "Wq", "bq", "Wk", "bk", "P", "Bb"}, sparsifinerPredictOp);
  r.add(Device::Cuda, "sparsifinerReconstruction", {"q", "k", "Wq", "bq", "Wk", "bk", "P", "Bb", "lse"}, sparsifinerReconstructionOp);
  r.add(Device::Cuda, "sparseAttention", {"q", "k", "v", "indices"}, sparseAttentionOp);
  r.add(Device::Cuda, "sparseAttentionBackward", {"q", "k", "v", "indices", "y", "lse", "dy"}, sparseAttentionBackwardOp);
}

}  // namespace castling::cuda
