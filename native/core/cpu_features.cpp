#include "cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CASTLING_X86 1
#endif

namespace castling {

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

Isa parseIsa(const std::string& name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  fail("unknown CPU path '", name, "': expected one of scalar, avx2, avx512");
}

namespace {

#ifdef CASTLING_X86
std::uint64_t readXcr0() {
  std::uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (std::uint64_t(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef CASTLING_X86
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  bool osxsave = ecx & (1u << 27);
  bool fma = ecx & (1u << 12);
  bool avx = ecx & (1u << 28);
  std::uint64_t xcr0 = osxsave ? readXcr0() : 0;
  bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE and AVX state saved by the OS
  bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM0-15 high, ZMM16-31
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    bool avx2 = ebx & (1u << 5);
    bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
    bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
    f.avx2 = avx && avx2 && fma && ymm_state;
    f.avx512 = f.avx2 && avx512f && avx512dq && avx512bw && avx512vl && zmm_state;
    f.avx512fp16 = f.avx512 && (edx & (1u << 23));
  }
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000006) {
    __cpuid(0x80000006, eax, ebx, ecx, edx);
    f.l2Bytes = std::int64_t(ecx >> 16) * 1024;  // Intel and AMD alike: ECX[31:16], in KB
  }
  char brand[49] = {0};
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) {
      __cpuid(0x80000002 + i, eax, ebx, ecx, edx);
      std::memcpy(brand + 16 * i, &eax, 4);
      std::memcpy(brand + 16 * i + 4, &ebx, 4);
      std::memcpy(brand + 16 * i + 8, &ecx, 4);
      std::memcpy(brand + 16 * i + 12, &edx, 4);
    }
  }
  f.brand = brand;
  // Trim the padding spaces some vendors put around the brand string.
  while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  while (!f.brand.empty() && f.brand.front() == ' ') f.brand.erase(0, 1);
#endif
  return f;
}

std::atomic<int> g_active{-1};

}  // namespace

const CpuFeatures& cpuFeatures() {
  static const CpuFeatures features = detect();
  return features;
}

bool isaSupported(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return cpuFeatures().avx2;
    case Isa::Avx512: return cpuFeatures().avx512;
  }
  return false;
}

Isa bestIsa() {
  if (isaSupported(Isa::Avx512)) return Isa::Avx512;
  if (isaSupported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

void requireIsa(Isa isa) {
  if (!isaSupported(isa)) {
    failAs(ErrorKind::Unsupported, "CPU path '", isaName(isa), "' is not supported by this CPU (", cpuFeatures().brand,
         "): the best it supports is '", isaName(bestIsa()), "'");
  }
}

void setActiveIsa(Isa isa) {
  requireIsa(isa);
  g_active.store(int(isa));
}

Isa activeIsa() {
  int current = g_active.load(std::memory_order_relaxed);
  if (current >= 0) return Isa(current);
  Isa chosen = bestIsa();
  if (const char* env = std::getenv("CASTLING_CPU")) {
    if (*env) chosen = parseIsa(env);  // throws for an unknown name
    if (!isaSupported(chosen)) setActiveIsa(chosen);  // throws with the reason
  }
  g_active.store(int(chosen));
  return chosen;
}

}  // namespace castling
