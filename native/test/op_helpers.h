// Helpers shared by the C++ op tests: tensors from and to vectors, running an op by name, and a
// closeness check scaled to the magnitude of the expected values.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.h"
#include "../core/op_registry.h"
#include "test_util.h"

namespace castling::test {

using Vec = std::vector<double>;

inline Tensor tensorOf(const Shape& shape, const std::vector<float>& values) {
  Tensor t = Tensor::empty(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

inline std::vector<float> valuesOf(const Tensor& t) { return std::vector<float>(t.data(), t.data() + t.numel()); }

inline std::vector<Tensor> runOp(const std::string& name, std::vector<std::optional<Tensor>> inputs, const Attrs& attrs) {
  return OpRegistry::global().find(name).run(OpInputs(name, std::move(inputs)), attrs);
}

// Passes when |got - want| <= tol * (max(max|want|, 0.01) + |want|) everywhere; prints the case
// otherwise. The floor covers gradients that vanish exactly (N = 1), where float rounding remains.
// Relative to the largest |want|, but never to less than `floor`: a value that comes out small by
// cancellation (a log-sum-exp of one score near 0) carries the absolute rounding of its terms.
inline bool close(const std::vector<float>& got, const Vec& want, double tol, const char* what, const std::string& where,
                  double floor = 0.01) {
  double scale = floor;
  for (double w : want) scale = std::max(scale, std::abs(w));
  double err = errorRatio(got.data(), want.data(), want.size(), tol * scale, tol);
  if (err > 1) std::fprintf(stderr, "  %s %s: error ratio %g (max |want| %g)\n", where.c_str(), what, err, scale);
  return err <= 1 && got.size() == want.size();
}

// The log-sum-exps are compared with an absolute floor of 1: their terms (scores of |q||k| up to
// ~10) round at ~1e-7 each, whatever the sum comes to.
constexpr double kLseFloor = 1.0;

inline Vec toDouble(const std::vector<float>& x) { return Vec(x.begin(), x.end()); }

inline bool sameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), std::size_t(a.numel()) * sizeof(float)) == 0;
}

// What a ViT's attention ops receive: splitHeads' views q, k, v of a random (B, N, 3 H d) qkv
// projection (rows 3 H d apart), and the view dy of a random (B, N, H d) gradient.
struct SplitHeadsViews {
  Tensor qkv;
  std::vector<Tensor> qkvViews;
  Tensor dy;
};

inline SplitHeadsViews splitHeadsViews(std::int64_t B, std::int64_t H, std::int64_t N, std::int64_t d) {
  const std::int64_t row = 3 * H * d;
  SplitHeadsViews v;
  v.qkv = tensorOf({B, N, row}, randomVector(std::size_t(B * N * row), 2.0f));
  Attrs split;
  split.set("heads", double(H));
  split.set("parts", 3.0);
  v.qkvViews = runOp("splitHeads", {v.qkv}, split);
  Attrs one;
  one.set("heads", double(H));
  one.set("parts", 1.0);
  v.dy = runOp("splitHeads", {tensorOf({B, N, H * d}, randomVector(std::size_t(B * N * H * d)))}, one)[0];
  return v;
}

// mergeHeads hands on the storage of token-order heads as they lie: the same bits as the merge of
// their contiguous copies, without a copy.
inline bool mergedInPlace(const std::vector<Tensor>& ordered, const std::vector<Tensor>& copies) {
  std::vector<std::optional<Tensor>> in(ordered.begin(), ordered.end()), inCopies(copies.begin(), copies.end());
  Tensor merged = runOp("mergeHeads", in, Attrs())[0];
  return merged.data() == ordered[0].data() && sameBits(merged, runOp("mergeHeads", inCopies, Attrs())[0]);
}

// True when fn throws a castling::Error whose message contains `part`; says what happened otherwise.
inline bool failsWith(const std::function<void()>& fn, const std::string& part) {
  try {
    fn();
  } catch (const Error& e) {
    if (std::string(e.what()).find(part) != std::string::npos) return true;
    std::fprintf(stderr, "  error '%s' does not mention '%s'\n", e.what(), part.c_str());
    return false;
  }
  std::fprintf(stderr, "  no error (expected one mentioning '%s')\n", part.c_str());
  return false;
}

// sum(a * b): the loss sum(y * dy) whose gradient with respect to y is dy.
inline double dot(const Vec& a, const Vec& b) {
  double total = 0;
  for (std::size_t i = 0; i < a.size(); ++i) total += a[i] * b[i];
  return total;
}

// The largest difference between central finite differences of `loss` and the analytic gradient,
// over every element of every (value, gradient) pair. `relative` divides each difference by
// max(1, |gradient|).
template <typename Loss>
double worstFiniteDifference(const std::vector<std::pair<Vec*, const Vec*>>& pairs, Loss&& loss, bool relative = false,
                             double h = 1e-6) {
  double worst = 0;
  for (auto [x, gx] : pairs) {
    for (std::size_t i = 0; i < x->size(); ++i) {
      double keep = (*x)[i];
      (*x)[i] = keep + h;
      double up = loss();
      (*x)[i] = keep - h;
      double down = loss();
      (*x)[i] = keep;
      double diff = std::abs((up - down) / (2 * h) - (*gx)[i]);
      worst = std::max(worst, relative ? diff / std::max(1.0, std::abs((*gx)[i])) : diff);
    }
  }
  return worst;
}

}  // namespace castling::test
