// The CUDA backend's process-wide state: device 0, one stream on which every op is queued in
// order (host copies synchronise it; a graph's capture queues on its own, see stream()), the caching allocator, and the cuBLAS handle (cuda_blas).
// initialize() runs once: it checks for a usable device, then registers the DeviceBackend
// (allocation, copies) and the CUDA ops; without a device it records the CUDA error instead, so
// that backendInfo() and every 'cuda' request can say why.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../core/op_registry.h"
#include "cuda_allocator.h"

namespace castling::cuda {

struct Status {
  bool available = false;
  std::string reason;  // why not, when not available
  std::string device;  // e.g. "NVIDIA H100 80GB HBM3"
  int computeCapability = 0;  // e.g. 90
  int multiprocessors = 0;
  std::int64_t memoryBytes = 0;
  int runtimeVersion = 0, driverVersion = 0;
};

// Idempotent and thread-safe; registers the CUDA ops into `registry` the first time.
const Status& initialize(OpRegistry& registry = OpRegistry::global());
const Status& status();

// The stream this thread queues its work on: the backend's stream, or, while this thread captures
// a CUDA graph (cuda_graph.h), the capture's stream.
cudaStream_t stream();
// Makes this thread queue its work on `capture` (null: on the backend's stream again).
void setThreadStream(cudaStream_t capture);
CachingAllocator& allocator();
const cudaDeviceProp& properties();
// Waits for the stream (and so surfaces errors of kernels queued earlier, and deferred errors).
void synchronize();

// Deferred errors: a kernel that finds a bad input it cannot report at once (the host did not
// wait for it) sets this device word to one of the codes below and leaves its outputs alone; the
// next synchronisation (a copy to the host, synchronize()) throws the matching message. Ops that
// run many times per step (AdamW per parameter) report this way instead of waiting each time, and
// so does checkFinite, so that a plan queues all its work without waiting (and can be a CUDA
// graph); the addon waits once at the end of a plan's run, which raises it there.
enum DeferredError : int {
  kNoDeferredError = 0,
  kAdamwNonFiniteNorm = 1,  // adamw: the gradient norm was NaN or infinity
  kAdamwBadStep = 2,        // adamw: the schedule's step was not an integer >= 1
  kNonFiniteInput = 3,      // checkFinite: element `index` (the first) is `value`, NaN or infinite
};
// The device memory a deferred error is reported in: the code, and what the message names.
struct DeferredReport {
  int code;
  float value;
  unsigned long long index;
};
int* deferredErrorWord();  // &deferredReport()->code
DeferredReport* deferredReport();
// Throws the deferred error, if any, and clears it. Waits for the stream first.
void raiseDeferredError();

}  // namespace castling::cuda
