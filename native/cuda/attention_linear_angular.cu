// Castling-ViT linear-angular attention on the GPU (the CPU's attention_linear_angular.cpp and
// attention_angular.inc; docs/algorithms.md sections 2 and 3), forward and backward:
//   z = 0.5 v + (1/pi) qhat S [+ (M . A) v],  u = normalize(z),  y = u + dconv(v)
// with S = sum_n khat_n^T v_n per head. Kernels:
//   outer sums  S = sum khat^T v (and dS = (1/pi) sum qhat^T dz): a block per (head, chunk of
//               128 tokens) sums its chunk into a partial d x d, then the partials are added in
//               chunk order (deterministic, no atomics);
//   apply       one warp per token, S (padded rows) in shared memory: z, znorm, y with the conv;
//   backward    the query side (dz, dq, dv with the conv's transpose) and the key side (dk, dv
//               through dS) the same way, the conv weight's gradient as a block per (tap, head).
// The auxiliary branch runs the flash kernels (flash.cu). float32, head widths up to 128.
#include <cmath>
#include <vector>

#include "../ops/attention_linear_angular_shapes.h"
#include "../ops/heads_shape.h"
#include "cuda_kernels.cuh"
#include "cuda_ops.h"
#include "cuda_reduce.cuh"
#include "flash.h"

namespace castling::cuda {

using ops::AngularAuxSaved;
using ops::AngularInputs;
using ops::AngularOptions;
using ops::AngularSaved;
using ops::HeadsShape;
using ops::readAngularAuxSaved;
using ops::readAngularOptions;
using ops::readAngularSaved;
using ops::readAngularTensors;

namespace {

constexpr float kNormEps = 1e-12f;
constexpr float kInvPi = 0.318309886183790671538f;
constexpr int kChunkTokens = 128;   // tokens per block of the outer sums
constexpr int kTokensPerBlock = 64; // tokens per block of the per-token kernels (8 per warp)

// ---- the convolution of v (ConvForm of the CPU kernels: 0 tokens, 1 spatial) ----

struct Conv {
  int form;               // 0 tokens, 1 spatial
  int taps;               // K
  std::int64_t gridSide;  // spatial: the patch grid side
  const float* weight;    // (H, K) or (H, K, K)
  std::int64_t heads;     // H: head index = (batch head) % H
  int weightsPerHead;
};

// Calls fn(weight index, neighbour token) for each tap of `token` inside the sequence or grid;
// sign +1: the forward taps, -1: the transposed ones (as the CPU's conv::forEachTap).
template <typename Fn>
__device__ void forEachTap(const Conv& cv, std::int64_t n, std::int64_t token, int sign, Fn&& fn) {
  const int centre = cv.taps / 2;
  if (cv.form == 0) {
    for (int t = 0; t < cv.taps; ++t) {
      std::int64_t other = token + sign * (t - centre);
      if (other >= 0 && other < n) fn(t, other);
    }
    return;
  }
  if (token == 0) return;
  const std::int64_t side = cv.gridSide, row = (token - 1) / side, col = (token - 1) % side;
  for (int a = 0; a < cv.taps; ++a) {
    std::int64_t r = row + sign * (a - centre);
    if (r < 0 || r >= side) continue;
    for (int b = 0; b < cv.taps; ++b) {
      std::int64_t c = col + sign * (b - centre);
      if (c >= 0 && c < side) fn(a * cv.taps + b, 1 + r * side + c);
    }
  }
}

// ---- outer sums: out[head] = scale * sum_n (a_n / norm_n)^T b_n ----

struct OuterSumParams {
  const float* a;
  float* aNorm;         // written (computeNorm) or read
  bool computeNorm;
  const float* b;
  float* partial;       // (heads, chunks, d, d)
  std::int64_t n, chunks;
  int d;
};

template <int E>  // S entries per thread: d * d <= 256 E
__global__ void __launch_bounds__(256) outerSumKernel(OuterSumParams p) {
  CASTLING_SHARED(float, aTile, [32 * 129]);
  CASTLING_SHARED(float, bTile, [32 * 129]);
  const int d = p.d, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t head = blockIdx.y, chunk = blockIdx.x, n = p.n;
  const float* a = p.a + head * n * d;
  const float* b = p.b + head * n * d;
  float acc[E];
  for (int e = 0; e < E; ++e) acc[e] = 0.0f;
  const std::int64_t begin = chunk * kChunkTokens, end = min(n, begin + kChunkTokens);
  for (std::int64_t t0 = begin; t0 < end; t0 += 32) {
    __syncthreads();
    // A warp per token normalises its row of a (rows past the end are zero).
    for (int i = warp; i < 32; i += 8) {
      const std::int64_t token = t0 + i;
      float norm = 1.0f;
      if (token < end) {
        if (p.computeNorm) {
          float s = 0.0f;
          for (int c = lane; c < d; c += 32) s += a[token * d + c] * a[token * d + c];
          norm = fmaxf(sqrtf(warpSum(s)), kNormEps);
          if (lane == 0) p.aNorm[head * n + token] = norm;
        } else {
          norm = p.aNorm[head * n + token];
        }
      }
      const float inv = 1.0f / norm;
      for (int c = lane; c < d; c += 32) {
        aTile[i * d + c] = token < end ? a[token * d + c] * inv : 0.0f;
        bTile[i * d + c] = token < end ? b[token * d + c] : 0.0f;
      }
    }
    __syncthreads();
    for (int e = 0; e < E; ++e) {
      const int entry = threadIdx.x + 256 * e;
      if (entry >= d * d) break;
      const int r = entry / d, c = entry % d;
      float s = acc[e];
      for (int i = 0; i < 32; ++i) s += aTile[i * d + r] * bTile[i * d + c];
      acc[e] = s;
    }
  }
  float* out = p.partial + (head * p.chunks + chunk) * d * d;
  for (int e = 0; e < E; ++e) {
    const int entry = threadIdx.x + 256 * e;
    if (entry < d * d) out[entry] = acc[e];
  }
}

// out[head][e] = scale * sum over chunks of partial[head][chunk][e], in chunk order.
__global__ void sumChunksKernel(const float* partial, float* out, std::int64_t heads, std::int64_t chunks, std::int64_t dd, float scale) {
  const std::int64_t total = heads * dd;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t head = i / dd, e = i % dd;
    float s = 0.0f;
    for (std::int64_t k = 0; k < chunks; ++k) s += partial[(head * chunks + k) * dd + e];
    out[i] = scale * s;
  }
}

// S (or dS) of every head: `aNorm` written when computeNorm, read otherwise.
void outerSums(const float* a, float* aNorm, bool computeNorm, const float* b, float* out, std::int64_t heads, std::int64_t n, int d,
               float scale) {
  const std::int64_t chunks = (n + kChunkTokens - 1) / kChunkTokens;
  Tensor partial = deviceEmpty({heads * chunks * d * d});
  OuterSumParams p{a, aNorm, computeNorm, b, partial.data(), n, chunks, d};
  dim3 grid(unsigned(chunks), gridDimYZ(heads, "linear-angular heads (batch x heads)"));
  if (d <= 32) launch(outerSumKernel<4>, grid, 256, 0, stream(), p);
  else if (d <= 64) launch(outerSumKernel<16>, grid, 256, 0, stream(), p);
  else launch(outerSumKernel<64>, grid, 256, 0, stream(), p);
  CASTLING_CUDA_CHECK_LAUNCH();
  launch(sumChunksKernel, gridFor(heads * d * d), kThreads, 0, stream(), partial.data(), out, heads, chunks, std::int64_t(d) * d, scale);
  CASTLING_CUDA_CHECK_LAUNCH();
}

// ---- per-token kernels: one warp per token, lane owns columns lane + 32 i ----

// S (d x d) of a head into shared memory, times `scale`, rows padded to d + 1 so that reading a
// row (lanes along c) and a column (lanes along r) are both conflict-free.
__device__ void loadState(const float* S, int d, float scale, float* dst) {
  for (int e = threadIdx.x; e < d * d; e += blockDim.x) dst[(e / d) * (d + 1) + e % d] = scale * S[e];
}

// x[c] for c = lane + 32 i as registers (0 past d).
template <int DC>
__device__ void loadRow(const float* row, int d, float (&x)[DC]) {
  const int lane = threadIdx.x % 32;
  for (int i = 0; i < DC; ++i) {
    const int c = lane + 32 * i;
    x[i] = c < d ? row[c] : 0.0f;
  }
}

template <int DC>
__device__ float rowDot(const float (&a)[DC], const float (&b)[DC]) {
  float s = 0.0f;
  for (int i = 0; i < DC; ++i) s += a[i] * b[i];
  return warpSum(s);
}

// out[c] = sum_r x[r] M[r][c] (transposed: sum_r x[r] M[c][r]) with x spread over the lanes.
template <int DC>
__device__ void rowTimesState(const float (&x)[DC], const float* M, int d, bool transposed, float (&out)[DC]) {
  const int lane = threadIdx.x % 32;
  const int ld = d + 1;
  for (int i = 0; i < DC; ++i) out[i] = 0.0f;
  for (int ri = 0; ri < DC; ++ri) {
    for (int src = 0; src < 32; ++src) {
      const int r = src + 32 * ri;
      const float xr = __shfl_sync(kFullMask, x[ri], src);
      if (r >= d) break;
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) out[i] += xr * (transposed ? M[c * ld + r] : M[r * ld + c]);
      }
    }
  }
}

struct ApplyParams {
  const float* q;
  const float* v;
  const float* S;
  const float* auxOut;   // null when the branch is off
  const float* auxMass;
  float* qnorm;          // forward: written; backward: read
  const float* znorm;    // backward
  float* y;              // forward
  std::int64_t n;
  int d;
  Conv conv;
  // backward
  const float* dy;
  float* dz;
  float* dq;
  float* dv;
};

// z for one token as the CPU forms it: qhat (S / pi) + 0.5 v (+ auxOut where the row kept mass).
template <int DC>
__device__ void tokenZ(const ApplyParams& p, std::int64_t head, std::int64_t token, const float* state, float inv, float (&qhat)[DC],
                       float (&z)[DC]) {
  const int d = p.d;
  const std::int64_t off = (head * p.n + token) * d;
  float q[DC], v[DC];
  loadRow<DC>(p.q + off, d, q);
  loadRow<DC>(p.v + off, d, v);
  for (int i = 0; i < DC; ++i) qhat[i] = q[i] * inv;
  rowTimesState<DC>(qhat, state, d, false, z);
  for (int i = 0; i < DC; ++i) z[i] += 0.5f * v[i];
  if (p.auxOut && p.auxMass[head * p.n + token] > 0.0f) {
    float o[DC];
    loadRow<DC>(p.auxOut + off, d, o);
    for (int i = 0; i < DC; ++i) z[i] += o[i];
  }
}

template <int DC>
__global__ void __launch_bounds__(256) angularApplyKernel(ApplyParams p) {
  CASTLING_DYNAMIC_SHARED(float, state);
  const int d = p.d, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t head = blockIdx.y, n = p.n;
  loadState(p.S + head * d * d, d, kInvPi, state);
  __syncthreads();
  Conv cv = p.conv;
  cv.weight += (head % cv.heads) * cv.weightsPerHead;
  for (int t = warp; t < kTokensPerBlock; t += 8) {
    const std::int64_t token = std::int64_t(blockIdx.x) * kTokensPerBlock + t;
    if (token >= n) break;
    float q[DC];
    loadRow<DC>(p.q + (head * n + token) * d, d, q);
    const float qn = fmaxf(sqrtf(rowDot<DC>(q, q)), kNormEps);
    if (lane == 0) p.qnorm[head * n + token] = qn;
    float qhat[DC], z[DC];
    tokenZ<DC>(p, head, token, state, 1.0f / qn, qhat, z);
    const float zn = fmaxf(sqrtf(rowDot<DC>(z, z)), kNormEps);
    if (lane == 0) const_cast<float*>(p.znorm)[head * n + token] = zn;
    const float inv = 1.0f / zn;
    float y[DC];
    for (int i = 0; i < DC; ++i) y[i] = z[i] * inv;
    const float* v = p.v + head * n * d;
    forEachTap(cv, n, token, +1, [&](int w, std::int64_t other) {
      const float weight = cv.weight[w];
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) y[i] += weight * v[other * d + c];
      }
    });
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) p.y[(head * n + token) * d + c] = y[i];
    }
  }
}

// Query side of the backward: dz, dq (through qhat), dv = 0.5 dz + the conv's transpose of dy.
template <int DC>
__global__ void __launch_bounds__(256) angularBackwardQueryKernel(ApplyParams p) {
  CASTLING_DYNAMIC_SHARED(float, state);
  const int d = p.d, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t head = blockIdx.y, n = p.n;
  loadState(p.S + head * d * d, d, kInvPi, state);
  __syncthreads();
  Conv cv = p.conv;
  cv.weight += (head % cv.heads) * cv.weightsPerHead;
  for (int t = warp; t < kTokensPerBlock; t += 8) {
    const std::int64_t token = std::int64_t(blockIdx.x) * kTokensPerBlock + t;
    if (token >= n) break;
    const std::int64_t row = head * n + token, off = row * d;
    const float qinv = 1.0f / p.qnorm[row];
    float qhat[DC], u[DC], g[DC];
    tokenZ<DC>(p, head, token, state, qinv, qhat, u);
    const float zinv = 1.0f / p.znorm[row];
    for (int i = 0; i < DC; ++i) u[i] *= zinv;
    loadRow<DC>(p.dy + off, d, g);
    const float ug = rowDot<DC>(u, g);
    float dz[DC], dv[DC];
    for (int i = 0; i < DC; ++i) {
      dz[i] = (g[i] - u[i] * ug) * zinv;
      dv[i] = 0.5f * dz[i];
    }
    const float* dyHead = p.dy + head * n * d;
    forEachTap(cv, n, token, -1, [&](int w, std::int64_t other) {
      const float weight = cv.weight[w];
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) dv[i] += weight * dyHead[other * d + c];
      }
    });
    float dqhat[DC];
    rowTimesState<DC>(dz, state, d, true, dqhat);  // (1/pi) dz S^T
    const float proj = rowDot<DC>(qhat, dqhat);
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) {
        p.dz[off + c] = dz[i];
        p.dv[off + c] = dv[i];
        p.dq[off + c] = (dqhat[i] - qhat[i] * proj) * qinv;
      }
    }
  }
}

struct KeyParams {
  const float* k;
  const float* v;
  const float* knorm;
  const float* dS;
  float* dk;
  float* dv;
  std::int64_t n;
  int d;
};

// Key side: dkhat = v dS^T, dv += khat dS, dk = (dkhat - khat (khat . dkhat)) / |k|.
template <int DC>
__global__ void __launch_bounds__(256) angularBackwardKeyKernel(KeyParams p) {
  CASTLING_DYNAMIC_SHARED(float, state);
  const int d = p.d, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t head = blockIdx.y, n = p.n;
  loadState(p.dS + head * d * d, d, 1.0f, state);
  __syncthreads();
  for (int t = warp; t < kTokensPerBlock; t += 8) {
    const std::int64_t token = std::int64_t(blockIdx.x) * kTokensPerBlock + t;
    if (token >= n) break;
    const std::int64_t row = head * n + token, off = row * d;
    const float kinv = 1.0f / p.knorm[row];
    float k[DC], v[DC], khat[DC], dkhat[DC], dvs[DC];
    loadRow<DC>(p.k + off, d, k);
    loadRow<DC>(p.v + off, d, v);
    for (int i = 0; i < DC; ++i) khat[i] = k[i] * kinv;
    rowTimesState<DC>(v, state, d, true, dkhat);
    rowTimesState<DC>(khat, state, d, false, dvs);
    const float proj = rowDot<DC>(khat, dkhat);
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) {
        p.dk[off + c] = (dkhat[i] - k[i] * kinv * proj) * kinv;
        p.dv[off + c] += dvs[i];
      }
    }
  }
}

// dwHead[head][w] = sum_n dy_n . v_{neighbour(n, w)}: a block per (tap, head), double sums.
__global__ void convWeightGradientKernel(const float* dy, const float* v, Conv cv, std::int64_t n, int d, double* dwHead) {
  CASTLING_SHARED(double, shared, [256]);
  const int w = blockIdx.x;
  const std::int64_t head = blockIdx.y;
  const float* g = dy + head * n * d;
  const float* x = v + head * n * d;
  const int centre = cv.taps / 2;
  double s = 0.0;
  for (std::int64_t token = threadIdx.x; token < n; token += blockDim.x) {
    std::int64_t other = -1;
    if (cv.form == 0) {
      other = token + (w - centre);
      if (other >= n) other = -1;
    } else if (token > 0) {
      const std::int64_t side = cv.gridSide, r = (token - 1) / side + (w / cv.taps - centre),
                         c = (token - 1) % side + (w % cv.taps - centre);
      if (r >= 0 && r < side && c >= 0 && c < side) other = 1 + r * side + c;
    }
    if (other < 0) continue;
    float dot = 0.0f;
    for (int ch = 0; ch < d; ++ch) dot += g[token * d + ch] * x[other * d + ch];
    s += double(dot);
  }
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int width = 128; width > 0; width >>= 1) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) dwHead[head * cv.weightsPerHead + w] = shared[0];
}

// dWeight[h][w] = sum over the batch of dwHead[b * H + h][w].
__global__ void convWeightBatchSumKernel(const double* dwHead, float* dWeight, std::int64_t batch, std::int64_t heads, int weights) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= heads * weights) return;
  const std::int64_t h = i / weights, w = i % weights;
  double s = 0.0;
  for (std::int64_t b = 0; b < batch; ++b) s += dwHead[(b * heads + h) * weights + w];
  dWeight[i] = float(s);
}

// rowTerm = dz . auxOut + lambda mass per row; anyKept = 1 when some row kept mass.
__global__ void auxRowTermKernel(const float* dz, const float* auxOut, const float* mass, float lambda, float* rowTerm, int* anyKept,
                                 std::int64_t rows, int d) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float s = 0.0f;
  for (int c = lane; c < d; c += 32) s += dz[row * d + c] * auxOut[row * d + c];
  s = warpSum(s);
  if (lane == 0) {
    rowTerm[row] = s + lambda * mass[row];
    if (mass[row] > 0.0f) atomicOr(anyKept, 1);
  }
}

// ---- the op layer ----

// The shared checks (cpu/attention_linear_angular_shapes.h), each group of tensors followed by the
// element type this file handles, then the head-width limit of the flash kernels.
AngularInputs readAngularInputs(const char* op, const OpInputs& in, const Attrs& attrs) {
  AngularInputs a = readAngularTensors(op, in);
  for (const Tensor* t : {&a.q, &a.k, &a.v, &a.weight}) expectFloat32(op, "q, k, v and dconvWeight", *t);
  a.o = readAngularOptions(op, attrs, a.s, a.weight);
  if (a.s.width > kFlashMaxWidth) fail(op, ": head width d=", a.s.width, ", expected at most ", kFlashMaxWidth, " on cuda");
  return a;
}

AngularSaved readSaved(const char* op, const OpInputs& in, const HeadsShape& s) {
  AngularSaved t = readAngularSaved(op, in, s);
  for (const Tensor* x : {&t.qnorm, &t.knorm, &t.S, &t.znorm, &t.dy}) expectFloat32(op, "qnorm, knorm, S, znorm and dy", *x);
  return t;
}

AngularAuxSaved readAuxSaved(const char* op, const OpInputs& in, const HeadsShape& s) {
  AngularAuxSaved t = readAngularAuxSaved(op, in, s);
  for (const Tensor* x : {&t.lse, &t.auxOut, &t.auxMass}) expectFloat32(op, "lse, auxOut and auxMass", *x);
  return t;
}

Conv convOf(const AngularOptions& o, const Tensor& weight, std::int64_t heads) {
  return Conv{int(o.form), int(o.taps), o.gridSide, weight.data(), heads, int(o.weightsPerHead)};
}

template <typename Fn>
void withWidth(std::int64_t d, Fn&& fn) {
  if (d <= 32) fn(std::integral_constant<int, 1>{});
  else if (d <= 64) fn(std::integral_constant<int, 2>{});
  else fn(std::integral_constant<int, 4>{});
}

template <typename Kernel>
void allowStateMemory(Kernel kernel, std::size_t bytes) {
  if (bytes > 48 * 1024) CASTLING_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

dim3 tokenGrid(const HeadsShape& s) {
  return dim3(unsigned((s.tokens + kTokensPerBlock - 1) / kTokensPerBlock), gridDimYZ(s.count(), "linear-angular heads (batch x heads)"));
}

std::size_t stateBytes(std::int64_t d) { return sizeof(float) * std::size_t(d * (d + 1)); }

// Launches one of the per-token kernels (a warp per token, the d x d state in shared memory) over
// every head: kernelFor(chunks) names the kernel instance for chunks = the values per lane.
template <typename KernelFor, typename Params>
void launchTokenKernel(const HeadsShape& s, KernelFor&& kernelFor, const Params& params) {
  const std::size_t bytes = stateBytes(s.width);
  withWidth(s.width, [&](auto chunks) {
    auto kernel = kernelFor(chunks);
    allowStateMemory(kernel, bytes);
    launch(kernel, tokenGrid(s), 256, bytes, stream(), params);
  });
  CASTLING_CUDA_CHECK_LAUNCH();
}

// What the forward's apply kernel and the backward's query kernel both read (the auxiliary
// branch's tensors only with aux); each op adds its outputs.
ApplyParams applyParams(const AngularInputs& x, const Tensor& S, const Tensor& auxOut, const Tensor& auxMass, Tensor& qnorm,
                        const Tensor& znorm) {
  ApplyParams p{};
  p.q = x.q.data();
  p.v = x.v.data();
  p.S = S.data();
  p.auxOut = x.o.aux ? auxOut.data() : nullptr;
  p.auxMass = x.o.aux ? auxMass.data() : nullptr;
  p.qnorm = qnorm.data();
  p.znorm = znorm.data();
  p.n = x.s.tokens;
  p.d = int(x.s.width);
  p.conv = convOf(x.o, x.weight, x.s.heads);
  return p;
}

std::vector<Tensor> attentionLinearAngularOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionLinearAngular";
  AngularInputs x = readAngularInputs(op, in, attrs);
  const HeadsShape& s = x.s;
  const AngularOptions& o = x.o;
  const int d = int(s.width);

  Tensor lse, auxOut, auxMass, l1;
  if (o.aux) {
    lse = deviceEmpty(s.perToken());
    auxOut = deviceEmpty(s.full());
    auxMass = deviceEmpty(s.perToken());
    l1 = deviceEmpty({1});
    FlashForward f;
    f.q = x.q.data();
    f.k = x.k.data();
    f.v = x.v.data();
    f.out = auxOut.data();
    f.lse = lse.data();
    f.mass = auxMass.data();
    f.heads = s.count();
    f.n = s.tokens;
    f.d = d;
    f.scale = o.auxScale;
    f.masked = true;
    f.tau = o.tau;
    flashForward(f);
    sumAll(auxMass.data(), auxMass.numel(), l1.data());
  }
  Tensor y = deviceEmpty(s.full());
  Tensor qnorm = deviceEmpty(s.perToken()), knorm = deviceEmpty(s.perToken()), znorm = deviceEmpty(s.perToken());
  Tensor S = deviceEmpty({s.batch, s.heads, d, d});
  outerSums(x.k.data(), knorm.data(), true, x.v.data(), S.data(), s.count(), s.tokens, d, 1.0f);
  ApplyParams p = applyParams(x, S, auxOut, auxMass, qnorm, znorm);
  p.y = y.data();
  launchTokenKernel(s, [](auto chunks) { return angularApplyKernel<decltype(chunks)::value>; }, p);
  if (o.aux) return {y, qnorm, knorm, S, znorm, lse, auxOut, auxMass, l1};
  return {y, qnorm, knorm, S, znorm};
}

std::vector<Tensor> attentionLinearAngularBackwardOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "attentionLinearAngularBackward";
  AngularInputs x = readAngularInputs(op, in, attrs);
  const HeadsShape& s = x.s;
  const AngularOptions& o = x.o;
  const int d = int(s.width);
  AngularSaved saved = readSaved(op, in, s);
  Tensor &qnorm = saved.qnorm, &knorm = saved.knorm, &S = saved.S, &znorm = saved.znorm, &dy = saved.dy;
  AngularAuxSaved auxSaved = o.aux ? readAuxSaved(op, in, s) : AngularAuxSaved{};
  Tensor &lse = auxSaved.lse, &auxOut = auxSaved.auxOut, &auxMass = auxSaved.auxMass;
  Tensor dz = deviceEmpty(s.full()), dq = deviceEmpty(s.full()), dk = deviceEmpty(s.full()), dv = deviceEmpty(s.full());
  Tensor dS = deviceEmpty({s.count(), d, d});

  ApplyParams p = applyParams(x, S, auxOut, auxMass, qnorm, znorm);
  p.dy = dy.data();
  p.dz = dz.data();
  p.dq = dq.data();
  p.dv = dv.data();
  launchTokenKernel(s, [](auto chunks) { return angularBackwardQueryKernel<decltype(chunks)::value>; }, p);
  // dS = (1/pi) sum qhat^T dz
  outerSums(x.q.data(), qnorm.data(), false, dz.data(), dS.data(), s.count(), s.tokens, d, kInvPi);
  // The conv weight's gradient.
  Tensor dwHead = deviceEmpty({s.count() * o.weightsPerHead * 2});  // doubles
  auto* dwHeadPtr = reinterpret_cast<double*>(dwHead.data());
  launch(convWeightGradientKernel, dim3(unsigned(o.weightsPerHead), gridDimYZ(s.count(), "linear-angular heads")), 256, 0, stream(),
      dy.data(), x.v.data(), p.conv, s.tokens, d, dwHeadPtr);
  CASTLING_CUDA_CHECK_LAUNCH();
  Tensor dWeight = deviceEmpty(x.weight.shape());
  launch(convWeightBatchSumKernel, unsigned((s.heads * o.weightsPerHead + 255) / 256), 256, 0, stream(), dwHeadPtr, dWeight.data(), s.batch,
                                                                                                     s.heads, int(o.weightsPerHead));
  CASTLING_CUDA_CHECK_LAUNCH();
  // Key side.
  KeyParams kp{x.k.data(), x.v.data(), knorm.data(), dS.data(), dk.data(), dv.data(), s.tokens, d};
  launchTokenKernel(s, [](auto chunks) { return angularBackwardKeyKernel<decltype(chunks)::value>; }, kp);
  if (o.aux) {
    const std::int64_t rows = s.count() * s.tokens;
    Tensor rowTerm = deviceEmpty(s.perToken());
    Tensor flag = deviceZeros({1});  // an int on the device
    auto* anyKept = static_cast<int*>(flag.raw());
    launch(auxRowTermKernel, gridForRows(rows), kThreads, 0, stream(), dz.data(), auxOut.data(), auxMass.data(), o.lambda, rowTerm.data(),
                                                                   anyKept, rows, d);
    CASTLING_CUDA_CHECK_LAUNCH();
    FlashBackward b;
    b.q = x.q.data();
    b.k = x.k.data();
    b.v = x.v.data();
    b.dout = dz.data();
    b.lse = lse.data();
    b.rowTerm = rowTerm.data();
    b.dq = dq.data();
    b.dk = dk.data();
    b.dv = dv.data();
    b.heads = s.count();
    b.n = s.tokens;
    b.d = d;
    b.scale = o.auxScale;
    b.masked = true;
    b.tau = o.tau;
    b.lambda = o.lambda;
    b.anyKept = anyKept;
    flashBackward(b);
  }
  return {dq, dk, dv, dWeight};
}

}  // namespace

void registerAttentionLinearAngularOps(OpRegistry& r) {
  r.add(Device::Cuda, "attentionLinearAngular", {"q", "k", "v", "dconvWeight"}, attentionLinearAngularOp);
  r.add(Device::Cuda, "attentionLinearAngularBackward",
        {"q", "k", "v", "dconvWeight", "qnorm", "knorm", "S", "znorm", "lse", "auxOut", "auxMass", "dy"},
        attentionLinearAngularBackwardOp);
}

}  // namespace castling::cuda
