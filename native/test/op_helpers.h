// Helpers shared by the C++ op tests: tensors from and to vectors, running an op by name, and a
// closeness check scaled to the magnitude of the expected values.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

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
inline bool close(const std::vector<float>& got, const Vec& want, double tol, const char* what, const std::string& where) {
  double scale = 0.01;
  for (double w : want) scale = std::max(scale, std::abs(w));
  double err = errorRatio(got.data(), want.data(), want.size(), tol * scale, tol);
  if (err > 1) std::fprintf(stderr, "  %s %s: error ratio %g (max |want| %g)\n", where.c_str(), what, err, scale);
  return err <= 1 && got.size() == want.size();
}

}  // namespace castling::test
