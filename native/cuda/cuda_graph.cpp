#include "cuda_graph.h"

#include <algorithm>

#include "../core/error.h"
#include "cuda_check.h"
#include "cuda_context.h"

namespace castling::cuda {

namespace {

std::size_t bytesOf(const Tensor& t) { return std::size_t(t.numel()) * t.elementSize(); }

// A contiguous copy of `t` on the device, queued on this thread's stream.
Tensor deviceCopy(const Tensor& t) {
  Tensor source = t.device() == Device::Cuda ? t.contiguous() : t.to(Device::Cuda);
  Tensor copy = Tensor::empty(source.shape(), source.dtype(), Device::Cuda);
  if (source.numel() > 0) {
    CASTLING_CUDA_CHECK(cudaMemcpyAsync(copy.raw(), source.raw(), bytesOf(source), cudaMemcpyDeviceToDevice, stream()));
  }
  return copy;
}

// This thread queues on the capture's stream and allocates from its pool until the scope ends.
struct CaptureScope {
  CaptureScope(cudaStream_t stream, PoolId pool) {
    setThreadStream(stream);
    CachingAllocator::setThreadPool(pool);
  }
  ~CaptureScope() {
    setThreadStream(nullptr);
    CachingAllocator::setThreadPool(0);
  }
};

}  // namespace

GraphPlan::GraphPlan(std::shared_ptr<const Plan> plan, std::vector<int> inputs) : plan_(std::move(plan)), inputs_(std::move(inputs)) {
  CASTLING_CUDA_CHECK(cudaStreamCreateWithFlags(&captureStream_, cudaStreamNonBlocking));
}

GraphPlan::~GraphPlan() {
  releaseGraph();
  cudaStreamDestroy(captureStream_);
}

void GraphPlan::releaseGraph() {
  if (exec_) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
  outputs_.clear();
  captured_.clear();
  // Work queued before keeps its order on the stream: the next owner of a block runs after the
  // last launch that used it.
  if (pool_) allocator().destroyPool(pool_);
  pool_ = 0;
}

bool GraphPlan::matchesCapture(const std::vector<std::optional<Tensor>>& slots) const {
  if (!exec_ || slots.size() != captured_.size()) return false;
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const auto& now = slots[s];
    const auto& then = captured_[s];
    if (now.has_value() != then.has_value()) return false;
    if (!now) continue;
    if (now->shape() != then->shape() || now->dtype() != then->dtype()) return false;
    const bool input = std::find(inputs_.begin(), inputs_.end(), int(s)) != inputs_.end();
    if (!input && (now->raw() != then->raw() || now->device() != Device::Cuda)) return false;
  }
  return true;
}

bool GraphPlan::capture(const std::vector<std::optional<Tensor>>& slots) {
  releaseGraph();
  captured_ = slots;
  for (int s : inputs_) {
    if (s < 0 || s >= int(slots.size()) || !slots[std::size_t(s)]) fail("graph plan: input slot ", s, " is not filled");
    const Tensor& in = *slots[std::size_t(s)];
    captured_[std::size_t(s)] = Tensor::empty(in.shape(), in.dtype(), Device::Cuda);
  }
  pool_ = allocator().createPool();
  CASTLING_CUDA_CHECK(cudaStreamBeginCapture(captureStream_, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    CaptureScope scope(captureStream_, pool_);
    outputs_ = plan_->run(captured_);
    for (Tensor& out : outputs_) out = out.contiguous();
  } catch (...) {
    // An op that waited invalidated the capture (its error is that wait's refusal): no graph.
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(captureStream_, &status);
    cudaStreamEndCapture(captureStream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    releaseGraph();
    if (status == cudaStreamCaptureStatusInvalidated) return false;
    throw;
  }
  if (cudaStreamEndCapture(captureStream_, &graph) == cudaErrorStreamCaptureInvalidated) {
    cudaGetLastError();
    releaseGraph();
    return false;
  }
  cudaError_t made = cudaGraphInstantiate(&exec_, graph, 0);
  cudaGraphDestroy(graph);
  if (made != cudaSuccess) {
    exec_ = nullptr;
    releaseGraph();
    check(made, "cudaGraphInstantiate", __FILE__, __LINE__);
  }
  ++captures_;
  return true;
}

std::vector<Tensor> GraphPlan::run(std::vector<std::optional<Tensor>> slots) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (uncapturable_ || (!matchesCapture(slots) && !capture(slots))) {
    uncapturable_ = true;
    return plan_->run(std::move(slots));
  }
  for (int s : inputs_) {
    const Tensor& in = *slots[std::size_t(s)];
    Tensor source = in.device() == Device::Cuda ? in.contiguous() : in.to(Device::Cuda);
    Tensor& staging = *captured_[std::size_t(s)];
    if (source.numel() > 0) {
      CASTLING_CUDA_CHECK(cudaMemcpyAsync(staging.raw(), source.raw(), bytesOf(source), cudaMemcpyDeviceToDevice, stream()));
    }
  }
  CASTLING_CUDA_CHECK(cudaGraphLaunch(exec_, stream()));
  std::vector<Tensor> results;
  results.reserve(outputs_.size());
  for (const Tensor& out : outputs_) results.push_back(deviceCopy(out));
  return results;
}

}  // namespace castling::cuda
