// C++ tests of whole plans on the CUDA backend (linked into the CUDA op test programs): a plan of
// a fixed shape queues every op without the host waiting for the device (counted on the emulator,
// which sees every wait), a plan run as a CUDA graph (cuda_graph.h) gives bit for bit the plain
// run's results, the graph's memory is never handed to anyone else between replays, and a plan
// whose op waits for the device runs uncaptured.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "../core/device_backend.h"
#include "../core/plan.h"
#include "../cuda/cuda_context.h"
#include "../cuda/cuda_graph.h"
#include "op_helpers.h"
#include "test_util.h"

#if defined(CASTLING_CUDA_EMULATION)
#include "../cuda/emulation/stream_capture.h"
#endif

using namespace castling;
using namespace castling::test;

namespace {

constexpr std::int64_t B = 2, T = 17, C = 24, Heads = 2, Hidden = 48;

Tensor deviceRandom(const Shape& shape, float scale = 0.5f) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return tensorOf(shape, randomVector(std::size_t(n), scale)).to(Device::Cuda);
}

PlanStep step(const char* op, std::vector<int> inputs, std::vector<int> outputs, Attrs attrs = {}) {
  PlanStep s;
  s.op = &OpRegistry::global().find(op);
  s.name = op;
  s.inputs = std::move(inputs);
  s.outputs = std::move(outputs);
  s.attrs = std::move(attrs);
  return s;
}

Attrs attrs(std::initializer_list<std::pair<const char*, double>> values) {
  Attrs a;
  for (auto& [k, v] : values) a.set(k, v);
  return a;
}

// One transformer block as the ViT's inference plan records it (lib/nn/vit_graph.ts): slot 0 is
// the input x [B, T, C], slots 1 to 12 the weights, the output is slot 23.
struct Block {
  static constexpr int kInput = 0, kSlots = 24;
  std::shared_ptr<const Plan> plan;
  std::vector<Tensor> weights;

  Block() {
    const Attrs eps = attrs({{"eps", 1e-6}});
    std::vector<PlanStep> steps = {
        step("checkFinite", {0}, {}),
        step("layerNorm", {0, 1, 2}, {13}, eps),
        step("linear", {13, 3, 4}, {14}),
        step("splitHeads", {14}, {15, 16, 17}, attrs({{"heads", double(Heads)}, {"parts", 3}})),
        step("attentionSoftmax", {15, 16, 17}, {18}),
        step("mergeHeads", {18}, {19}),
        step("linear", {19, 5, 6, 0}, {20}),
        step("layerNorm", {20, 7, 8}, {21}, eps),
        step("linear", {21, 9, 10}, {22}, attrs({{"gelu", 1}})),
        step("linear", {22, 11, 12, 20}, {23}),
    };
    plan = std::make_shared<const Plan>(std::move(steps), kSlots, std::vector<int>{23});
    for (const Shape& s : std::vector<Shape>{{C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C}, {C}, {C}, {Hidden, C}, {Hidden}, {C, Hidden}, {C}})
      weights.push_back(deviceRandom(s));
  }

  std::vector<std::optional<Tensor>> slots(const Tensor& x) const {
    std::vector<std::optional<Tensor>> out(kSlots);
    out[kInput] = x;
    for (std::size_t i = 0; i < weights.size(); ++i) out[i + 1] = weights[i];
    return out;
  }
};

std::vector<float> hostValues(const Tensor& t) { return valuesOf(t.to(Device::Cpu)); }

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

#if defined(CASTLING_CUDA_EMULATION)
// Every host wait goes through the emulator's runtime, which counts them.
TEST(cuda_plan_queues_every_op_without_waiting) {
  Block block;
  Tensor x = deviceRandom({B, T, C});
  hostValues(block.plan->run(block.slots(x))[0]);  // the allocator's cache filled: nothing left to set up
  const std::int64_t before = emu::hostSynchronizations();
  Tensor out = block.plan->run(block.slots(x))[0];
  CHECK(emu::hostSynchronizations() == before);
  std::vector<float> values = hostValues(out);  // reading the result is the one wait
  CHECK(emu::hostSynchronizations() > before);
  // The same as a graph: the capture, the input's copy and the launch queue without waiting too.
  cuda::GraphPlan graph(block.plan, {Block::kInput});
  const std::int64_t beforeGraph = emu::hostSynchronizations();
  Tensor replayed = graph.run(block.slots(x))[0];
  CHECK(emu::hostSynchronizations() == beforeGraph);
  CHECK(sameBits(hostValues(replayed), values));
}
#endif

TEST(cuda_graph_plan_matches_the_plain_run_bit_for_bit) {
  Block block;
  std::vector<Tensor> inputs;
  std::vector<std::vector<float>> plain;
  for (int i = 0; i < 3; ++i) {
    inputs.push_back(deviceRandom({B, T, C}, 2.0f));
    plain.push_back(hostValues(block.plan->run(block.slots(inputs.back()))[0]));
  }
  cuda::GraphPlan graph(block.plan, {Block::kInput});
  std::vector<Tensor> results;
  for (int i = 0; i < 3; ++i) results.push_back(graph.run(block.slots(inputs[std::size_t(i)]))[0]);
  CHECK(graph.captures() == 1);  // captured once, replayed for the other inputs
  // Each result is a copy: still the run's own after the later replays.
  for (int i = 0; i < 3; ++i) CHECK(sameBits(hostValues(results[std::size_t(i)]), plain[std::size_t(i)]));
  // A weight at another address is another graph: captured anew, and right.
  auto slots = block.slots(inputs[0]);
  slots[3] = deviceRandom({3 * C, C});
  std::vector<float> plainOther = hostValues(block.plan->run(slots)[0]);
  CHECK(sameBits(hostValues(graph.run(slots)[0]), plainOther));
  CHECK(graph.captures() == 2);
}

// The allocator's rule for graphs (cuda_allocator.h, PoolId): a block the capture used is not
// handed out between replays. Tensors allocated after the capture, of every size the block's
// intermediates have, must keep their contents through later replays.
TEST(cuda_graph_plan_keeps_its_memory_to_itself) {
  Block block;
  Tensor x1 = deviceRandom({B, T, C}), x2 = deviceRandom({B, T, C});
  std::vector<float> plain2 = hostValues(block.plan->run(block.slots(x2))[0]);
  cuda::GraphPlan graph(block.plan, {Block::kInput});
  hostValues(graph.run(block.slots(x1))[0]);
  std::vector<Tensor> bystanders;
  for (int copies = 0; copies < 4; ++copies)
    for (const Shape& s : std::vector<Shape>{{B, T, C}, {B, T, 3 * C}, {B, Heads, T, C / Heads}, {B, T, Hidden}, {B, T}, {2}})
      bystanders.push_back(Tensor::zeros(s, DType::Float32, Device::Cuda));
  CHECK(sameBits(hostValues(graph.run(block.slots(x2))[0]), plain2));
  for (const Tensor& t : bystanders) {
    std::vector<float> v = hostValues(t);
    CHECK(std::all_of(v.begin(), v.end(), [](float f) { return f == 0.0f; }));
  }
}

// An op that waits for the device (cross-entropy checks its labels there) cannot be part of a
// graph: the capture is invalidated, as on the hardware, and the plan runs uncaptured instead.
TEST(cuda_graph_plan_runs_a_plan_that_waits_uncaptured) {
  std::vector<PlanStep> steps = {step("linear", {0, 1}, {3}), step("crossEntropy", {3, 2}, {4, 5})};
  auto plan = std::make_shared<const Plan>(std::move(steps), 6, std::vector<int>{4});
  std::vector<std::optional<Tensor>> slots(6);
  slots[0] = deviceRandom({4, C});
  slots[1] = deviceRandom({3, C});
  slots[2] = tensorOf({4}, {0, 2, 1, 1}).to(Device::Cuda);
  std::vector<float> plain = hostValues(plan->run(slots)[0]);
  cuda::GraphPlan graph(plan, {0, 2});
  for (int i = 0; i < 2; ++i) CHECK(sameBits(hostValues(graph.run(slots)[0]), plain));
  CHECK(!graph.graphed());
  CHECK(graph.captures() == 0);
}

// checkFinite reports through the deferred error (it does not wait): the next synchronisation
// throws the CPU op's message.
TEST(cuda_check_finite_reports_at_the_next_synchronisation) {
  std::vector<float> values(300, 1.0f);
  values[123] = -INFINITY;
  values[200] = NAN;
  Tensor x = tensorOf({300}, values).to(Device::Cuda);
  runOp("checkFinite", {x}, {});
  bool raised = false;
  try {
    synchronizeDevicesOf({x});
  } catch (const Error& e) {
    raised = std::strcmp(e.what(), "checkFinite: element 123 is -Infinity, expected a finite number") == 0;
    if (!raised) std::fprintf(stderr, "  unexpected error: %s\n", e.what());
  }
  CHECK(raised);
  cuda::synchronize();  // reported once
}
