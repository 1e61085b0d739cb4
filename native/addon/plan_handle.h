// The JavaScript handle of a compiled plan (core/plan.h): new NativePlan(steps, slotCount, keep)
// validates and keeps the plan; plan.run(slots, async) executes it on or off the JS thread.
#pragma once
#include <napi.h>

#include <memory>

#include "../core/plan.h"

namespace castling::addon {

class PlanHandle : public Napi::ObjectWrap<PlanHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit PlanHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value run(const Napi::CallbackInfo& info);

  std::shared_ptr<const Plan> plan_;
  int slot_count_ = 0;
};

}  // namespace castling::addon
