// Kernel launches on the emulated device. native/cuda/cuda_launch.cuh's launch() comes here in
// the emulated build: the arguments are converted to the kernel's parameter types once, and every
// emulated thread calls the kernel with its own copy of them, as the GPU passes parameters. On a
// capturing stream the launch is recorded with its parameters, for a graph to replay.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "device_api.h"
#include "runtime_api.h"

namespace castling::emu {

struct LaunchRequest {
  const void* kernel = nullptr;
  dim3 grid, block;
  std::size_t sharedBytes = 0;
  cudaStream_t stream = nullptr;
  void (*body)(const void* kernel, void* params) = nullptr;
  void* params = nullptr;
  std::size_t paramBytes = 0;  // the race check looks in here for the device memory it can reach
};

// Runs the whole grid before returning. A bad configuration sets the error cudaGetLastError
// returns (as a real launch does); a fault the emulator detects (divergent barrier, a broken warp
// collective, a race between thread orders) throws castling::Error naming the kernel.
void runLaunch(const LaunchRequest& request);
// runLaunch now, or (on a capturing stream) recorded: `params` keeps request.params alive.
void submitLaunch(const LaunchRequest& request, std::shared_ptr<void> params);

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) lands here.
void setMaxDynamicShared(const void* kernel, std::size_t bytes);
// The error a launch leaves for cudaGetLastError (runtime_api.cpp).
void setLastError(cudaError_t error);

// The kernel's name (demangled) for messages.
std::string kernelName(const void* kernel);

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t sharedBytes, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "a kernel launch passes exactly one argument per kernel parameter");
  using Tuple = std::tuple<std::decay_t<Params>...>;
  auto params = std::make_shared<Tuple>(std::forward<Args>(args)...);
  LaunchRequest r;
  r.kernel = reinterpret_cast<const void*>(kernel);
  r.grid = grid;
  r.block = block;
  r.sharedBytes = sharedBytes;
  r.stream = stream;
  r.body = [](const void* k, void* p) { std::apply(reinterpret_cast<void (*)(Params...)>(k), *static_cast<Tuple*>(p)); };
  r.params = params.get();
  r.paramBytes = sizeof(Tuple);
  submitLaunch(r, std::move(params));
}

}  // namespace castling::emu
