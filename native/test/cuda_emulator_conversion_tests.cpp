// Self-tests of the CUDA emulator, part 3: the half and bfloat16 conversions against a reference
// built a different way (the nearest value in a table of every representable number, decoded with
// ldexp), on every tie, subnormal and the overflow threshold plus random floats, and the round trip
// of all 65536 values of each format.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "test_util.h"

namespace {

// ---- 16-bit conversions against a reference ----

// Every finite value of a 16-bit format, decoded with ldexp (not with the bit tricks under test),
// sorted; the nearest one to x with ties to the even encoding is the correctly rounded result.
struct Format {
  int exponentBits, mantissaBits;
  double decode(unsigned bits) const {
    const unsigned sign = bits >> 15, e = (bits >> mantissaBits) & ((1u << exponentBits) - 1), m = bits & ((1u << mantissaBits) - 1);
    const int bias = (1 << (exponentBits - 1)) - 1;
    double v = e == 0 ? std::ldexp(double(m), 1 - bias - mantissaBits) : std::ldexp(double(m + (1u << mantissaBits)), int(e) - bias - mantissaBits);
    return sign ? -v : v;
  }
  bool finite(unsigned bits) const { return ((bits >> mantissaBits) & ((1u << exponentBits) - 1)) != (1u << exponentBits) - 1; }
};

constexpr Format kHalf{5, 10}, kBfloat16{8, 7};

struct Reference {
  std::vector<std::pair<double, unsigned>> values;  // non-negative finite values and their encodings
  double largest, overflow;                          // the largest finite value; where rounding reaches infinity
  unsigned infinity;
  explicit Reference(const Format& f) {
    for (unsigned bits = 0; bits < 0x8000u; ++bits)
      if (f.finite(bits)) values.emplace_back(f.decode(bits), bits);
    std::sort(values.begin(), values.end());
    largest = values.back().first;
    const double ulp = largest - values[values.size() - 2].first;
    overflow = largest + ulp / 2;  // the tie between the largest value and the next power of two rounds to infinity (even)
    infinity = ((1u << f.exponentBits) - 1) << f.mantissaBits;
  }
  unsigned round(float x) const {
    if (std::isnan(x)) return 0x7fffu;
    const unsigned sign = std::signbit(x) ? 0x8000u : 0u;
    const double a = std::abs(double(x));
    if (a >= overflow) return sign | infinity;
    auto hi = std::lower_bound(values.begin(), values.end(), std::make_pair(a, 0u));
    if (hi == values.end()) return sign | values.back().second;
    if (hi->first == a || hi == values.begin()) return sign | hi->second;
    auto lo = hi - 1;
    const double dLo = a - lo->first, dHi = hi->first - a;
    if (dLo < dHi) return sign | lo->second;
    if (dHi < dLo) return sign | hi->second;
    return sign | ((lo->second & 1u) ? hi->second : lo->second);
  }
};

// Floats that stress rounding: both sides of every tie between neighbouring 16-bit values,
// subnormals, the overflow threshold, infinities and NaNs, plus random bit patterns.
std::vector<float> stressFloats(const Reference& r, std::size_t randomCount) {
  std::vector<float> out = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::max(), float(r.largest), float(r.overflow)};
  for (std::size_t i = 1; i < r.values.size(); ++i) {
    const float mid = float((r.values[i - 1].first + r.values[i].first) / 2);  // exact in float for both formats
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY), float(r.values[i].first)}) {
      out.push_back(v);
      out.push_back(-v);
    }
  }
  out.push_back(std::nextafter(float(r.overflow), 0.0f));
  std::mt19937 gen(12345);
  for (std::size_t i = 0; i < randomCount; ++i) {
    std::uint32_t bits = gen();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    out.push_back(f);
  }
  return out;
}

std::uint16_t bitsOf(__half h) { return __half_as_ushort(h); }
std::uint16_t bitsOf(__nv_bfloat16 b) { return __bfloat16_as_ushort(b); }

template <typename Convert>
bool matchesReference(const Reference& r, Convert convert, const char* what) {
  int wrong = 0;
  for (float f : stressFloats(r, 1 << 21)) {
    const unsigned want = r.round(f), got = convert(f);
    if (got != want && ++wrong <= 3) std::fprintf(stderr, "  %s(%.9g): 0x%04x, expected 0x%04x\n", what, double(f), got, want);
  }
  return wrong == 0;
}

TEST(float_to_half_rounds_like_the_reference) {
  static const Reference r(kHalf);
  CHECK(matchesReference(r, [](float f) { return unsigned(bitsOf(__float2half_rn(f))); }, "__float2half_rn"));
}

TEST(float_to_bfloat16_rounds_like_the_reference) {
  static const Reference r(kBfloat16);
  CHECK(matchesReference(r, [](float f) { return unsigned(bitsOf(__float2bfloat16_rn(f))); }, "__float2bfloat16_rn"));
}

template <typename T, typename ToFloat, typename FromFloat>
bool everyValueRoundTrips(const Format& format, ToFloat toFloat, FromFloat fromFloat) {
  int wrong = 0;
  for (unsigned bits = 0; bits < 0x10000u; ++bits) {
    const float f = toFloat(T{std::uint16_t(bits)});
    const bool nan = ((bits >> format.mantissaBits) & ((1u << format.exponentBits) - 1)) == (1u << format.exponentBits) - 1 &&
                     (bits & ((1u << format.mantissaBits) - 1)) != 0;
    // finite values widen exactly (checked against the ldexp decoding); NaNs become the canonical NaN
    bool ok = nan ? std::isnan(f) && bitsOf(fromFloat(f)) == 0x7fffu : bitsOf(fromFloat(f)) == bits;
    if (ok && !nan && format.finite(bits)) ok = double(f) == format.decode(bits) && std::signbit(f) == bool(bits & 0x8000u);
    if (!ok && ++wrong <= 3) std::fprintf(stderr, "  0x%04x -> %.9g -> 0x%04x\n", bits, double(f), unsigned(bitsOf(fromFloat(f))));
  }
  return wrong == 0;
}

TEST(every_half_round_trips) {
  CHECK((everyValueRoundTrips<__half>(kHalf, [](__half h) { return __half2float(h); }, [](float f) { return __float2half_rn(f); })));
}

TEST(every_bfloat16_round_trips) {
  CHECK((everyValueRoundTrips<__nv_bfloat16>(kBfloat16, [](__nv_bfloat16 b) { return __bfloat162float(b); },
                                             [](float f) { return __float2bfloat16_rn(f); })));
}

}  // namespace
