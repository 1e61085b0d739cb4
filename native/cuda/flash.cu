// Flash-style attention kernels (see flash.h): forward (softmax, or the auxiliary masked branch
// in two passes: lse first, then the kept entries), and the backward as two kernels that each
// own their outputs (dq per query row; dk and dv per key row), so there are no atomics and the
// results do not depend on scheduling; each recomputes the scores of its tiles.
//
// Layout: a block is kWarps warps; each warp owns kRows rows (queries, or keys for dk/dv) whose
// vectors sit in shared memory, and its accumulators (a row's d values spread over the 32 lanes,
// DC per lane, d <= 32 DC). A tile of 32 keys (or queries) is loaded into shared memory with rows
// padded to d + 1 floats, so that lane j reading row j and lane c reading column c are both free
// of bank conflicts. Lane j computes the score of key j against each of the warp's rows.
#include <cmath>

#include "cuda_kernels.cuh"
#include "flash.h"

namespace castling::cuda {

namespace {

constexpr int kRows = 4;   // rows per warp
constexpr int kWarps = 4;  // warps per block
constexpr int kBlockRows = kRows * kWarps;
constexpr int kTile = 32;  // keys (queries) per shared-memory tile: one per lane

// Cooperative load of rows [row0, row0 + kTile) of a (n, d) matrix into dst (stride ld), zeros
// past n.
template <typename T>
__device__ void loadTile(const T* src, std::int64_t row0, std::int64_t n, int d, float* dst, int ld) {
  for (int e = threadIdx.x; e < kTile * d; e += blockDim.x) {
    int r = e / d, c = e % d;
    std::int64_t row = row0 + r;
    dst[r * ld + c] = row < n ? toFloat(src[row * d + c]) : 0.0f;
  }
}

// A warp's own rows: rows [row0, row0 + kRows) into dst (stride d), zeros past n.
template <typename T>
__device__ void loadWarpRows(const T* src, std::int64_t row0, std::int64_t n, int d, float* dst) {
  const int lane = threadIdx.x % 32;
  for (int r = 0; r < kRows; ++r)
    for (int c = lane; c < d; c += 32) dst[r * d + c] = row0 + r < n ? toFloat(src[(row0 + r) * d + c]) : 0.0f;
}

__device__ __forceinline__ float dotRow(const float* a, const float* b, int d) {
  float s = 0.0f;
  for (int c = 0; c < d; ++c) s += a[c] * b[c];
  return s;
}

// The kernels take the caller's FlashForward or FlashBackward (flash.h) as their parameters.
template <typename T, int DC>
__global__ void __launch_bounds__(kWarps * 32) flashForwardKernel(FlashForward p) {
  CASTLING_DYNAMIC_SHARED(float, smem);
  const int d = int(p.d), ld = d + 1, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t n = p.n, head = blockIdx.y, off = head * n * d;
  float* keyTile = smem;                       // kTile x ld
  float* vTile = keyTile + kTile * ld;         // kTile x ld
  float* qRows = vTile + kTile * ld;         // kBlockRows x d
  float* pRows = qRows + kBlockRows * d;     // kBlockRows x kTile
  float* myQ = qRows + warp * kRows * d;
  float* myP = pRows + warp * kRows * kTile;
  const T* q = static_cast<const T*>(p.q) + off;
  const T* k = static_cast<const T*>(p.k) + off;
  const T* v = static_cast<const T*>(p.v) + off;
  const std::int64_t row0 = std::int64_t(blockIdx.x) * kBlockRows + warp * kRows;
  loadWarpRows(q, row0, n, d, myQ);

  float m[kRows], l[kRows], lse[kRows], mass[kRows], acc[kRows][DC];
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    lse[r] = 0.0f;
    mass[r] = 0.0f;
    for (int i = 0; i < DC; ++i) acc[r][i] = 0.0f;
  }
  // softmax: one pass with the online softmax. masked: pass 0 finds lse, pass 1 applies M . A.
  const int passes = p.masked ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    const bool withValues = !p.masked || pass == 1;
    for (std::int64_t kb = 0; kb < n; kb += kTile) {
      __syncthreads();
      loadTile(k, kb, n, d, keyTile, ld);
      if (withValues) loadTile(v, kb, n, d, vTile, ld);
      __syncthreads();
      const bool valid = kb + lane < n;
      for (int r = 0; r < kRows; ++r) {
        const float s = valid ? p.scale * dotRow(myQ + r * d, keyTile + lane * ld, d) : -INFINITY;
        if (!p.masked) {
          const float mNew = fmaxf(m[r], warpMax(s));
          const float correction = m[r] == -INFINITY ? 0.0f : expf(m[r] - mNew);
          const float e = valid ? expf(s - mNew) : 0.0f;
          l[r] = l[r] * correction + warpSum(e);
          m[r] = mNew;
          for (int i = 0; i < DC; ++i) acc[r][i] *= correction;
          myP[r * kTile + lane] = e;
        } else if (pass == 0) {
          const float mNew = fmaxf(m[r], warpMax(s));
          const float correction = m[r] == -INFINITY ? 0.0f : expf(m[r] - mNew);
          l[r] = l[r] * correction + warpSum(valid ? expf(s - mNew) : 0.0f);
          m[r] = mNew;
        } else {
          const float a = valid ? expf(s - lse[r]) : 0.0f;
          const float kept = a > p.tau ? a : 0.0f;
          mass[r] += kept;
          myP[r * kTile + lane] = kept;
        }
      }
      if (withValues) {
        __syncwarp();
        for (int r = 0; r < kRows; ++r)
          for (int j = 0; j < kTile; ++j) {
            const float pj = myP[r * kTile + j];
            for (int i = 0; i < DC; ++i) {
              const int c = lane + 32 * i;
              if (c < d) acc[r][i] += pj * vTile[j * ld + c];
            }
          }
        __syncwarp();
      }
    }
    if (p.masked && pass == 0)
      for (int r = 0; r < kRows; ++r) lse[r] = m[r] + logf(l[r]);
  }

  T* out = static_cast<T*>(p.out) + off;
  for (int r = 0; r < kRows; ++r) {
    const std::int64_t row = row0 + r;
    const float rowMass = p.masked ? warpSum(mass[r]) : 0.0f;
    if (row >= n) continue;
    if (!p.masked) {
      const float inv = 1.0f / l[r];
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) out[row * d + c] = fromFloat<T>(acc[r][i] * inv);
      }
      if (lane == 0) p.lse[head * n + row] = m[r] + logf(l[r]);
    } else {
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) out[row * d + c] = fromFloat<T>(acc[r][i]);
      }
      if (lane == 0) {
        p.lse[head * n + row] = lse[r];
        p.mass[head * n + row] = rowMass;
      }
    }
  }
}

// ---- backward ----

// ds of one (query, key) pair, as the CPU's flash backward forms it.
__device__ __forceinline__ void pairGradient(const FlashBackward& p, float s, float dA, float lse, float rowTerm, bool valid,
                                             float& ds, float& kept) {
  const float a = valid ? expf(s - lse) : 0.0f;
  kept = p.masked ? (a > p.tau ? a : 0.0f) : a;
  ds = valid ? kept * (dA + p.lambda) - a * rowTerm : 0.0f;
  if (!valid) kept = 0.0f;
}

// dq for kRows queries per warp, over all keys.
template <int DC>
__global__ void __launch_bounds__(kWarps * 32) flashBackwardQueryKernel(FlashBackward p) {
  if (p.anyKept && *p.anyKept == 0) return;  // uniform over the grid: nothing to add
  CASTLING_DYNAMIC_SHARED(float, smem);
  const int d = int(p.d), ld = d + 1, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t n = p.n, head = blockIdx.y, off = head * n * d;
  float* keyTile = smem;
  float* vTile = keyTile + kTile * ld;
  float* qRows = vTile + kTile * ld;
  float* gRows = qRows + kBlockRows * d;
  float* dsRows = gRows + kBlockRows * d;
  float* myQ = qRows + warp * kRows * d;
  float* myG = gRows + warp * kRows * d;
  float* myDs = dsRows + warp * kRows * kTile;
  const std::int64_t row0 = std::int64_t(blockIdx.x) * kBlockRows + warp * kRows;
  loadWarpRows(p.q + off, row0, n, d, myQ);
  loadWarpRows(p.dout + off, row0, n, d, myG);
  float lse[kRows], term[kRows], acc[kRows][DC];
  for (int r = 0; r < kRows; ++r) {
    const std::int64_t row = row0 + r;
    lse[r] = row < n ? p.lse[head * n + row] : INFINITY;
    term[r] = row < n ? p.rowTerm[head * n + row] : 0.0f;
    for (int i = 0; i < DC; ++i) acc[r][i] = 0.0f;
  }
  for (std::int64_t kb = 0; kb < n; kb += kTile) {
    __syncthreads();
    loadTile(p.k + off, kb, n, d, keyTile, ld);
    loadTile(p.v + off, kb, n, d, vTile, ld);
    __syncthreads();
    const bool valid = kb + lane < n;
    for (int r = 0; r < kRows; ++r) {
      const float s = p.scale * dotRow(myQ + r * d, keyTile + lane * ld, d);
      const float dA = dotRow(myG + r * d, vTile + lane * ld, d);
      float ds, kept;
      pairGradient(p, s, dA, lse[r], term[r], valid, ds, kept);
      myDs[r * kTile + lane] = ds;
    }
    __syncwarp();
    for (int r = 0; r < kRows; ++r)
      for (int j = 0; j < kTile; ++j) {
        const float g = myDs[r * kTile + j];
        for (int i = 0; i < DC; ++i) {
          const int c = lane + 32 * i;
          if (c < d) acc[r][i] += g * keyTile[j * ld + c];
        }
      }
    __syncwarp();
  }
  for (int r = 0; r < kRows; ++r) {
    const std::int64_t row = row0 + r;
    if (row >= n) continue;
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) p.dq[off + row * d + c] += p.scale * acc[r][i];
    }
  }
}

// dk and dv for kRows keys per warp, over all queries.
template <int DC>
__global__ void __launch_bounds__(kWarps * 32) flashBackwardKeyKernel(FlashBackward p) {
  if (p.anyKept && *p.anyKept == 0) return;
  CASTLING_DYNAMIC_SHARED(float, smem);
  const int d = int(p.d), ld = d + 1, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t n = p.n, head = blockIdx.y, off = head * n * d;
  float* qTile = smem;
  float* gTile = qTile + kTile * ld;
  float* lseTile = gTile + kTile * ld;
  float* termTile = lseTile + kTile;
  float* kRowsS = termTile + kTile;
  float* vRowsS = kRowsS + kBlockRows * d;
  float* dsRows = vRowsS + kBlockRows * d;
  float* keptRows = dsRows + kBlockRows * kTile;
  float* myK = kRowsS + warp * kRows * d;
  float* myV = vRowsS + warp * kRows * d;
  float* myDs = dsRows + warp * kRows * kTile;
  float* myKept = keptRows + warp * kRows * kTile;
  const std::int64_t row0 = std::int64_t(blockIdx.x) * kBlockRows + warp * kRows;
  loadWarpRows(p.k + off, row0, n, d, myK);
  loadWarpRows(p.v + off, row0, n, d, myV);
  float accK[kRows][DC], accV[kRows][DC];
  for (int r = 0; r < kRows; ++r)
    for (int i = 0; i < DC; ++i) accK[r][i] = accV[r][i] = 0.0f;
  for (std::int64_t qb = 0; qb < n; qb += kTile) {
    __syncthreads();
    loadTile(p.q + off, qb, n, d, qTile, ld);
    loadTile(p.dout + off, qb, n, d, gTile, ld);
    if (threadIdx.x < kTile) {
      const std::int64_t query = qb + threadIdx.x;
      lseTile[threadIdx.x] = query < n ? p.lse[head * n + query] : INFINITY;
      termTile[threadIdx.x] = query < n ? p.rowTerm[head * n + query] : 0.0f;
    }
    __syncthreads();
    const bool valid = qb + lane < n;
    for (int r = 0; r < kRows; ++r) {
      const float s = p.scale * dotRow(qTile + lane * ld, myK + r * d, d);
      const float dA = dotRow(gTile + lane * ld, myV + r * d, d);
      float ds, kept;
      pairGradient(p, s, dA, lseTile[lane], termTile[lane], valid, ds, kept);
      myDs[r * kTile + lane] = ds;
      myKept[r * kTile + lane] = kept;
    }
    __syncwarp();
    for (int r = 0; r < kRows; ++r)
      for (int j = 0; j < kTile; ++j) {
        const float g = myDs[r * kTile + j], a = myKept[r * kTile + j];
        for (int i = 0; i < DC; ++i) {
          const int c = lane + 32 * i;
          if (c < d) {
            accK[r][i] += g * qTile[j * ld + c];
            accV[r][i] += a * gTile[j * ld + c];
          }
        }
      }
    __syncwarp();
  }
  for (int r = 0; r < kRows; ++r) {
    const std::int64_t row = row0 + r;
    if (row >= n) continue;
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) {
        p.dk[off + row * d + c] += p.scale * accK[r][i];
        p.dv[off + row * d + c] += accV[r][i];
      }
    }
  }
}

// ---- launching ----

// The DC instance for a head width (1, 2 or 4 values per lane).
template <typename Fn>
void withLaneChunks(std::int64_t d, Fn&& fn) {
  if (d < 1 || d > kFlashMaxWidth) fail("attention on cuda: head width d=", d, ", expected 1 to ", kFlashMaxWidth);
  if (d <= 32) fn(std::integral_constant<int, 1>{});
  else if (d <= 64) fn(std::integral_constant<int, 2>{});
  else fn(std::integral_constant<int, 4>{});
}

// Raises a kernel's dynamic shared-memory limit when it needs more than the default 48 KiB.
template <typename Kernel>
void allowSharedMemory(Kernel kernel, std::size_t bytes) {
  if (bytes > 48 * 1024) CASTLING_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

dim3 rowGrid(std::int64_t n, std::int64_t heads) {
  return dim3(unsigned((n + kBlockRows - 1) / kBlockRows), gridDimYZ(heads, "attention heads (batch x heads)"));
}

// Launches a flash kernel over the n rows of every head (kBlockRows a block) with `bytes` of
// dynamic shared memory.
template <typename Kernel, typename Params>
void launchOverRows(Kernel kernel, const Params& p, std::size_t bytes) {
  allowSharedMemory(kernel, bytes);
  launch(kernel, rowGrid(p.n, p.heads), kWarps * 32, bytes, stream(), p);
  CASTLING_CUDA_CHECK_LAUNCH();
}

}  // namespace

void flashForward(const FlashForward& f) {
  if (f.heads == 0 || f.n == 0) return;
  const int ld = int(f.d) + 1;
  const std::size_t bytes = sizeof(float) * std::size_t(2 * kTile * ld + kBlockRows * f.d + kBlockRows * kTile);
  withDType(f.dtype, [&](auto tag) {
    using T = decltype(tag);
    withLaneChunks(f.d, [&](auto chunks) {
      constexpr int DC = decltype(chunks)::value;
      launchOverRows(flashForwardKernel<T, DC>, f, bytes);
    });
  });
}

void flashBackward(const FlashBackward& b) {
  if (b.heads == 0 || b.n == 0) return;
  const int ld = int(b.d) + 1;
  const std::size_t queryBytes = sizeof(float) * std::size_t(2 * kTile * ld + 2 * kBlockRows * b.d + kBlockRows * kTile);
  const std::size_t keyBytes = sizeof(float) * std::size_t(2 * kTile * ld + 2 * kTile + 2 * kBlockRows * b.d + 2 * kBlockRows * kTile);
  withLaneChunks(b.d, [&](auto chunks) {
    constexpr int DC = decltype(chunks)::value;
    launchOverRows(flashBackwardQueryKernel<DC>, b, queryBytes);
    launchOverRows(flashBackwardKeyKernel<DC>, b, keyBytes);
  });
}

}  // namespace castling::cuda
