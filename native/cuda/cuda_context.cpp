#include "cuda_context.h"

#include <cmath>
#include <mutex>

#include "../core/device_backend.h"
#include "../core/tensor.h"
#include "cuda_check.h"
#include "cuda_ops.h"

namespace castling::cuda {

namespace {

struct Context {
  Status status;
  cudaStream_t stream = nullptr;
  cudaDeviceProp props{};
  CachingAllocator allocator;
  DeferredReport* deferred = nullptr;  // device memory, see DeferredError
};

// Never destroyed: device storages freed during exit still return their blocks here (the
// driver reclaims the memory when the process ends).
Context& context() {
  static Context* c = new Context();
  return *c;
}

// The core's view of the device: memory, zero-fill and copies, all on the backend's stream.
class CudaBackend final : public DeviceBackend {
 public:
  void* allocate(std::size_t bytes) override { return context().allocator.allocate(bytes); }
  void release(void* block, std::size_t bytes) noexcept override { context().allocator.release(block, bytes); }
  void zero(void* block, std::size_t bytes) override {
    CASTLING_CUDA_CHECK(cudaMemsetAsync(block, 0, bytes, stream()));
  }
  void copy(void* dst, Device dstDevice, const void* src, Device srcDevice, std::size_t bytes) override {
    cudaMemcpyKind kind = srcDevice == Device::Cpu ? cudaMemcpyHostToDevice
                          : dstDevice == Device::Cpu ? cudaMemcpyDeviceToHost
                                                     : cudaMemcpyDeviceToDevice;
    CASTLING_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream()));
    // Host memory may be pageable and may be freed by the caller right after: wait for copies
    // that touch it (device-to-device copies stay queued).
    if (kind != cudaMemcpyDeviceToDevice) {
      CASTLING_CUDA_CHECK(cudaStreamSynchronize(stream()));
      if (kind == cudaMemcpyDeviceToHost) raiseDeferredError();
    }
  }
  Tensor toFloat32(const Tensor& t) override { return castTensor(t, DType::Float32); }
  void synchronize() override { cuda::synchronize(); }
};

std::string describe(cudaError_t status, const char* call) {
  return std::string("the CUDA backend is built in, but ") + call + " failed: " + cudaGetErrorName(status) + " (" +
         cudaGetErrorString(status) + ")";
}

void probe(Context& c, OpRegistry& registry) {
  Status& s = c.status;
  cudaRuntimeGetVersion(&s.runtimeVersion);
  cudaDriverGetVersion(&s.driverVersion);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    s.reason = describe(err, "cudaGetDeviceCount");
    return;
  }
  if (count == 0) {
    s.reason = "the CUDA backend is built in, but no CUDA device was found";
    return;
  }
  if ((err = cudaSetDevice(0)) != cudaSuccess || (err = cudaGetDeviceProperties(&c.props, 0)) != cudaSuccess) {
    cudaGetLastError();
    s.reason = describe(err, "opening device 0");
    return;
  }
  if ((err = cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking)) != cudaSuccess ||
      (err = cudaMalloc(&c.deferred, sizeof(DeferredReport))) != cudaSuccess ||
      (err = cudaMemset(c.deferred, 0, sizeof(DeferredReport))) != cudaSuccess) {
    cudaGetLastError();
    s.reason = describe(err, "creating the stream");
    return;
  }
  s.device = c.props.name;
  s.computeCapability = c.props.major * 10 + c.props.minor;
  s.multiprocessors = c.props.multiProcessorCount;
  s.memoryBytes = std::int64_t(c.props.totalGlobalMem);
  s.available = true;
  static CudaBackend backend;
  registerDeviceBackend(Device::Cuda, &backend);
  registerCudaOps(registry);
}

}  // namespace

const Status& initialize(OpRegistry& registry) {
  static std::once_flag once;
  std::call_once(once, [&] {
    Context& c = context();
    probe(c, registry);
    if (!c.status.available) registerDeviceBackend(Device::Cuda, nullptr, c.status.reason);
  });
  return context().status;
}

const Status& status() { return context().status; }
namespace {
thread_local cudaStream_t threadStream = nullptr;  // set while this thread captures a graph
}  // namespace

cudaStream_t stream() { return threadStream ? threadStream : context().stream; }
void setThreadStream(cudaStream_t capture) { threadStream = capture; }
CachingAllocator& allocator() { return context().allocator; }
const cudaDeviceProp& properties() { return context().props; }

void synchronize() {
  CASTLING_CUDA_CHECK(cudaStreamSynchronize(context().stream));
  raiseDeferredError();
}

int* deferredErrorWord() { return &context().deferred->code; }
DeferredReport* deferredReport() { return context().deferred; }

void raiseDeferredError() {
  Context& c = context();
  DeferredReport report{};
  CASTLING_CUDA_CHECK(cudaMemcpyAsync(&report, c.deferred, sizeof report, cudaMemcpyDeviceToHost, c.stream));
  CASTLING_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  if (report.code == kNoDeferredError) return;
  CASTLING_CUDA_CHECK(cudaMemsetAsync(c.deferred, 0, sizeof report, c.stream));
  CASTLING_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  switch (report.code) {
    case kNonFiniteInput:
      fail("checkFinite: element ", report.index, " is ",
           std::isnan(report.value) ? "NaN" : report.value > 0 ? "Infinity" : "-Infinity", ", expected a finite number");
    case kAdamwNonFiniteNorm:
      fail("adamw: the gradient norm is NaN or infinity (diverged training?); the parameters were not updated");
    case kAdamwBadStep:
      fail("adamw: schedule step is not an integer >= 1; the parameters were not updated");
    default:
      failAs(ErrorKind::Internal, "a CUDA kernel reported error code ", report.code);
  }
}

}  // namespace castling::cuda
