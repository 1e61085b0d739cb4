#include "plan.h"

#include <chrono>

#include "error.h"

namespace castling {

Plan::Plan(std::vector<PlanStep> steps, int slotCount, std::vector<int> keep)
    : steps_(std::move(steps)), slot_count_(slotCount), keep_(std::move(keep)) {
  // The last step reading each slot releases it, unless the caller keeps it.
  std::vector<int> last_reader(std::size_t(std::max(slotCount, 0)), -1);
  for (std::size_t s = 0; s < steps_.size(); ++s)
    for (int slot : steps_[s].inputs)
      if (slot >= 0 && slot < slotCount) last_reader[std::size_t(slot)] = int(s);
  for (int slot : keep_)
    if (slot >= 0 && slot < slotCount) last_reader[std::size_t(slot)] = -1;
  release_after_.resize(steps_.size());
  for (int slot = 0; slot < slotCount; ++slot)
    if (last_reader[std::size_t(slot)] >= 0) release_after_[std::size_t(last_reader[std::size_t(slot)])].push_back(slot);
}

void Plan::validate(const std::vector<bool>& filled) const {
  if (int(filled.size()) != slot_count_) fail("plan: got ", filled.size(), " slots, expected ", slot_count_);
  std::vector<bool> ready = filled;
  auto check = [&](int slot, std::size_t step, const char* role) {
    if (slot < -1 || slot >= slot_count_) {
      fail("plan step ", step, " (", steps_[step].name, "): ", role, " slot ", slot, " is out of range 0..", slot_count_ - 1);
    }
  };
  for (std::size_t s = 0; s < steps_.size(); ++s) {
    for (int slot : steps_[s].inputs) {
      check(slot, s, "input");
      if (slot >= 0 && !ready[std::size_t(slot)]) {
        fail("plan step ", s, " (", steps_[s].name, ") reads slot ", slot, " before anything is written to it");
      }
    }
    for (int slot : steps_[s].outputs) {
      check(slot, s, "output");
      if (slot >= 0) ready[std::size_t(slot)] = true;
    }
  }
  for (int slot : keep_) {
    if (slot < 0 || slot >= slot_count_ || !ready[std::size_t(slot)]) fail("plan: kept slot ", slot, " is never written");
  }
}

std::vector<Tensor> Plan::run(std::vector<std::optional<Tensor>> slots, std::vector<double>* stepMs) const {
  if (stepMs) stepMs->assign(steps_.size(), 0.0);
  for (std::size_t s = 0; s < steps_.size(); ++s) {
    const PlanStep& step = steps_[s];
    auto start = std::chrono::steady_clock::now();
    std::vector<std::optional<Tensor>> inputs;
    inputs.reserve(step.inputs.size());
    for (int slot : step.inputs) inputs.push_back(slot >= 0 ? slots[std::size_t(slot)] : std::nullopt);
    std::vector<Tensor> outputs = step.op->run(OpInputs(step.name, std::move(inputs)), step.attrs);
    if (outputs.size() < step.outputs.size()) {
      fail("plan step ", s, " (", step.name, ") gives ", outputs.size(), " outputs, the plan expects ", step.outputs.size());
    }
    for (std::size_t o = 0; o < step.outputs.size(); ++o)
      if (step.outputs[o] >= 0) slots[std::size_t(step.outputs[o])] = std::move(outputs[o]);
    for (int slot : release_after_[s]) slots[std::size_t(slot)].reset();
    if (stepMs) (*stepMs)[s] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  std::vector<Tensor> kept;
  for (int slot : keep_) kept.push_back(*slots[std::size_t(slot)]);
  return kept;
}

}  // namespace castling
