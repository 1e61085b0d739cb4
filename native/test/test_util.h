// A minimal test harness for the C++ kernel tests (no framework to install): TEST cases register
// themselves, CHECK records failures, main() runs every case on every ISA the CPU supports (runAll)
// or once (runCases) and prints the closing line ctest and people read (finish).
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../core/cpu_features.h"

namespace castling::test {

struct Case {
  std::string name;
  std::function<void()> body;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(const char* name, std::function<void()> body) { cases().push_back({name, std::move(body)}); }
};

#define CASTLING_CAT2(a, b) a##b
#define CASTLING_CAT(a, b) CASTLING_CAT2(a, b)
#define TEST(name)                                                                            \
  static void name();                                                                         \
  static ::castling::test::Register CASTLING_CAT(register_, name)(#name, name);               \
  static void name()

#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "  FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
      ++::castling::test::failures();                                                         \
    }                                                                                         \
  } while (0)

// Fresh random values in [-1, 1] (seeded from the clock unless CASTLING_TEST_SEED is set).
inline std::mt19937& rng() {
  static std::mt19937 engine([] {
    const char* env = std::getenv("CASTLING_TEST_SEED");
    unsigned seed = env ? unsigned(std::strtoul(env, nullptr, 10)) : std::random_device{}();
    std::fprintf(stderr, "seed %u\n", seed);
    return seed;
  }());
  return engine;
}

inline std::vector<float> randomVector(std::size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng());
  return v;
}

// Max over i of |got - want| / (atol + rtol |want|): <= 1 passes.
inline double errorRatio(const float* got, const double* want, std::size_t n, double atol, double rtol) {
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double e = std::abs(double(got[i]) - want[i]) / (atol + rtol * std::abs(want[i]));
    if (!(e <= worst)) worst = e;  // NaN counts as the worst
  }
  return worst;
}

// Pass and fail counts over one or more runCases calls.
struct Tally {
  int passed = 0, failed = 0;
};

// Runs every case once, printing a line per case (tagged " [tag]" when a tag is given) and
// counting it in `tally`; afterEach runs after each case's body, inside its try (e.g. to wait for
// a device, whose errors then fail that case).
inline void runCases(Tally& tally, const char* tag = nullptr, const std::function<void()>& afterEach = {}) {
  for (const Case& c : cases()) {
    int before = failures();
    try {
      c.body();
      if (afterEach) afterEach();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  FAILED: exception %s\n", e.what());
      ++failures();
    }
    bool ok = failures() == before;
    if (tag)
      std::printf("%s %s [%s]\n", ok ? "ok  " : "FAIL", c.name.c_str(), tag);
    else
      std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name.c_str());
    std::fflush(stdout);
    (ok ? tally.passed : tally.failed)++;
  }
}

// Prints the closing line ctest and people read; returns the process exit code.
inline int finish(const Tally& tally) {
  std::printf("tests: %d passed, %d failed\n", tally.passed, tally.failed);
  return tally.failed == 0 ? 0 : 1;
}

// Runs every case once per supported ISA; returns the process exit code.
inline int runAll() {
  Tally tally;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isaSupported(isa)) {
      std::printf("skipping ISA %s: not supported by this CPU\n", isaName(isa));
      continue;
    }
    setActiveIsa(isa);
    runCases(tally, isaName(isa));
  }
  return finish(tally);
}

}  // namespace castling::test
