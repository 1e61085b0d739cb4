// CPU feature detection and the choice of kernel path. One binary runs everywhere: AVX-512 where
// the CPU and OS support it, else AVX2+FMA, else portable C++. CASTLING_CPU forces a path.
#pragma once
#include <cstdint>
#include <string>

namespace castling {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isaName(Isa isa);
// Parses "scalar" | "avx2" | "avx512"; throws castling::Error naming the choices otherwise.
Isa parseIsa(const std::string& name);

struct CpuFeatures {
  bool avx2 = false;    // AVX2 and FMA3, with OS support for YMM state
  bool avx512 = false;  // AVX-512 F/BW/DQ/VL, with OS support for ZMM state
  bool avx512fp16 = false;  // AVX512-FP16: Intel's cores from Sapphire Rapids on (a tuning choice)
  std::int64_t l2Bytes = 0;  // a core's L2 cache (CPUID 0x80000006; 0 when not reported)
  std::string brand;    // the CPU's brand string
};

const CpuFeatures& cpuFeatures();
bool isaSupported(Isa isa);
Isa bestIsa();
// Throws castling::Error (kind Unsupported, naming the CPU and the best path it has) when the CPU
// lacks `isa`: checked wherever an ISA's code is about to be reached, since running an AVX-512
// instruction on a CPU without it kills the process with SIGILL instead of raising an error.
void requireIsa(Isa isa);

// The path kernels use now: CASTLING_CPU at first use, else the best the CPU supports.
Isa activeIsa();
// Forces a path; throws castling::Error (never a SIGILL later) when the CPU lacks it.
void setActiveIsa(Isa isa);

}  // namespace castling
