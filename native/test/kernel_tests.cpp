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

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  return runAll();
}
