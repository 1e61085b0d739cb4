#include "gemm.h"

#include <algorithm>
#include <cstring>

#include "../core/error.h"
#include "../core/storage.h"
#include "../core/thread_pool.h"

namespace castling::cpu {

namespace {

// Cache blocking. A K-slice of kKc keeps one packed A micro-panel (MR x kKc) in L1 while the
// packed B block (kKc x kNc) sits in the core's private L2 and is streamed one NR-wide
// micro-panel at a time. kMc bounds the shared packed A block (it lives in L3).
constexpr std::int64_t kKc = 384;
constexpr std::int64_t kNc = 480;
constexpr std::int64_t kMc = 3072;

// Each calling thread keeps its packed-A buffer, each pool thread its packed-B buffer: they are
// reused across calls (no page faults per GEMM), and two GEMMs running concurrently from
// different callers never share one.
thread_local AlignedBuffer t_packed_a;
thread_local AlignedBuffer t_packed_b;

inline float elementA(const GemmArgs& g, std::int64_t i, std::int64_t k) {
  return g.transA ? g.A[k * g.lda + i] : g.A[i * g.lda + k];
}

// Packs rows [i0, i0 + rows) x columns [k0, k0 + kc) of op(A) as MR-row panels: panel p holds,
// for each k, the MR values A(i0 + p*MR + r, k0 + k), zero-padded past the last row.
void packA(const GemmArgs& g, int mr, std::int64_t i0, std::int64_t rows, std::int64_t k0,
           std::int64_t kc, std::int64_t panel_begin, std::int64_t panel_end, float* dst) {
  for (std::int64_t p = panel_begin; p < panel_end; ++p) {
    float* out = dst + p * mr * kc;
    std::int64_t r0 = p * mr;
    std::int64_t valid = std::min<std::int64_t>(mr, rows - r0);
    if (!g.transA) {
      for (std::int64_t r = 0; r < mr; ++r) {
        if (r < valid) {
          const float* src = g.A + (i0 + r0 + r) * g.lda + k0;
          for (std::int64_t k = 0; k < kc; ++k) out[k * mr + r] = src[k];
        } else {
          for (std::int64_t k = 0; k < kc; ++k) out[k * mr + r] = 0.0f;
        }
      }
    } else {
      // Stored K x M: each k gives MR consecutive floats.
      for (std::int64_t k = 0; k < kc; ++k) {
        const float* src = g.A + (k0 + k) * g.lda + i0 + r0;
        std::int64_t r = 0;
        for (; r < valid; ++r) out[k * mr + r] = src[r];
        for (; r < mr; ++r) out[k * mr + r] = 0.0f;
      }
    }
  }
}

// Packs columns [j0, j0 + cols) x rows [k0, k0 + kc) of op(B) as NR-column panels: for each k,
// the NR values B(k0 + k, j0 + p*NR + c), zero-padded past the last column.
void packB(const GemmArgs& g, int nr, std::int64_t j0, std::int64_t cols, std::int64_t k0,
           std::int64_t kc, float* dst) {
  std::int64_t panels = (cols + nr - 1) / nr;
  for (std::int64_t p = 0; p < panels; ++p) {
    float* out = dst + p * nr * kc;
    std::int64_t c0 = p * nr;
    std::int64_t valid = std::min<std::int64_t>(nr, cols - c0);
    if (!g.transB) {
      for (std::int64_t k = 0; k < kc; ++k) {
        const float* src = g.B + (k0 + k) * g.ldb + j0 + c0;
        std::int64_t c = 0;
        for (; c < valid; ++c) out[k * nr + c] = src[c];
        for (; c < nr; ++c) out[k * nr + c] = 0.0f;
      }
    } else {
      // Stored N x K (a PyTorch weight): column c of B is row c of the storage.
      for (std::int64_t c = 0; c < nr; ++c) {
        if (c < valid) {
          const float* src = g.B + (j0 + c0 + c) * g.ldb + k0;
          for (std::int64_t k = 0; k < kc; ++k) out[k * nr + c] = src[k];
        } else {
          for (std::int64_t k = 0; k < kc; ++k) out[k * nr + c] = 0.0f;
        }
      }
    }
  }
}

bool hasEpilogue(const Epilogue& e) { return e.bias || e.gelu || e.residual; }

// Computes the tiles of C in rows [i0 + panel_begin*MR, ...) x columns [j0, j0 + cols) of the
// current K-slice, from packed A panels and a packed B block.
void computeBlock(const KernelTable& kt, const GemmArgs& g, const float* packed_a,
                  const float* packed_b, std::int64_t i0, std::int64_t rows,
                  std::int64_t panel_begin, std::int64_t panel_end, std::int64_t j0,
                  std::int64_t cols, std::int64_t kc, bool accumulate, bool last_slice) {
  const int mr = kt.mr, nr = kt.nr;
  alignas(64) float edge[32 * 64];  // one MR x NR tile for partial tiles (MR*NR <= 2048)
  std::int64_t n_panels = (cols + nr - 1) / nr;
  bool epilogue = last_slice && hasEpilogue(g.epilogue);
  for (std::int64_t p = panel_begin; p < panel_end; ++p) {
    std::int64_t r0 = p * mr;
    std::int64_t tile_rows = std::min<std::int64_t>(mr, rows - r0);
    const float* a = packed_a + p * mr * kc;
    for (std::int64_t q = 0; q < n_panels; ++q) {
      std::int64_t c0 = q * nr;
      std::int64_t tile_cols = std::min<std::int64_t>(nr, cols - c0);
      const float* b = packed_b + q * nr * kc;
      float* c = g.C + (i0 + r0) * g.ldc + j0 + c0;
      if (tile_rows == mr && tile_cols == nr) {
        kt.gemmMicro(kc, a, b, c, g.ldc, g.alpha, accumulate);
      } else {
        kt.gemmMicro(kc, a, b, edge, nr, g.alpha, false);
        for (std::int64_t r = 0; r < tile_rows; ++r) {
          float* cr = c + r * g.ldc;
          const float* er = edge + r * nr;
          if (accumulate)
            for (std::int64_t j = 0; j < tile_cols; ++j) cr[j] += er[j];
          else
            std::memcpy(cr, er, std::size_t(tile_cols) * sizeof(float));
        }
      }
      if (epilogue) {
        const Epilogue& e = g.epilogue;
        kt.epilogueTile(c, g.ldc, tile_rows, tile_cols, e.bias ? e.bias + j0 + c0 : nullptr,
                        e.gelu, e.residual ? e.residual + (i0 + r0) * e.ldr + j0 + c0 : nullptr,
                        e.ldr);
      }
    }
  }
}

void checkArgs(const GemmArgs& g) {
  if (g.M < 0 || g.N < 0 || g.K < 0) fail("gemm sizes must be >= 0, got M=", g.M, " N=", g.N, " K=", g.K);
  std::int64_t a_cols = g.transA ? g.M : g.K, b_cols = g.transB ? g.K : g.N;
  if (g.lda < a_cols) fail("gemm lda=", g.lda, " is smaller than ", a_cols);
  if (g.ldb < b_cols) fail("gemm ldb=", g.ldb, " is smaller than ", b_cols);
  if (g.ldc < g.N) fail("gemm ldc=", g.ldc, " is smaller than N=", g.N);
  if (g.epilogue.residual && g.epilogue.ldr < g.N) fail("gemm residual stride ", g.epilogue.ldr, " is smaller than N=", g.N);
  if (g.accumulate && g.epilogue.gelu) fail("gemm cannot both accumulate into C and apply GELU");
}

}  // namespace

void sgemm(const KernelTable& kt, const GemmArgs& g, int threads) {
  checkArgs(g);
  if (g.M == 0 || g.N == 0) return;
  if (g.K == 0) {
    // No products: C = epilogue(0) (or C unchanged plus the epilogue's bias and residual).
    for (std::int64_t i = 0; i < g.M; ++i) {
      float* c = g.C + i * g.ldc;
      if (!g.accumulate) std::memset(c, 0, std::size_t(g.N) * sizeof(float));
      kt.epilogueTile(c, g.ldc, 1, g.N, g.epilogue.bias, g.epilogue.gelu,
                      g.epilogue.residual ? g.epilogue.residual + i * g.epilogue.ldr : nullptr,
                      g.epilogue.ldr);
    }
    return;
  }
  ThreadPool& pool = ThreadPool::global();
  threads = std::max(1, std::min(threads, pool.threads()));
  const int mr = kt.mr, nr = kt.nr;

  for (std::int64_t i0 = 0; i0 < g.M; i0 += kMc) {
    std::int64_t rows = std::min(kMc, g.M - i0);
    std::int64_t m_panels = (rows + mr - 1) / mr;
    std::int64_t n_panels = (g.N + nr - 1) / nr;
    for (std::int64_t k0 = 0; k0 < g.K; k0 += kKc) {
      std::int64_t kc = std::min(kKc, g.K - k0);
      bool accumulate = g.accumulate || k0 > 0;
      bool last_slice = k0 + kc == g.K;
      float* packed_a = t_packed_a.ensure(m_panels * mr * kc);
      // Enough work for each thread to pay for its wake-up: about 1 MFLOP.
      double flops = 2.0 * double(rows) * double(g.N) * double(kc);
      int workers = int(std::max<double>(1, std::min<double>(threads, flops / 1e6)));

      pool.run(workers, [&](int w) {
        std::int64_t begin = m_panels * w / workers, end = m_panels * (w + 1) / workers;
        packA(g, mr, i0, rows, k0, kc, begin, end, packed_a);
      });

      // Split the output between threads along N when there are enough column panels for each
      // thread to get its own (each then packs only its part of B into its own L2), else
      // along M (each thread packs all of B, which is then narrow).
      bool split_n = n_panels >= 2 * workers;
      pool.run(workers, [&](int w) {
        std::int64_t p_begin = 0, p_end = m_panels, j_begin = 0, j_end = g.N;
        if (split_n) {
          j_begin = n_panels * w / workers * nr;
          j_end = std::min(g.N, n_panels * (w + 1) / workers * nr);
        } else {
          p_begin = m_panels * w / workers;
          p_end = m_panels * (w + 1) / workers;
        }
        for (std::int64_t j0 = j_begin; j0 < j_end; j0 += kNc) {
          std::int64_t cols = std::min(kNc, j_end - j0);
          float* packed_b = t_packed_b.ensure(((cols + nr - 1) / nr) * nr * kc);
          packB(g, nr, j0, cols, k0, kc, packed_b);
          computeBlock(kt, g, packed_a, packed_b, i0, rows, p_begin, p_end, j0, cols, kc,
                       accumulate, last_slice);
        }
      });
    }
  }
}

void sgemm(const GemmArgs& args) { sgemm(kernels(), args, ThreadPool::global().threads()); }

}  // namespace castling::cpu
