// The kernels whose inputs can drive their arithmetic below the normal float range (GELU's tail,
// a softmax row spread wider than exp's range, AdamW's moments decaying towards zero) make no
// subnormal floats: on x86 each instruction that makes one (or reads one) takes a microcode
// assist of a hundred cycles or more, so such inputs made these kernels 2 to 30 times slower.
// Checked through the thread's floating-point status flags (underflow: a result below the normal
// range; denormal: a subnormal operand), and the values against float64 references.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <vector>

#include "../core/op_registry.h"
#include "../cpu/cpu_kernels.h"
#include "../cpu/cpu_ops.h"
#include "../cpu/sparsifiner_kernels.h"
#include "op_helpers.h"
#include "test_util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CASTLING_HAS_MXCSR 1
#endif

using namespace castling;
using namespace castling::test;

namespace {

// Whether `work`, run on this thread, made or read a subnormal float (always false where the
// status flags are not read: the value checks still run).
bool touchesSubnormals(const std::function<void()>& work) {
#ifdef CASTLING_HAS_MXCSR
  constexpr unsigned kFlags = _MM_EXCEPT_UNDERFLOW | _MM_EXCEPT_DENORM;
  _mm_setcsr(_mm_getcsr() & ~kFlags);
  work();
  return (_mm_getcsr() & kFlags) != 0;
#else
  work();
  return false;
#endif
}

double referenceGelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double referenceGeluDerivative(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}

bool isZeroOrNormal(float x) { return x == 0.0f || std::fabs(x) >= FLT_MIN; }

// The softmax of each row of x times `scale`, in float64.
Vec referenceSoftmax(const std::vector<float>& x, std::int64_t rows, std::int64_t cols, double scale) {
  Vec want(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    double max = scale * *std::max_element(xr, xr + cols), sum = 0;
    for (std::int64_t c = 0; c < cols; ++c) sum += std::exp(scale * xr[c] - max);
    for (std::int64_t c = 0; c < cols; ++c) want[std::size_t(r * cols + c)] = std::exp(scale * xr[c] - max) / sum;
  }
  return want;
}

}  // namespace

// GELU, its derivative and the GEMM's GELU epilogue from -40 to 40 and out to +-1e30: no subnormal
// made; the float64 values, and the limits far out (where the float formula used to multiply x by
// a capped tail: GELU(-3e38) came out -0.26, its derivative at 3e38 4.3). (At +-3e38 the AVX2 and
// portable loops' discarded arithmetic, which the compiler may run for both sides of a select,
// underflows: those two are checked for their values only.)
TEST(gelu_makes_no_subnormals) {
  const cpu::DenseKernels& kt = cpu::denseKernels();
  std::vector<float> x;
  for (int i = 0; i <= 16000; ++i) x.push_back(float(-40.0 + 0.005 * i));
  const std::size_t sweep = x.size();
  const std::vector<float> far = {-1e30f, -1e6f, 1e6f, 1e30f, -3e38f, 3e38f};
  const std::vector<float> farGelu = {0.0f, 0.0f, 1e6f, 1e30f, 0.0f, 3e38f};
  const std::vector<float> farDerivative = {0.0f, 0.0f, 1.0f, 1.0f, 0.0f, 1.0f};
  x.insert(x.end(), far.begin(), far.end());
  std::vector<float> y(x.size()), dx(x.size()), ones(x.size(), 1.0f), tile = x;
  const std::int64_t flagged = std::int64_t(x.size()) - 2;  // all but +-3e38, the last two
  CHECK(!touchesSubnormals([&] { kt.gelu(x.data(), y.data(), flagged); }));
  CHECK(!touchesSubnormals([&] { kt.geluBackward(x.data(), ones.data(), dx.data(), flagged); }));
  CHECK(!touchesSubnormals([&] { kt.epilogueTile(tile.data(), flagged, 1, flagged, nullptr, true, nullptr, 0); }));
  kt.gelu(x.data() + flagged, y.data() + flagged, 2);
  kt.geluBackward(x.data() + flagged, ones.data() + flagged, dx.data() + flagged, 2);
  kt.epilogueTile(tile.data() + flagged, 2, 1, 2, nullptr, true, nullptr, 0);
  for (std::size_t i = 0; i < far.size(); ++i) {
    CHECK(y[sweep + i] == farGelu[i] && tile[sweep + i] == farGelu[i]);
    CHECK(dx[sweep + i] == farDerivative[i]);
  }
  for (auto* values : {&x, &y, &dx, &tile}) values->resize(sweep);
  Vec want(sweep), wantDerivative(sweep);
  for (std::size_t i = 0; i < sweep; ++i) want[i] = referenceGelu(x[i]), wantDerivative[i] = referenceGeluDerivative(x[i]);
  CHECK(close(y, want, 2e-7, "gelu", "sweep", 1.0));
  CHECK(close(tile, want, 2e-7, "gelu epilogue", "sweep", 1.0));
  CHECK(close(dx, wantDerivative, 2e-7, "gelu derivative", "sweep", 1.0));
  for (std::size_t i = 0; i < sweep; ++i) CHECK(isZeroOrNormal(y[i]) && isZeroOrNormal(dx[i]));
}

// Rows spread over 200 (exp underflows for most entries), in the softmax op and in the Sparsifiner
// predictor's coefficients: no subnormal made; the probabilities below the normal range are 0 and
// the rest match float64.
TEST(softmax_rows_spread_past_exp_range_make_no_subnormals) {
  const cpu::DenseKernels& kt = cpu::denseKernels();
  const std::int64_t rows = 7, cols = 1001;
  std::vector<float> x = randomVector(std::size_t(rows * cols), 100.0f), y(x.size());
  CHECK(!touchesSubnormals([&] { kt.softmaxRows(x.data(), y.data(), rows, cols); }));
  CHECK(close(y, referenceSoftmax(x, rows, cols, 1.0), 1e-6, "softmax", "spread 200", 1.0));
  for (float v : y) CHECK(isZeroOrNormal(v));
  // The Sparsifiner's coefficients: the same rows scaled by 2 in place.
  std::vector<float> coefficients = x;
  const cpu::SparsifinerKernels& st = cpu::sparsifinerKernels();
  CHECK(!touchesSubnormals([&] { st.softmaxRows(coefficients.data(), rows, cols, 2.0f); }));
  CHECK(close(coefficients, referenceSoftmax(x, rows, cols, 2.0), 1e-6, "coefficient softmax", "spread 400", 1.0));
  for (float v : coefficients) CHECK(isZeroOrNormal(v));
}

// AdamW's moments decaying from just above the normal range with zero gradients, gradients whose
// square is subnormal, and ordinary values: every moment stored is 0 or normal, and all of them
// and the parameters match a float64 update to within what is flushed (about 3e-38 in m and v).
TEST(adamw_moments_stay_normal) {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
  const int step = 7;
  std::vector<float> p, g, m, v;
  auto add = [&](float pi, float gi, float mi, float vi) {
    p.push_back(pi), g.push_back(gi), m.push_back(mi), v.push_back(vi);
  };
  for (int i = 0; i < 40; ++i) {
    const float above = FLT_MIN * float(1 + 0.05 * i);  // 1 to 3 times the smallest normal
    add(0.5f, 0.0f, above, above);    // both moments decay into the subnormal range
    add(-0.25f, 0.0f, -above, 1e-3f);  // m does, v stays large: the step would be subnormal
    add(0.75f, 1e-20f * float(i + 1), 0.0f, 0.0f);  // g^2 subnormal, g's share of m normal
  }
  std::vector<float> ordinary = randomVector(300);
  for (std::size_t i = 0; i + 3 <= ordinary.size(); i += 3)
    add(ordinary[i], ordinary[i + 1], 0.1f * ordinary[i + 2], 0.01f * std::fabs(ordinary[i + 1]));
  const Shape shape{std::int64_t(p.size())};
  Tensor param = tensorOf(shape, p), grad = tensorOf(shape, g), mt = tensorOf(shape, m), vt = tensorOf(shape, v);
  Attrs attrs;
  attrs.set("lr", lr), attrs.set("step", double(step)), attrs.set("weightDecay", wd);
  runOp("adamw", {param, grad, mt, vt}, attrs);
  const double c1 = 1 / (1 - std::pow(b1, step)), c2 = 1 / (1 - std::pow(b2, step));
  Vec wantP(p.size()), wantM(p.size()), wantV(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    wantM[i] = b1 * m[i] + (1 - b1) * g[i];
    wantV[i] = b2 * v[i] + (1 - b2) * double(g[i]) * g[i];
    wantP[i] = p[i] * (1 - lr * wd) - lr * (wantM[i] * c1) / (std::sqrt(wantV[i] * c2) + eps);
  }
  const std::vector<float> gotM = valuesOf(mt), gotV = valuesOf(vt);
  CHECK(close(valuesOf(param), wantP, 1e-6, "param", "adamw", 1.0));
  CHECK(close(gotM, wantM, 1e-6, "m", "adamw"));
  CHECK(close(gotV, wantV, 1e-6, "v", "adamw"));
  // The small cases (the first 120) within what is flushed, and relatively close otherwise.
  CHECK(errorRatio(gotM.data(), wantM.data(), 120, 3e-38, 1e-6) <= 1);
  CHECK(errorRatio(gotV.data(), wantV.data(), 120, 3e-38, 1e-6) <= 1);
  for (std::size_t i = 0; i < p.size(); ++i) CHECK(isZeroOrNormal(gotM[i]) && isZeroOrNormal(gotV[i]));
}

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  return runAll();
}
