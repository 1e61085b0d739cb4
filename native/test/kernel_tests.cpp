// C++ kernel tests of the core CPU ops against float64 references: runnable without Node.js
// (`npm run test:cpp`, or ctest on a machine that only has a compiler).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "../core/op_registry.h"
#include "../core/storage.h"
#include "../core/tensor.h"
#include "../core/thread_pool.h"
#include "../cpu/cpu_ops.h"
#include "../cpu/gemm.h"
#include "../cpu/panel_packing.h"
#include "op_helpers.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;

// Element (i, j) of op(A) op(B) in float64, for the transposes and strides of `layout`.
double referenceProduct(const ops::GemmLayout& layout, const float* a, const float* b, std::int64_t i, std::int64_t j) {
  double sum = 0;
  for (std::int64_t k = 0; k < layout.K; ++k) {
    double ak = layout.transA ? a[k * layout.lda + i] : a[i * layout.lda + k];
    double bk = layout.transB ? b[j * layout.ldb + k] : b[k * layout.ldb + j];
    sum += ak * bk;
  }
  return sum;
}

TEST(gemm_matches_float64_reference) {
  const std::int64_t sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {197, 1153, 64}, {33, 7, 1153}, {64, 384, 200}};
  for (auto& s : sizes) {
    for (int trans = 0; trans < 4; ++trans) {
      std::int64_t M = s[0], N = s[1], K = s[2];
      bool ta = trans & 1, tb = trans & 2;
      auto a = randomVector(std::size_t(M * K)), b = randomVector(std::size_t(K * N));
      auto bias = randomVector(std::size_t(N)), res = randomVector(std::size_t(M * N));
      std::vector<float> c(std::size_t(M * N), 7.0f);
      cpu::GemmArgs g;
      g.transA = ta;
      g.transB = tb;
      g.M = M; g.N = N; g.K = K;
      g.alpha = 0.5f;
      g.A = a.data(); g.lda = ta ? M : K;
      g.B = b.data(); g.ldb = tb ? K : N;
      g.C = c.data(); g.ldc = N;
      g.epilogue.bias = bias.data();
      g.epilogue.residual = res.data();
      g.epilogue.ldr = N;
      cpu::sgemm(g);
      std::vector<double> want(std::size_t(M * N));
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j)
          want[i * N + j] = 0.5 * referenceProduct(g, a.data(), b.data(), i, j) + bias[j] + res[i * N + j];
      double err = errorRatio(c.data(), want.data(), want.size(), 1e-5 * std::sqrt(double(K)), 1e-5);
      if (err > 1) std::fprintf(stderr, "  M=%ld N=%ld K=%ld ta=%d tb=%d error ratio %g\n", long(M), long(N), long(K), ta, tb, err);
      CHECK(err <= 1);
    }
  }
}

// The blocked paths the test above does not reach: several K-slices (K > 384), several row blocks
// of one thread (1601 rows: three uneven blocks on one thread, two on each of two), strided
// operands, accumulate = true, the GELU epilogue, and 1 vs 2 threads (row and column splits,
// uneven edges).
TEST(gemm_blocking_threads_and_epilogues) {
  const std::int64_t sizes[][3] = {{3, 1000, 5}, {197, 130, 800}, {50, 700, 13}, {1, 33, 385}, {29, 67, 1200},
                                   {1601, 45, 400}};
  for (auto& s : sizes) {
    for (int variant = 0; variant < 8; ++variant) {
      std::int64_t M = s[0], N = s[1], K = s[2];
      bool ta = variant & 1, tb = variant & 2, gelu = variant & 4, acc = !gelu;
      std::int64_t pad = 3;  // row strides larger than the rows
      std::int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      auto a = randomVector(std::size_t((ta ? K : M) * lda)), b = randomVector(std::size_t((tb ? N : K) * ldb));
      auto bias = randomVector(std::size_t(N));
      auto c0 = randomVector(std::size_t(M * ldc));
      ops::GemmLayout layout;
      layout.transA = ta, layout.transB = tb, layout.K = K, layout.lda = lda, layout.ldb = ldb;
      std::vector<double> want(std::size_t(M * N));
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
          double v = 1.5 * referenceProduct(layout, a.data(), b.data(), i, j) + bias[j];
          if (gelu) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
          want[i * N + j] = acc ? c0[i * ldc + j] + v : v;
        }
      for (int threads = 1; threads <= 2; ++threads) {
        std::vector<float> c = c0;
        cpu::GemmArgs g;
        g.transA = ta; g.transB = tb;
        g.M = M; g.N = N; g.K = K;
        g.alpha = 1.5f;
        g.A = a.data(); g.lda = lda;
        g.B = b.data(); g.ldb = ldb;
        g.C = c.data(); g.ldc = ldc;
        g.accumulate = acc;
        g.epilogue.bias = bias.data();
        g.epilogue.gelu = gelu;
        cpu::sgemm(cpu::denseKernels(), g, threads);
        std::vector<float> got(std::size_t(M * N));
        bool padding_kept = true;
        for (std::int64_t i = 0; i < M; ++i) {
          for (std::int64_t j = 0; j < N; ++j) got[i * N + j] = c[i * ldc + j];
          for (std::int64_t j = N; j < ldc; ++j) padding_kept = padding_kept && c[i * ldc + j] == c0[i * ldc + j];
        }
        double err = errorRatio(got.data(), want.data(), want.size(), 1e-5 * std::sqrt(double(K)), 1e-5);
        if (err > 1 || !padding_kept)
          std::fprintf(stderr, "  M=%ld N=%ld K=%ld ta=%d tb=%d gelu=%d threads=%d error ratio %g%s\n", long(M), long(N),
                       long(K), ta, tb, gelu, threads, err, padding_kept ? "" : ", wrote past N");
        CHECK(err <= 1);
        CHECK(padding_kept);
      }
    }
  }
}

// The thread partition at the shapes of a ViT's linear layers (B transposed as the linear op
// passes it, M = 197 tokens) and awkward neighbours of them: a single column, one column short of
// two micro-tiles, N = 384 (two column blocks of 192 across 2 threads), one past it, K of one
// step, one K-slice and four, and K = 1024, whose rows 4 KB apart are packed rather than read in
// place (gemm.cpp, rowsCrowdL1Sets). Every thread count must match the float64 reference, and repeated
// calls with the same thread count must give the same bits.
TEST(gemm_linear_shapes_partition) {
  const std::int64_t Ns[] = {1, 63, 384, 385};
  const std::int64_t Ks[] = {1, 384, 1024, 1536};
  for (std::int64_t M : {std::int64_t(197), std::int64_t(13)}) {
    for (std::int64_t N : Ns) {
      for (std::int64_t K : Ks) {
        auto a = randomVector(std::size_t(M * K)), b = randomVector(std::size_t(N * K));
        auto bias = randomVector(std::size_t(N));
        ops::GemmLayout layout;
        layout.setDense(M, N, K, false, true);
        std::vector<double> want(std::size_t(M * N));
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j) want[i * N + j] = referenceProduct(layout, a.data(), b.data(), i, j) + bias[j];
        for (int threads = 1; threads <= 4; ++threads) {
          std::vector<float> first;
          for (int repeat = 0; repeat < 2; ++repeat) {
            std::vector<float> c(std::size_t(M * N), -3.0f);
            cpu::GemmArgs g = cpu::denseGemm(M, N, K, a.data(), false, b.data(), true, c.data());
            g.epilogue.bias = bias.data();
            cpu::sgemm(cpu::denseKernels(), g, threads);
            double err = errorRatio(c.data(), want.data(), want.size(), 1e-5 * std::sqrt(double(K)), 1e-5);
            if (err > 1)
              std::fprintf(stderr, "  M=%ld N=%ld K=%ld threads=%d error ratio %g\n", long(M), long(N), long(K),
                           threads, err);
            CHECK(err <= 1);
            if (repeat == 0)
              first = c;
            else
              CHECK(std::memcmp(first.data(), c.data(), c.size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}

// The active ISA's tile edges (runAll repeats every case per ISA): M from 1 to 2 MR + 1 (every partial row tile, read in place by
// gemmMicroDirectRows or packed when A is transposed), N past whole NR tiles, one K-slice and two,
// accumulating or not, and B packed per call or beforehand (packWholeB, as the linear op keeps a
// weight). A B packed for another NR is refused.
TEST(gemm_every_row_tail_and_packed_b) {
  const cpu::DenseKernels& kt = cpu::denseKernels();
  const std::int64_t N = 2 * kt.nr + 3;
  for (std::int64_t M = 1; M <= 2 * kt.mr + 1; ++M) {
    for (std::int64_t K : {std::int64_t(37), std::int64_t(400)}) {
      for (int variant = 0; variant < 8; ++variant) {
        bool ta = variant & 1, tb = variant & 2, packed = variant & 4, acc = M % 2 == 0;
        auto a = randomVector(std::size_t(M * K)), b = randomVector(std::size_t(K * N));
        auto c0 = randomVector(std::size_t(M * N));
        std::vector<float> c = c0;
        cpu::GemmArgs g = cpu::denseGemm(M, N, K, a.data(), ta, b.data(), tb, c.data());
        std::vector<double> want(std::size_t(M * N));
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j)
            want[i * N + j] = (acc ? c0[i * N + j] : 0.0) + referenceProduct(g, a.data(), b.data(), i, j);
        g.accumulate = acc;
        Storage packed_b(packed ? cpu::packedBFloats(kt, g) : 0);  // 64-byte aligned, as required
        if (packed) {
          cpu::packWholeB(kt, g, packed_b.data());
          g.packedB = packed_b.data();
          g.packedNr = kt.nr;
        }
        cpu::sgemm(kt, g, 2);
        double err = errorRatio(c.data(), want.data(), want.size(), 1e-5 * std::sqrt(double(K)), 1e-5);
        if (err > 1)
          std::fprintf(stderr, "  M=%ld N=%ld K=%ld ta=%d tb=%d packedB=%d accumulate=%d error ratio %g\n",
                       long(M), long(N), long(K), ta, tb, packed, acc, err);
        CHECK(err <= 1);
      }
    }
  }
  std::vector<float> a(4, 1.0f), b(4, 1.0f), c(4);
  Storage packed(64 * 4);
  cpu::GemmArgs g = cpu::denseGemm(2, 2, 2, a.data(), false, b.data(), true, c.data());
  g.packedB = packed.data();
  g.packedNr = kt.nr + 1;
  CHECK(failsWith([&] { cpu::sgemm(kt, g, 1); }, "B was packed for NR"));
  g.packedNr = kt.nr;
  g.packedB = packed.data() + 1;
  CHECK(failsWith([&] { cpu::sgemm(kt, g, 1); }, "64-byte aligned"));
}

// A B packed beforehand, multiplied block by block with the next block asked for ahead (a narrow
// first block, then the walk on to the next columns, the next K-slice and the next row block) and
// without: both match the float64 reference and give the same bits (only the blocks' widths
// differ, never the order of any sum). 800 rows are two row blocks on one thread; N has whole
// blocks and a partial panel; K three slices.
TEST(gemm_packed_b_blocks_asked_for_ahead) {
  const cpu::DenseKernels& active = cpu::denseKernels();
  const std::int64_t M = 800, N = 13 * active.nr + 5, K = 900;
  auto a = randomVector(std::size_t(M * K)), b = randomVector(std::size_t(N * K));
  auto bias = randomVector(std::size_t(N)), residual = randomVector(std::size_t(M * N));
  ops::GemmLayout layout;
  layout.setDense(M, N, K, false, true);
  std::vector<double> want(std::size_t(M * N));
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j)
      want[i * N + j] = referenceProduct(layout, a.data(), b.data(), i, j) + bias[j] + residual[i * N + j];
  for (int threads = 1; threads <= 2; ++threads) {
    std::vector<float> first;
    for (bool ahead : {false, true}) {
      cpu::DenseKernels kt = active;
      kt.gemmPrefetchesNextBlock = ahead;
      std::vector<float> c(std::size_t(M * N), -3.0f);
      cpu::GemmArgs g = cpu::denseGemm(M, N, K, a.data(), false, b.data(), true, c.data());
      g.epilogue.bias = bias.data();
      g.epilogue.residual = residual.data();
      g.epilogue.ldr = N;
      Storage packed(cpu::packedBFloats(kt, g));
      cpu::packWholeB(kt, g, packed.data());
      g.packedB = packed.data();
      g.packedNr = kt.nr;
      cpu::sgemm(kt, g, threads);
      double err = errorRatio(c.data(), want.data(), want.size(), 1e-5 * std::sqrt(double(K)), 1e-5);
      if (err > 1) std::fprintf(stderr, "  threads=%d ahead=%d error ratio %g\n", threads, int(ahead), err);
      CHECK(err <= 1);
      if (!ahead)
        first = c;
      else
        CHECK(std::memcmp(first.data(), c.data(), c.size() * sizeof(float)) == 0);
    }
  }
}

// A derived form (a linear layer's packed weight) is kept while the storage is only read, and
// rebuilt after any write: a mutable accessor, noteWrite() (in-place updates through a pointer
// taken earlier), or while a JavaScript view of the memory is alive.
// Both packers against their definitions, on every width the kernels use (AVX2 MR 6, AVX-512
// MR 12, key panels 8, NR 16 and 32, query blocks 96) and widths that are not, whole and partial
// panels, step counts around the transposer's 4- and 16-step groups; the float after the panel
// must stay untouched.
TEST(panel_packing_matches_its_definition) {
  const int widths[] = {1, 4, 6, 8, 12, 16, 32, 96};
  const std::int64_t steps[] = {1, 3, 4, 15, 16, 17, 37, 64};
  for (int width : widths) {
    for (std::int64_t kc : steps) {
      for (std::int64_t valid : {std::int64_t(0), std::int64_t(1), std::int64_t(width) / 2, std::int64_t(width)}) {
        const std::int64_t ld = std::max<std::int64_t>(kc, width) + 5;  // rows longer than they are read
        std::vector<float> src = randomVector(std::size_t(ld * std::max<std::int64_t>(kc, width)));
        const float canary = -12345.0f;
        std::vector<float> copied(std::size_t(kc * width + 1), canary), transposed(copied);
        cpu::copyPanel(src.data(), ld, valid, kc, width, copied.data());
        cpu::transposePanel(src.data(), ld, valid, kc, width, transposed.data());
        bool copy_ok = copied.back() == canary, transpose_ok = transposed.back() == canary;
        for (std::int64_t k = 0; k < kc; ++k) {
          for (std::int64_t c = 0; c < width; ++c) {
            float want_copy = c < valid ? src[std::size_t(k * ld + c)] : 0.0f;
            float want_transpose = c < valid ? src[std::size_t(c * ld + k)] : 0.0f;
            copy_ok = copy_ok && copied[std::size_t(k * width + c)] == want_copy;
            transpose_ok = transpose_ok && transposed[std::size_t(k * width + c)] == want_transpose;
          }
        }
        CHECK(copy_ok);
        CHECK(transpose_ok);
      }
    }
  }
}

// Tensor::strided views: a view past its storage is refused with an error that says so; copies of
// views with dense rows (a row at a time over the pool) and without (a transpose, element by
// element) hold the elements the strides name.
TEST(strided_views_and_their_copies) {
  Tensor base = Tensor::empty({4, 5, 6});
  for (std::int64_t i = 0; i < base.numel(); ++i) base.data()[i] = float(i);
  CHECK(failsWith([&] { base.strided({4, 5, 6}, {30, 6, 1}, 1); }, "reaches past the 120 elements"));
  CHECK(failsWith([&] { base.strided({2, 2}, {-1, 1}, 4); }, "negative stride"));
  CHECK(failsWith([&] { base.strided({2, 2}, {1}, 0); }, "one stride per dimension"));
  // Columns 2-4 of every row of 6: dense rows, 6 apart, starting at element 2.
  Tensor columns = base.strided({4, 5, 3}, {30, 6, 1}, 2);
  Tensor copy = columns.contiguous();
  bool dense_ok = columns.hasDenseRows() && !columns.isContiguous() && copy.isContiguous();
  for (std::int64_t a = 0; a < 4; ++a)
    for (std::int64_t b = 0; b < 5; ++b)
      for (std::int64_t c = 0; c < 3; ++c) dense_ok = dense_ok && copy.data()[(a * 5 + b) * 3 + c] == float(a * 30 + b * 6 + 2 + c);
  CHECK(dense_ok);
  Tensor swapped = base.transpose(1, 2);
  Tensor swapped_copy = swapped.contiguous();
  bool swapped_ok = !swapped.hasDenseRows();
  for (std::int64_t a = 0; a < 4; ++a)
    for (std::int64_t c = 0; c < 6; ++c)
      for (std::int64_t b = 0; b < 5; ++b) swapped_ok = swapped_ok && swapped_copy.data()[(a * 6 + c) * 5 + b] == float(a * 30 + b * 6 + c);
  CHECK(swapped_ok);
}

// Tensor::zerosOnPool gives zeros on memory the block cache hands back dirty, also when the fill is
// split over the pool (sizes from 1 MB) and the size is no multiple of its pieces.
TEST(zeros_are_zero_on_reused_memory) {
  for (std::int64_t n : {std::int64_t(1000), (std::int64_t(1) << 18) + 7, (std::int64_t(3) << 18) - 5}) {
    {
      Tensor dirty = Tensor::empty({n});
      std::fill(dirty.data(), dirty.data() + n, -1.5f);
    }
    Tensor z = Tensor::zerosOnPool({n});
    std::int64_t nonzero = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, z.data() + i, sizeof bits);
      nonzero += bits != 0;
    }
    CHECK(nonzero == 0);
  }
}

TEST(storage_derived_forms_follow_writes) {
  auto storage = std::make_shared<Storage>(16);
  int builds = 0;
  auto build = [&] {
    ++builds;
    auto form = std::make_shared<Storage>(1);
    form->data()[0] = std::as_const(*storage).data()[3] * 2;
    return form;
  };
  auto get = [&] { return std::as_const(*storage).derived("twice [3]", build)->data()[0]; };
  storage->data()[3] = 1;
  CHECK(get() == 2 && builds == 1);
  CHECK(get() == 2 && builds == 1);  // reads keep the form
  CHECK(std::as_const(*storage).derived("another key", build) != nullptr && builds == 2);
  CHECK(get() == 2 && builds == 2);  // each key has its own form
  storage->data()[3] = 5;            // a write through the mutable accessor
  CHECK(get() == 10 && builds == 3);
  float* kept = storage->data();
  CHECK(get() == 10 && builds == 4);  // taking the mutable pointer counted as a write already
  kept[3] = 7;
  storage->noteWrite();  // a write through a pointer taken earlier, declared
  CHECK(get() == 14 && builds == 5);
  storage->addExternalView();
  CHECK(get() == 14 && builds == 6);
  CHECK(get() == 14 && builds == 7);  // not kept while a view is alive
  storage->removeExternalView();
  CHECK(get() == 14 && builds == 8);
  CHECK(get() == 14 && builds == 8);
  Tensor reader = Tensor::empty({4});
  const Tensor& read_only = reader;
  (void)read_only.data();  // the const accessor is no write
  CHECK(std::as_const(*reader.storage()).derived("k", build) == std::as_const(*reader.storage()).derived("k", build));
}

// The pool calls every worker index once, however many threads it has: kernels split their
// work by index, with a worker count read before the call (setThreads from another thread can
// shrink the pool in between); a skipped index would leave its part of the output unwritten.
TEST(thread_pool_runs_every_index_once) {
  ThreadPool& pool = ThreadPool::global();
  const int before = pool.threads();
  for (int threads : {1, 2, 3}) {
    pool.setThreads(threads);
    for (int workers : {1, 2, 3, 5, 8}) {
      std::vector<std::atomic<int>> calls(static_cast<std::size_t>(workers));
      pool.run(workers, [&](int w) { calls[std::size_t(w)].fetch_add(1); });
      bool once = true;
      for (auto& c : calls) once = once && c.load() == 1;
      CHECK(once);
    }
  }
  pool.setThreads(before);
}

// Jobs that find the workers spinning (back to back) and jobs that must wake them from sleep
// (after a pause longer than CASTLING_SPIN_US, 1000 us by default) both run every index once: a
// lost wake-up would hang the caller here.
TEST(thread_pool_runs_jobs_after_spinning_and_after_sleeping) {
  ThreadPool& pool = ThreadPool::global();
  const int before = pool.threads();
  pool.setThreads(3);
  const int pause_us[] = {0, 50, ThreadPool::spinMicroseconds() + 3000};
  for (int pause : pause_us) {
    for (int round = 0; round < 12; ++round) {
      std::this_thread::sleep_for(std::chrono::microseconds(pause));
      std::vector<std::atomic<int>> calls(3);
      pool.run(3, [&](int w) { calls[std::size_t(w)].fetch_add(1); });
      bool once = true;
      for (auto& c : calls) once = once && c.load() == 1;
      CHECK(once);
    }
  }
  pool.setThreads(before);
}

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  return runAll();
}
