#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "../core/error.h"
#include "../core/storage.h"
#include "../core/thread_pool.h"
#include "panel_packing.h"

namespace castling::cpu {

namespace {

// Cache blocking (the BLIS scheme for a broadcast-A micro-kernel). One packed A micro-panel
// (MR x kc, 18 KB for the AVX-512 12 x kc at kc = 384) stays in L1 while it is multiplied by
// every NR-wide micro-panel of the packed B block (kc x nc), which sits in the core's private
// L2 (1 MB on the target Xeon): 384 x 320 floats = 480 KB, half of it, so that the A panels
// and C lines passing through do not evict it. An A stored M x K (activations: every linear
// layer) is not packed: the micro-kernel reads its MR rows in place (gemmMicroDirectA), which stay
// in L1 just as well, and a last partial row tile computes only its rows (gemmMicroDirectRows).
// Measured on DeiT-S predict, 1 thread: 3-4% less CPU time at 224^2, the same at 448^2.
//
// A thread's rows go in blocks of at most kMc, split evenly: every K-slice of a block goes over
// the block's rows of C (and its slice of A) again, which must still be in L3 then. At 768 rows
// and N = 384 that is 1.2 MB of C and 1.2 MB of A a thread. With blocks of 3072 rows (4.7 MB of
// each), the training step's GEMMs of several K-slices at batch 32 (6304 rows: fc2's forward,
// K = 1536; fc1's input gradient) waited on memory: the step's forward linear layers took 2-4%
// more time, the whole step 1.5-2% (castling, 3 alternating rounds); batch 8 the same either way.
constexpr std::int64_t kMaxKc = 384;
constexpr std::int64_t kMaxNc = 320;
constexpr std::int64_t kMc = 768;
// The first block of a thread's share when the next blocks are asked for ahead (multiplyBlock).
constexpr std::int64_t kFirstBlockPanels = 2;
constexpr std::int64_t kMaxSharedBFloats = std::int64_t(1) << 20;  // 4 MB

// Each thread (caller or pool worker) keeps its own packed buffers: every thread packs the A and
// B panels it multiplies, so a GEMM needs a single fork-join and no barrier between packing and
// computing. The buffers are reused across calls (no page faults per GEMM), and two GEMMs
// running concurrently from different callers never share one. (A B that several threads or
// several row blocks would pack alike is packed whole first instead, see sgemm.)
thread_local AlignedBuffer t_packed_a;
thread_local AlignedBuffer t_packed_b;

// ---- packing ----

// Packs rows [i0, i0 + rows) x columns [k0, k0 + kc) of op(A) as MR-row micro-panels.
void packA(const GemmArgs& g, int mr, std::int64_t i0, std::int64_t rows, std::int64_t k0,
           std::int64_t kc, float* dst) {
  for (std::int64_t r0 = 0; r0 < rows; r0 += mr) {
    std::int64_t valid = std::min<std::int64_t>(mr, rows - r0);
    float* out = dst + r0 * kc;
    if (g.transA)  // stored K x M: each k gives MR consecutive floats
      copyPanel(g.A + k0 * g.lda + i0 + r0, g.lda, valid, kc, mr, out);
    else
      transposePanel(g.A + (i0 + r0) * g.lda + k0, g.lda, valid, kc, mr, out);
  }
}

// Packs columns [j0, j0 + cols) x rows [k0, k0 + kc) of op(B) as NR-column micro-panels.
void packB(const GemmArgs& g, int nr, std::int64_t j0, std::int64_t cols, std::int64_t k0,
           std::int64_t kc, float* dst) {
  for (std::int64_t c0 = 0; c0 < cols; c0 += nr) {
    std::int64_t valid = std::min<std::int64_t>(nr, cols - c0);
    float* out = dst + c0 * kc;
    if (g.transB)  // stored N x K (a PyTorch weight): column j of B is row j of the storage
      transposePanel(g.B + (j0 + c0) * g.ldb + k0, g.ldb, valid, kc, nr, out);
    else
      copyPanel(g.B + k0 * g.ldb + j0 + c0, g.ldb, valid, kc, nr, out);
  }
}

// ---- compute ----

bool hasEpilogue(const Epilogue& e) { return e.bias || e.gelu || e.residual; }

std::int64_t roundUp(std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; }

// A block of a B packed whole (packWholeB): K-slice k0 starts at k0 x N (N padded to NR), its
// panel j0 at j0 x kc, and a block's panels lie one after the other.
struct PackedBlock {
  const float* data = nullptr;
  std::int64_t floats = 0;
};

PackedBlock packedBlockAt(const GemmArgs& g, int nr, std::int64_t k0, std::int64_t kc, std::int64_t j0,
                          std::int64_t cols) {
  return {g.packedB + k0 * roundUp(g.N, nr) + j0 * kc, roundUp(cols, nr) * kc};
}

// One K-slice of the product for the C block rows [i0, i0 + rows) x columns [j0, j0 + cols), from
// its packed A block (or, when direct_a is set, A's rows read in place: direct_a points at row
// i0, column k0; a last partial row tile is computed for its rows only) and its packed B block.
// The tiles share out `next` (the block multiplied after this one, if it is to be asked for into
// L2): each k loop asks for its share of the lines, so the requests spread over the whole block.
void multiplyPackedBlocks(const DenseKernels& kt, const GemmArgs& g, const float* packed_a, const float* direct_a,
                          const float* packed_b, std::int64_t i0, std::int64_t rows,
                          std::int64_t j0, std::int64_t cols, std::int64_t kc, bool accumulate,
                          bool last_slice, PackedBlock next) {
  const int mr = kt.mr, nr = kt.nr;
  const std::int64_t tiles = (rows + mr - 1) / mr * ((cols + nr - 1) / nr);
  const std::int64_t next_lines = (next.floats + kCacheLineFloats - 1) / kCacheLineFloats;
  const std::int64_t lines_per_tile = (next_lines + tiles - 1) / tiles;
  std::int64_t lines_asked = 0;
  auto asking_ahead = [&](TileAddends add) {
    add.nextBLines = std::min(lines_per_tile, next_lines - lines_asked);
    if (add.nextBLines > 0) add.nextB = next.data + lines_asked * kCacheLineFloats;
    lines_asked += add.nextBLines;
    return add;
  };
  alignas(64) float edge[32 * 64];  // one MR x NR tile for partial tiles (MR*NR <= 2048)
  const Epilogue& e = g.epilogue;
  const bool epilogue = last_slice && hasEpilogue(e);
  for (std::int64_t r0 = 0; r0 < rows; r0 += mr) {
    std::int64_t tile_rows = std::min<std::int64_t>(mr, rows - r0);
    const float* a = packed_a ? packed_a + r0 * kc : nullptr;
    auto micro = [&](const float* b, float* c, std::int64_t ldc, const TileAddends& add) {
      if (direct_a && tile_rows == mr)
        kt.gemmMicroDirectA(kc, direct_a + r0 * g.lda, g.lda, b, c, ldc, g.alpha, add);
      else if (direct_a)
        kt.gemmMicroDirectRows(int(tile_rows), kc, direct_a + r0 * g.lda, g.lda, b, c, ldc, g.alpha, add);
      else
        kt.gemmMicro(kc, a, 0, b, c, ldc, g.alpha, add);
    };
    for (std::int64_t c0 = 0; c0 < cols; c0 += nr) {
      std::int64_t tile_cols = std::min<std::int64_t>(nr, cols - c0);
      const float* b = packed_b + c0 * kc;
      float* c = g.C + (i0 + r0) * g.ldc + j0 + c0;
      const float* bias = e.bias ? e.bias + j0 + c0 : nullptr;
      const float* residual = e.residual ? e.residual + (i0 + r0) * e.ldr + j0 + c0 : nullptr;
      // Whole columns go straight to C; so do partial rows read in place (only they are written).
      // The micro-kernel then adds the bias, and the residual unless GELU must come first.
      if (tile_cols == nr && (tile_rows == mr || direct_a)) {
        TileAddends add{accumulate};
        if (epilogue) {
          add.bias = bias;
          if (!e.gelu) add.residual = residual, add.ldr = e.ldr;
        }
        micro(b, c, g.ldc, asking_ahead(add));
        if (epilogue && e.gelu) kt.epilogueTile(c, g.ldc, tile_rows, tile_cols, nullptr, true, residual, e.ldr);
        continue;
      }
      micro(b, edge, nr, asking_ahead(TileAddends{}));
      for (std::int64_t r = 0; r < tile_rows; ++r) {
        float* cr = c + r * g.ldc;
        const float* er = edge + r * nr;
        if (accumulate)
          for (std::int64_t j = 0; j < tile_cols; ++j) cr[j] += er[j];
        else
          std::memcpy(cr, er, std::size_t(tile_cols) * sizeof(float));
      }
      if (epilogue) kt.epilogueTile(c, g.ldc, tile_rows, tile_cols, bias, e.gelu, residual, e.ldr);
    }
  }
}

// The size of each of `parts` nearly equal chunks of [0, total), rounded up to a multiple of
// `unit` so that only the last chunk has a partial tile.
std::int64_t evenChunk(std::int64_t total, std::int64_t parts, std::int64_t unit) {
  std::int64_t units = (total + unit - 1) / unit;
  return (units + parts - 1) / parts * unit;
}

// The width of the K-slices: equal ones (e.g. 768 = 2 x 384, 500 = 2 x 250) rather than a full
// slice and a thin remainder that would pay the packing and the C update for little work.
std::int64_t kSliceWidth(std::int64_t K) {
  std::int64_t k_slices = (K + kMaxKc - 1) / kMaxKc;
  return (K + k_slices - 1) / k_slices;
}

// Whether MR rows of A read in place, `lda` floats apart, crowd into a few sets of the L1 cache.
// A 64-set, 8-way L1 (32 or 48 KB) gives addresses 4 KB apart the same set: at K = 3072 (rows
// 12 KB apart) all 12 rows of an AVX-512 tile share one set, more lines than it has ways, and the
// micro-kernel's loads of A miss in L1 all the way along k (the K = 3072 GEMM ran at 82% of the
// peak against 94% for its neighbours). Packed, the tile's rows are contiguous.
bool rowsCrowdL1Sets(std::int64_t lda, int mr) {
  constexpr std::int64_t kSets = 64, kLine = 64;
  constexpr int kWaysForA = 6;  // of 8: K = 1536 (6 rows a set) measured as fast as its neighbours
  std::int64_t perSet[kSets] = {};
  std::int64_t previous = -1;
  for (int r = 0; r < mr; ++r) {
    std::int64_t line = std::int64_t(r) * lda * std::int64_t(sizeof(float)) / kLine;
    if (line == previous) continue;  // short rows share lines: one line, not several
    previous = line;
    if (++perSet[line % kSets] > kWaysForA) return true;
  }
  return false;
}

// The whole blocked algorithm, single-threaded, for the C block rows [i_begin, i_end) x columns
// [j_begin, j_end): one thread's share of the GEMM.
void multiplyBlock(const DenseKernels& kt, const GemmArgs& g, std::int64_t i_begin,
                   std::int64_t i_end, std::int64_t j_begin, std::int64_t j_end) {
  const int mr = kt.mr, nr = kt.nr;
  std::int64_t kc_max = kSliceWidth(g.K);
  std::int64_t cols_total = j_end - j_begin;
  std::int64_t nc = evenChunk(cols_total, (cols_total + kMaxNc - 1) / kMaxNc, nr);
  const bool pack_a = g.transA || rowsCrowdL1Sets(g.lda, mr);
  const std::int64_t rows_total = i_end - i_begin;
  const std::int64_t mc = evenChunk(rows_total, (rows_total + kMc - 1) / kMc, mr);
  // With B packed whole (a layer's weights: their first use in a pass reads them from memory) and
  // kt.gemmPrefetchesNextBlock, the tiles of each block ask for the next block into L2 as they
  // go. The thread's first block, which nothing asked for, is kFirstBlockPanels panels wide, so
  // that little waits on memory before the asking starts, and each next block of that first sweep
  // over B is as wide as all the blocks before it plus that (2, 4, 8, ... panels), so that it can
  // be asked for whole during the one before (at 197 rows a block's tiles ask for about twice
  // their own size).
  const bool prefetch_next = g.packedB && kt.gemmPrefetchesNextBlock;
  auto block_cols = [&](std::int64_t i0, std::int64_t k0, std::int64_t j0) {
    const bool first_sweep = prefetch_next && i0 == i_begin && k0 == 0;
    return std::min(first_sweep ? std::min(nc, j0 - j_begin + kFirstBlockPanels * nr) : nc, j_end - j0);
  };
  // The block multiplied after the one at (i0, k0, j0): the next columns, else the next
  // K-slice's first, else the next row block's.
  auto block_after = [&](std::int64_t i0, std::int64_t k0, std::int64_t j0, std::int64_t cols) -> PackedBlock {
    if (!prefetch_next) return {};
    j0 += cols;
    if (j0 >= j_end) {
      j0 = j_begin;
      k0 += kc_max;
      if (k0 >= g.K) k0 = 0, i0 += mc;
      if (i0 >= i_end) return {};
    }
    return packedBlockAt(g, nr, k0, std::min(kc_max, g.K - k0), j0, block_cols(i0, k0, j0));
  };
  for (std::int64_t i0 = i_begin; i0 < i_end; i0 += mc) {
    std::int64_t rows = std::min(mc, i_end - i0);
    float* packed_a = pack_a ? t_packed_a.ensure(roundUp(rows, mr) * kc_max) : nullptr;
    for (std::int64_t k0 = 0; k0 < g.K; k0 += kc_max) {
      std::int64_t kc = std::min(kc_max, g.K - k0);
      bool accumulate = g.accumulate || k0 > 0;
      bool last_slice = k0 + kc == g.K;
      const float* direct_a = nullptr;
      if (!pack_a) {
        // A's rows are read in place (packing them would be a transpose, and at M = 197 both
        // threads would do it for all of A), a last partial row tile too (gemmMicroDirectRows).
        direct_a = g.A + i0 * g.lda + k0;
      } else {
        packA(g, mr, i0, rows, k0, kc, packed_a);
      }
      for (std::int64_t j0 = j_begin, cols = 0; j0 < j_end; j0 += cols) {
        cols = block_cols(i0, k0, j0);
        const float* packed_b;
        if (g.packedB) {
          packed_b = packedBlockAt(g, nr, k0, kc, j0, cols).data;
        } else {
          float* block = t_packed_b.ensure(roundUp(cols, nr) * kc);
          packB(g, nr, j0, cols, k0, kc, block);
          packed_b = block;
        }
        multiplyPackedBlocks(kt, g, packed_a, direct_a, packed_b, i0, rows, j0, cols, kc, accumulate,
                             last_slice, block_after(i0, k0, j0, cols));
      }
    }
  }
}

// How the threads share C: a grid of row_parts x col_parts blocks, one per thread.
struct ThreadGrid {
  int row_parts = 1, col_parts = 1;
};

// Estimated time of the slowest thread, in multiply-adds: its tile-padded block of C times K,
// plus the packing it does (every thread packs all the B columns it touches, and all the A rows,
// or reads them in place at about the same cost in memory traffic),
// weighted by how much slower packing a float is than one multiply-add in the micro-kernel.
double slowestThreadCost(const GemmArgs& g, int mr, int nr, int row_parts, int col_parts) {
  constexpr double kPackCost = 16;  // ~2 floats/cycle packed vs ~32 multiply-adds/cycle
  double rows = double(evenChunk(g.M, row_parts, mr));
  double cols = double(evenChunk(g.N, col_parts, nr));
  return rows * cols * double(g.K) + kPackCost * (rows + cols) * double(g.K);
}

// Chooses the grid with the cheapest slowest thread. Splitting along N makes every thread pack
// all of A (cheap when M is small: 197 tokens), splitting along M makes every thread pack all of
// B; the tile padding of uneven splits counts too. The grid may leave some workers out: DeiT-S's
// attention projection at batch 1 (197 x 384 x 384, 29 workers by the rule in sgemm) has no
// grid of all 29 but 1 x 29, where every thread packs all of A for one panel of B; 9 x 3
// (27 workers) gives the slowest thread about half that cost.
ThreadGrid chooseGrid(const GemmArgs& g, int mr, int nr, int workers) {
  ThreadGrid best{workers, 1};
  double best_cost = slowestThreadCost(g, mr, nr, workers, 1);
  for (int row_parts = 1; row_parts <= workers; ++row_parts) {
    int col_parts = workers / row_parts;
    double cost = slowestThreadCost(g, mr, nr, row_parts, col_parts);
    if (cost < best_cost) best = {row_parts, col_parts}, best_cost = cost;
  }
  return best;
}

void checkArgs(const GemmArgs& g) {
  if (g.M < 0 || g.N < 0 || g.K < 0) fail("gemm sizes must be >= 0, got M=", g.M, " N=", g.N, " K=", g.K);
  std::int64_t a_cols = g.transA ? g.M : g.K, b_cols = g.transB ? g.K : g.N;
  // Empty matrices (a dimension of 0) have stride 0; anything else needs a stride covering a row.
  if (g.lda < a_cols) fail("gemm lda=", g.lda, " is smaller than ", a_cols);
  if (g.ldb < b_cols) fail("gemm ldb=", g.ldb, " is smaller than ", b_cols);
  if (g.ldc < g.N) fail("gemm ldc=", g.ldc, " is smaller than N=", g.N);
  if (g.epilogue.residual && g.epilogue.ldr < g.N) fail("gemm residual stride ", g.epilogue.ldr, " is smaller than N=", g.N);
  if (g.accumulate && g.epilogue.gelu) fail("gemm cannot both accumulate into C and apply GELU");
}

}  // namespace

std::int64_t packedBFloats(const DenseKernels& kt, const ops::GemmLayout& g) { return g.K * roundUp(g.N, kt.nr); }

void packWholeB(const DenseKernels& kt, const GemmArgs& g, float* dst) {
  checkArgs(g);
  const int nr = kt.nr;
  const std::int64_t kc_max = kSliceWidth(g.K), padded_n = roundUp(g.N, nr), panels = padded_n / nr;
  // One job over every K-slice, in pieces of two panels of a slice (~100 KB packed), so that
  // many threads share even a narrow B (a 384-column B has 12 panels a slice on AVX-512).
  constexpr std::int64_t kPanelsPerPiece = 2;
  const std::int64_t slices = (g.K + kc_max - 1) / kc_max, pieces = (panels + kPanelsPerPiece - 1) / kPanelsPerPiece;
  ThreadPool::global().parallelFor(slices * pieces, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int64_t k0 = i / pieces * kc_max, kc = std::min(kc_max, g.K - k0);
      const std::int64_t first = i % pieces * kPanelsPerPiece, last = std::min(panels, first + kPanelsPerPiece);
      const std::int64_t j0 = first * nr, cols = std::min(last * nr, g.N) - j0;
      packB(g, nr, j0, cols, k0, kc, dst + k0 * padded_n + j0 * kc);
    }
  });
}

void sgemm(const DenseKernels& kt, const GemmArgs& g, int threads) {
  checkArgs(g);
  if (g.packedB && g.packedNr != kt.nr) {
    fail("gemm: B was packed for NR = ", g.packedNr, ", the kernel table multiplies NR = ", kt.nr);
  }
  if (g.packedB && reinterpret_cast<std::uintptr_t>(g.packedB) % kAlignment != 0) {
    fail("gemm: a packed B must be 64-byte aligned (the micro-kernels load its panels aligned)");
  }
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
  // Enough work for each thread to pay for its wake-up and its packing: about 2 MFLOP.
  double flops = 2.0 * double(g.M) * double(g.N) * double(g.K);
  int workers = int(std::max<double>(1, std::min<double>(threads, flops / 2e6)));
  ThreadGrid grid = chooseGrid(g, kt.mr, kt.nr, workers);
  std::int64_t row_chunk = evenChunk(g.M, grid.row_parts, kt.mr);
  std::int64_t col_chunk = evenChunk(g.N, grid.col_parts, kt.nr);
  // Each thread packs the B panels it multiplies, again for each of its row blocks, and threads
  // of one column range each pack the same ones. When either happens, B is packed whole once
  // here, over the pool, and shared instead, if it stays in L3 until it is read: the training
  // step's input gradients (dy W, 6304 rows at batch 32: five row blocks a thread): linearBackward
  // 0.973-0.997 of its thread time before (op-cpu-profile, 6 alternating rounds). A larger B (the
  // weight gradient's x, 9.7 MB at batch 32) costs more from memory than its packing saves.
  // (Nested inside a pool job, the packing and the GEMM run inline.)
  GemmArgs args = g;
  std::unique_ptr<Storage> shared_b;
  const std::int64_t b_floats = packedBFloats(kt, g);
  if (!g.packedB && (grid.row_parts > 1 || row_chunk > kMc) && b_floats <= kMaxSharedBFloats) {
    shared_b = std::make_unique<Storage>(b_floats);
    packWholeB(kt, g, shared_b->data());
    args.packedB = shared_b->data();
    args.packedNr = kt.nr;
  }
  pool.run(grid.row_parts * grid.col_parts, [&](int w) {
    std::int64_t i_begin = std::min(g.M, (w / grid.col_parts) * row_chunk);
    std::int64_t j_begin = std::min(g.N, (w % grid.col_parts) * col_chunk);
    std::int64_t i_end = std::min(g.M, i_begin + row_chunk);
    std::int64_t j_end = std::min(g.N, j_begin + col_chunk);
    if (i_begin < i_end && j_begin < j_end) multiplyBlock(kt, args, i_begin, i_end, j_begin, j_end);
  });
}

void sgemm(const GemmArgs& args) { sgemm(denseKernels(), args, ThreadPool::global().threads()); }

}  // namespace castling::cpu
