// A plan of fixed shapes as one CUDA graph: captured on its first run, then each run is one
// cudaGraphLaunch instead of a launch per kernel (a ViT pass is a few hundred small kernels, whose
// launch cost on the CPU can exceed their time on the GPU at small batches). Whether that pays is
// measured on a GPU, not here: plans run this way only when asked (docs/cuda.md).
//
// * Inputs: the slots named as inputs are copied into the graph's own buffers before each launch
//   (a graph reads the addresses it was captured with). Every other slot filled at the start (the
//   weights) is read where it was at capture, and held until the next capture: a run with one of
//   them at another address, or with an input of another shape or type, captures anew.
// * Outputs: the graph writes the kept slots into its own buffers; each run returns copies, so a
//   result stays valid however many runs follow.
// * Memory: the capture allocates from a private pool of the caching allocator (the rule is with
//   PoolId in cuda_allocator.h): no block the graph uses is handed to anyone else while it lives.
// * The capture fails, as on the hardware, if an op waits for the device (the ops that check their
//   inputs on the device, such as sparse attention's indices): such a plan cannot be a graph, and
//   runs through Plan::run, as without one, from then on.
// One run at a time per GraphPlan (a mutex): replays share the graph's buffers.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "../core/plan.h"
#include "cuda_allocator.h"

namespace castling::cuda {

class GraphPlan {
 public:
  // `inputs`: the slots whose tensors change from run to run (images, labels).
  GraphPlan(std::shared_ptr<const Plan> plan, std::vector<int> inputs);
  ~GraphPlan();
  GraphPlan(const GraphPlan&) = delete;
  GraphPlan& operator=(const GraphPlan&) = delete;

  // Plan::run's contract, on device tensors (host inputs are copied to the device first).
  std::vector<Tensor> run(std::vector<std::optional<Tensor>> slots);
  // How many times it captured (a test's view of when it captures anew).
  int captures() const { return captures_; }
  // False once a capture failed because an op waits for the device: it runs plainly.
  bool graphed() const { return !uncapturable_; }

 private:
  bool matchesCapture(const std::vector<std::optional<Tensor>>& slots) const;
  // False when an op of the plan waited for the device (the capture was invalidated).
  bool capture(const std::vector<std::optional<Tensor>>& slots);
  void releaseGraph();

  std::shared_ptr<const Plan> plan_;
  std::vector<int> inputs_;
  std::mutex mutex_;
  cudaStream_t captureStream_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  PoolId pool_ = 0;
  std::vector<std::optional<Tensor>> captured_;  // the slots as captured: staging buffers for inputs, the weights
  std::vector<Tensor> outputs_;                  // the kept slots, written by each launch
  std::atomic<int> captures_{0};  // read by tests from other threads
  bool uncapturable_ = false;
};

}  // namespace castling::cuda
