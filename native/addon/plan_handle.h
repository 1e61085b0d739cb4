// The JavaScript handle of a compiled plan (core/plan.h): new NativePlan(steps, slotCount, keep,
// options?) validates and keeps the plan; plan.run(slots, async) executes it on or off the JS
// thread. options.cudaGraph (the input slots) runs it as a CUDA graph (cuda/cuda_graph.h).
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "../core/plan.h"

namespace castling::addon {

class PlanHandle : public Napi::ObjectWrap<PlanHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit PlanHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value run(const Napi::CallbackInfo& info);
  Napi::Value graphCaptures(const Napi::CallbackInfo& info);

  std::shared_ptr<const Plan> plan_;
  // Set for a plan run as a CUDA graph: runs it (Plan::run's contract); empty otherwise.
  std::function<std::vector<Tensor>(std::vector<std::optional<Tensor>>)> graph_run_;
  std::function<int()> graph_captures_;  // how many times the graph was captured
  int slot_count_ = 0;
};

}  // namespace castling::addon
