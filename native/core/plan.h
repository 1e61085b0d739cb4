// A plan: a sequence of ops over numbered tensor slots, run natively in one go. TypeScript
// records a whole forward pass (or training step) as a plan once per input shape and hands it
// over in a single call, so the per-op cost of crossing into JavaScript is paid once per pass,
// and the pass runs on a worker thread. A slot is released right after its last reader, so
// intermediates live only as long as they are needed.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "op_registry.h"
#include "tensor.h"

namespace castling {

struct PlanStep {
  const OpInfo* op = nullptr;
  std::string name;
  std::vector<int> inputs;   // slot per input; -1 for an absent optional input
  std::vector<int> outputs;  // slot per output; -1 to drop that output
  Attrs attrs;
};

class Plan {
 public:
  // `slots` starts with the caller's tensors (inputs, weights) in their slots, empty elsewhere;
  // `keep` lists the slots whose final tensors the caller wants back.
  Plan(std::vector<PlanStep> steps, int slotCount, std::vector<int> keep);

  // Checks every slot index and that each input is written before it is read (given which slots
  // are filled at the start). Throws castling::Error naming the step.
  void validate(const std::vector<bool>& filled) const;

  // Runs the steps in order; returns the tensors of the `keep` slots. With `stepMs`, also the
  // wall time of each step (to tell the kernels' time from the time around them).
  std::vector<Tensor> run(std::vector<std::optional<Tensor>> slots, std::vector<double>* stepMs = nullptr) const;
  const std::vector<PlanStep>& steps() const { return steps_; }

 private:
  std::vector<PlanStep> steps_;
  int slot_count_;
  std::vector<int> keep_;
  std::vector<std::vector<int>> release_after_;  // per step: slots whose last reader it is
};

}  // namespace castling
