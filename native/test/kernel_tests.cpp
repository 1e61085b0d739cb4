// C++ kernel tests of the core CPU ops against float64 references: runnable without Node.js
// (`npm run test:cpp`, or ctest on a machine that only has a compiler).
#include <cstring>

#include "../core/op_registry.h"
#include "../cpu/cpu_ops.h"
#include "../cpu/gemm.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;

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
        for (std::int64_t j = 0; j < N; ++j) {
          double acc = 0;
          for (std::int64_t k = 0; k < K; ++k)
            acc += double(ta ? a[k * M + i] : a[i * K + k]) * double(tb ? b[j * K + k] : b[k * N + j]);
          want[i * N + j] = 0.5 * acc + bias[j] + res[i * N + j];
        }
      double err = errorRatio(c.data(), want.data(), want.size(), 1e-5 * std::sqrt(double(K)), 1e-5);
      if (err > 1) std::fprintf(stderr, "  M=%ld N=%ld K=%ld ta=%d tb=%d error ratio %g\n", long(M), long(N), long(K), ta, tb, err);
      CHECK(err <= 1);
    }
  }
}

// The blocked paths the test above does not reach: several K-slices (K > 384), strided operands,
// accumulate = true, the GELU epilogue, and 1 vs 2 threads (row and column splits, uneven edges).
TEST(gemm_blocking_threads_and_epilogues) {
  const std::int64_t sizes[][3] = {{3, 1000, 5}, {197, 130, 800}, {50, 700, 13}, {1, 33, 385}, {29, 67, 1200}};
  for (auto& s : sizes) {
    for (int variant = 0; variant < 8; ++variant) {
      std::int64_t M = s[0], N = s[1], K = s[2];
      bool ta = variant & 1, tb = variant & 2, gelu = variant & 4, acc = !gelu;
      std::int64_t pad = 3;  // row strides larger than the rows
      std::int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      auto a = randomVector(std::size_t((ta ? K : M) * lda)), b = randomVector(std::size_t((tb ? N : K) * ldb));
      auto bias = randomVector(std::size_t(N));
      auto c0 = randomVector(std::size_t(M * ldc));
      std::vector<double> want(std::size_t(M * N));
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
          double sum = 0;
          for (std::int64_t k = 0; k < K; ++k)
            sum += double(ta ? a[k * lda + i] : a[i * lda + k]) * double(tb ? b[j * ldb + k] : b[k * ldb + j]);
          double v = 1.5 * sum + bias[j];
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
        cpu::sgemm(cpu::kernels(), g, threads);
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
// step, one K-slice and four. Every thread count must match the float64 reference, and repeated
// calls with the same thread count must give the same bits.
TEST(gemm_linear_shapes_partition) {
  const std::int64_t Ns[] = {1, 63, 384, 385};
  const std::int64_t Ks[] = {1, 384, 1536};
  for (std::int64_t M : {std::int64_t(197), std::int64_t(13)}) {
    for (std::int64_t N : Ns) {
      for (std::int64_t K : Ks) {
        auto a = randomVector(std::size_t(M * K)), b = randomVector(std::size_t(N * K));
        auto bias = randomVector(std::size_t(N));
        std::vector<double> want(std::size_t(M * N));
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j) {
            double sum = 0;
            for (std::int64_t k = 0; k < K; ++k) sum += double(a[i * K + k]) * double(b[j * K + k]);
            want[i * N + j] = sum + bias[j];
          }
        for (int threads = 1; threads <= 4; ++threads) {
          std::vector<float> first;
          for (int repeat = 0; repeat < 2; ++repeat) {
            std::vector<float> c(std::size_t(M * N), -3.0f);
            cpu::GemmArgs g = cpu::denseGemm(M, N, K, a.data(), false, b.data(), true, c.data());
            g.epilogue.bias = bias.data();
            cpu::sgemm(cpu::kernels(), g, threads);
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

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  return runAll();
}
