// Where a tensor's memory lives and what its elements are. The CPU path is float32 only; the
// CUDA backend (native/cuda) adds device memory and the 16-bit storage types (bfloat16, float16,
// always accumulated in float32 by the kernels). The core knows no CUDA: a device backend
// registers itself at start-up (device_backend.h), and a build without one says why.
#pragma once
#include <cstddef>
#include <cstdint>

namespace castling {

enum class Device : std::uint8_t { Cpu = 0, Cuda = 1 };
enum class DType : std::uint8_t { Float32 = 0, BFloat16 = 1, Float16 = 2 };

inline const char* deviceName(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    default: return "float32";
  }
}

inline std::size_t dtypeSize(DType t) { return t == DType::Float32 ? 4 : 2; }

}  // namespace castling
