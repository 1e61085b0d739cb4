// Decoding fuzzer bytes into what the op boundary takes: tensors of random rank and shape (zero
// sizes, huge dimensions that must be refused, views that are not contiguous), numeric attributes
// (NaN, infinities, huge values, flags) and the CPU path. Shared by the op and plan fuzz targets.
#pragma once
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "../core/cpu_features.h"
#include "../core/error.h"
#include "../core/op_registry.h"
#include "../core/tensor.h"
#include "fuzz_attribute_names.h"  // kFuzzAttributeNames, generated from the ops' sources (cmake/fuzz.cmake)

namespace castling::fuzz {

// Every run stays fast: inputs past this many elements are not built (an op's refusal of a large
// input is checked through the huge dimensions below, which fail before any allocation).
constexpr std::int64_t kMaxFuzzElements = 100000;

// The most an empty tensor's nonzero dimensions may multiply to (see tensor()).
constexpr std::int64_t kMaxEmptyDims = 10000000;

// Thrown when an input would be too large to run quickly: the input is skipped, not a finding.
struct TooLarge {};

class TensorDecoder {
 public:
  explicit TensorDecoder(FuzzedDataProvider& data) : data_(data) {}

  // One dimension: mostly small, often one seen before (so that shapes match and the ops get past
  // their checks into the kernels), sometimes zero or huge.
  std::int64_t dimension() {
    switch (data_.ConsumeIntegralInRange<int>(0, 15)) {
      case 0:
        return 0;
      case 1:
        return hugeDimension();
      case 2:
      case 3:
      case 4:
      case 5:
      case 6:
        if (!seen_.empty()) return seen_[data_.ConsumeIntegralInRange<std::size_t>(0, seen_.size() - 1)];
        [[fallthrough]];
      default: {
        std::int64_t d = data_.ConsumeIntegralInRange<std::int64_t>(1, 9);
        seen_.push_back(d);
        return d;
      }
    }
  }

  std::int64_t hugeDimension() {
    static const std::int64_t kHuge[] = {-1, std::int64_t(1) << 31, (std::int64_t(1) << 31) - 1, std::int64_t(1) << 36,
                                         std::int64_t(1) << 62, std::numeric_limits<std::int64_t>::max(),
                                         std::numeric_limits<std::int64_t>::min()};
    return kHuge[data_.ConsumeIntegralInRange<std::size_t>(0, std::size(kHuge) - 1)];
  }

  Shape shape() {
    // Rank 0..4 mostly; now and then past kMaxRank, which must be refused.
    int rank = data_.ConsumeIntegralInRange<int>(0, 4);
    if (data_.ConsumeIntegralInRange<int>(0, 31) == 0) rank = data_.ConsumeIntegralInRange<int>(5, kMaxRank + 2);
    Shape s;
    for (int i = 0; i < rank; ++i) s.push_back(dimension());
    return s;
  }

  // An element: a float from the input, or a value that matters to some op (indices, labels,
  // step counts, NaN, infinities, denormals, huge ones).
  float value() {
    static const float kInteresting[] = {0.0f, 1.0f, -1.0f, 2.0f, 3.0f, 7.0f, 8.0f, -0.0f, 0.5f, 1e-30f, 1e30f, 3.4e38f,
                                         -3.4e38f, std::numeric_limits<float>::denorm_min(),
                                         std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                         -std::numeric_limits<float>::infinity(), 2147483648.0f, -2147483648.0f, 1e10f};
    switch (data_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        return kInteresting[data_.ConsumeIntegralInRange<std::size_t>(0, std::size(kInteresting) - 1)];
      case 1:
        return float(data_.ConsumeIntegralInRange<int>(-2, 12));  // indices and labels, a few out of range
      case 2:
        return data_.ConsumeFloatingPointInRange<float>(-4.0f, 4.0f);
      default:
        return data_.ConsumeFloatingPoint<float>();
    }
  }

  // A tensor, or nothing (an absent optional input). Tensor::empty refuses bad shapes with a
  // castling::Error, which the caller treats as the documented refusal it is.
  std::optional<Tensor> tensor() {
    if (data_.ConsumeIntegralInRange<int>(0, 9) == 0) return std::nullopt;
    Shape s = shape();
    // checkedNumel refuses the negative, overflowing and too-many-element shapes (the documented
    // refusal); a huge dimension beside a zero one gives an empty tensor, which the ops must take.
    if (checkedNumel(s) > kMaxFuzzElements) throw TooLarge{};
    // An empty tensor may still have large dimensions, and an op's output from it may be as large
    // as they say (selectToken of [2^31, 0, 4] is [2^31, 4]): a real allocation, not a fault, but
    // too slow for a fuzz run. Past kMaxEmptyDims the input is skipped.
    std::int64_t spanned = 1;
    for (std::int64_t d : s) spanned *= d == 0 ? 1 : d;  // checkedNumel bounded this product
    if (spanned > kMaxEmptyDims) throw TooLarge{};
    Tensor t = Tensor::empty(s);
    // A pattern repeated over the tensor: the input's bytes go further, and runs stay fast.
    std::vector<float> pattern(std::size_t(data_.ConsumeIntegralInRange<int>(1, 8)));
    for (float& v : pattern) v = value();
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = pattern[std::size_t(i) % pattern.size()];
    // A transposed view: kernels that need dense rows must say so, not read the strides wrongly.
    if (t.rank() >= 2 && data_.ConsumeIntegralInRange<int>(0, 7) == 0) {
      int a = data_.ConsumeIntegralInRange<int>(0, t.rank() - 1);
      int b = data_.ConsumeIntegralInRange<int>(0, t.rank() - 1);
      t = t.transpose(a, b);
    }
    return t;
  }

  double attributeValue() {
    static const double kInteresting[] = {0, 1, -1, 2, 3, 4, 0.5, 1e-8, 1e300, -1e300, 2147483648.0, 9.3e18, -9.3e18,
                                          1.5, std::numeric_limits<double>::quiet_NaN(),
                                          std::numeric_limits<double>::infinity(),
                                          -std::numeric_limits<double>::infinity(),
                                          std::numeric_limits<double>::denorm_min()};
    switch (data_.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        return kInteresting[data_.ConsumeIntegralInRange<std::size_t>(0, std::size(kInteresting) - 1)];
      case 1:
        return data_.ConsumeIntegralInRange<int>(-2, 10);
      default:
        return data_.ConsumeFloatingPoint<double>();
    }
  }

  Attrs attributes() {
    Attrs attrs;
    int count = data_.ConsumeIntegralInRange<int>(0, 6);
    for (int i = 0; i < count; ++i) {
      const char* name = kFuzzAttributeNames[data_.ConsumeIntegralInRange<std::size_t>(0, std::size(kFuzzAttributeNames) - 1)];
      attrs.set(name, attributeValue());
    }
    return attrs;
  }

  // One of the CPU paths this machine runs, so that every kernel table gets fuzzed.
  void chooseCpuPath() {
    Isa isa = Isa(data_.ConsumeIntegralInRange<int>(0, 2));
    if (isaSupported(isa)) setActiveIsa(isa);
  }

 private:
  FuzzedDataProvider& data_;
  std::vector<std::int64_t> seen_;
};

// Reads every element of every output, so that AddressSanitizer sees an output whose shape claims
// more than its storage holds.
inline void touchOutputs(const std::vector<Tensor>& outputs) {
  volatile float sink = 0;
  for (const Tensor& t : outputs) {
    if (!t.defined()) continue;
    Tensor dense = t.contiguous();
    for (std::int64_t i = 0; i < dense.numel(); ++i) sink = sink + dense.data()[i];
  }
}

}  // namespace castling::fuzz
