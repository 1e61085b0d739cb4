// Shared by the CUDA emulator's self-tests (cuda_emulator_*tests.cpp): device buffers, emulator
// options changed for one test, and the check that a launch fails with a given message.
#pragma once
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <vector>

#include "../core/error.h"
#include "../cuda/cuda_launch.cuh"
#include "../cuda/emulation/options.h"

namespace castling::test {

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  std::size_t n = 0;
  explicit DeviceBuffer(std::size_t count) : n(count) { cudaMalloc(&p, count * sizeof(T)); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> read() const {
    std::vector<T> out(n);
    cudaMemcpy(out.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return out;
  }
  void write(const std::vector<T>& v) { cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice); }
};

// Options changed for one test, restored after.
struct WithOptions {
  emu::Options saved = emu::options();
  ~WithOptions() { emu::options() = saved; }
};

// True when fn throws castling::Error mentioning every part; says what happened otherwise.
inline bool faults(const std::function<void()>& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
  } catch (const Error& e) {
    for (const char* part : parts) {
      if (!std::strstr(e.what(), part)) {
        std::fprintf(stderr, "  error '%s' does not mention '%s'\n", e.what(), part);
        return false;
      }
    }
    return true;
  }
  std::fprintf(stderr, "  no error (expected one mentioning '%s')\n", *parts.begin());
  return false;
}

}  // namespace castling::test
