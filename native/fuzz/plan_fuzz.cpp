// Fuzz target: plans (native/core/plan.h) of random steps over random slots, checked and run as
// the addon does (plan_handle.cpp): slot indices out of range, slots read before they are written,
// outputs dropped or written twice, kept slots never written. A castling::Error is the documented
// refusal; anything else is a finding.
#include "../core/plan.h"
#include "fuzz_target.h"

using namespace castling;

namespace {

// A slot number: mostly a real one, sometimes -1 (absent or dropped) or out of range.
int slotIndex(FuzzedDataProvider& data, int slotCount) {
  if (data.ConsumeIntegralInRange<int>(0, 15) == 0) return data.ConsumeIntegralInRange<int>(-3, slotCount + 2);
  if (data.ConsumeIntegralInRange<int>(0, 7) == 0) return -1;
  return slotCount == 0 ? -1 : data.ConsumeIntegralInRange<int>(0, slotCount - 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const auto& names = fuzz::registeredOpNames();
  FuzzedDataProvider data(bytes, size);
  fuzz::TensorDecoder decode(data);
  decode.chooseCpuPath();
  fuzz::expectOnlyErrors("plan_fuzz", "the plan", [&] {
    int slotCount = data.ConsumeIntegralInRange<int>(0, 10);
    std::vector<PlanStep> steps(data.ConsumeIntegralInRange<std::size_t>(0, 6));
    for (PlanStep& step : steps) {
      step.name = names[data.ConsumeIntegralInRange<std::size_t>(0, names.size() - 1)];
      step.op = &OpRegistry::global().find(step.name);
      // The addon refuses more inputs than the op has before building the plan.
      std::size_t inputs = data.ConsumeIntegralInRange<std::size_t>(0, step.op->inputs.size());
      for (std::size_t i = 0; i < inputs; ++i) step.inputs.push_back(slotIndex(data, slotCount));
      std::size_t outputs = data.ConsumeIntegralInRange<std::size_t>(0, 4);
      for (std::size_t i = 0; i < outputs; ++i) step.outputs.push_back(slotIndex(data, slotCount));
      step.attrs = decode.attributes();
    }
    std::vector<int> keep(data.ConsumeIntegralInRange<std::size_t>(0, 3));
    for (int& slot : keep) slot = slotIndex(data, slotCount);
    std::vector<std::optional<Tensor>> slots(static_cast<std::size_t>(slotCount));
    std::vector<bool> filled(static_cast<std::size_t>(slotCount), false);
    for (int s = 0; s < slotCount; ++s) {
      slots[std::size_t(s)] = decode.tensor();
      filled[std::size_t(s)] = slots[std::size_t(s)].has_value();
    }
    Plan plan(std::move(steps), slotCount, std::move(keep));
    plan.validate(filled);
    fuzz::touchOutputs(plan.run(std::move(slots)));
  });
  return 0;
}
