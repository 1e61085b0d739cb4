#include "plan_handle.h"

#include "../core/device_backend.h"
#include "async_uses.h"
#include "js_convert.h"
#include "off_thread.h"
#include "tensor_handle.h"

#ifdef CASTLING_WITH_CUDA
#include "../cuda/cuda_graph.h"
#endif

namespace castling::addon {

namespace {

std::vector<int> toSlots(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw typeError(env, what + " must be an array of slot numbers");
  auto array = value.As<Napi::Array>();
  std::vector<int> out;
  for (std::uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value v = array.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -2;
    if (!(d >= -1 && d < 2147483647.0) || d != double(int(d))) {
      throw typeError(env, what + "[" + std::to_string(i) + "] must be a slot number or -1");
    }
    out.push_back(int(d));
  }
  return out;
}

}  // namespace

Napi::Function PlanHandle::define(Napi::Env env) {
  return DefineClass(env, "NativePlan", {InstanceMethod<&PlanHandle::run>("run"), InstanceMethod<&PlanHandle::graphCaptures>("graphCaptures")});
}

// new NativePlan(steps: {op, inputs, outputs, attrs?}[], slotCount: number, keep: number[],
//                options?: { cudaGraph?: number[] (the input slots) })
PlanHandle::PlanHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PlanHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsArray()) {
    throw typeError(env, "NativePlan: expected (steps, slotCount, keep)");
  }
  double count = info[1].As<Napi::Number>().DoubleValue();
  if (!(count >= 0 && count <= 1e7) || count != double(int(count))) throw typeError(env, "NativePlan: slotCount must be an integer from 0 to 10^7");
  slot_count_ = int(count);
  auto steps_js = info[0].As<Napi::Array>();
  std::vector<PlanStep> steps;
  for (std::uint32_t i = 0; i < steps_js.Length(); ++i) {
    std::string where = "NativePlan: step " + std::to_string(i);
    Napi::Value v = steps_js.Get(i);
    if (!v.IsObject()) throw typeError(env, where + " must be an object");
    auto step_js = v.As<Napi::Object>();
    PlanStep step;
    Napi::Value op = step_js.Get("op");
    if (!op.IsString()) throw typeError(env, where + ": op must be a string");
    step.name = op.As<Napi::String>().Utf8Value();
    rethrowAsJs(env, [&] { step.op = &OpRegistry::global().find(step.name); });
    step.inputs = toSlots(step_js.Get("inputs"), where + ".inputs");
    step.outputs = toSlots(step_js.Get("outputs"), where + ".outputs");
    if (step.inputs.size() > step.op->inputs.size()) {
      throw rangeError(env, where + " (" + step.name + "): " + std::to_string(step.inputs.size()) +
                                      " inputs, expected at most " + std::to_string(step.op->inputs.size()));
    }
    step.attrs = toAttrs(step_js.Get("attrs"), where + ".attrs");
    steps.push_back(std::move(step));
  }
  std::vector<int> keep = toSlots(info[2], "NativePlan: keep");
  rethrowAsJs(env, [&] { plan_ = std::make_shared<const Plan>(std::move(steps), slot_count_, std::move(keep)); });
  Napi::Value graph = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>().Get("cudaGraph") : env.Undefined();
  if (!graph.IsUndefined()) {
    std::vector<int> inputs = toSlots(graph, "NativePlan: options.cudaGraph");
#ifdef CASTLING_WITH_CUDA
    rethrowAsJs(env, [&] {
      auto runner = std::make_shared<cuda::GraphPlan>(plan_, std::move(inputs));
      graph_run_ = [runner](std::vector<std::optional<Tensor>> slots) { return runner->run(std::move(slots)); };
      graph_captures_ = [runner] { return runner->captures(); };
    });
#else
    throw Napi::Error::New(env, "NativePlan: options.cudaGraph needs the CUDA backend, which this build does not have");
#endif
  }
}

// plan.run(slots: (NativeTensor | null)[], async: boolean, profile?: boolean)
//   -> NativeTensor[] | Promise<NativeTensor[]>; with profile (async only) the array carries
//   `stepMs`, the wall time of each step.
Napi::Value PlanHandle::run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw typeError(env, "plan.run: expected (slots, async)");
  auto slots_js = info[0].As<Napi::Array>();
  if (int(slots_js.Length()) != slot_count_) {
    throw rangeError(env, "plan.run: got " + std::to_string(slots_js.Length()) + " slots, expected " + std::to_string(slot_count_));
  }
  std::vector<std::optional<Tensor>> slots(std::size_t(slot_count_), std::nullopt);
  std::vector<bool> filled(std::size_t(slot_count_), false);
  for (std::uint32_t i = 0; i < slots_js.Length(); ++i) {
    Napi::Value v = slots_js.Get(i);
    if (v.IsNull() || v.IsUndefined()) continue;
    slots[i] = TensorHandle::unwrap(v, "plan.run: slot " + std::to_string(i));
    filled[i] = true;
  }
  rethrowAsJs(env, [&] { plan_->validate(filled); });
  bool async = info.Length() > 1 && info[1].ToBoolean().Value();
  if (async) {
    bool profile = info.Length() > 2 && info[2].ToBoolean().Value();
    auto uses = std::make_shared<AsyncUses>(slots);  // until the Promise settles
    struct Run {
      std::vector<std::optional<Tensor>> slots;
      std::vector<Tensor> outputs;
      std::vector<double> stepMs;
    };
    auto run = std::make_shared<Run>();
    run->slots = std::move(slots);
    return runOffThread(
        env,
        [plan = plan_, graph = graph_run_, run, profile] {
          // Profiling times each step: the plain run (a graph is one launch).
          run->outputs = graph && !profile ? graph(std::move(run->slots)) : plan->run(std::move(run->slots), profile ? &run->stepMs : nullptr);
          synchronizeDevicesOf(run->outputs);  // the run's late errors are its own (device_backend.h)
        },
        [run, uses, profile](Napi::Env env) -> Napi::Value {
          auto out = Napi::Array::New(env, run->outputs.size());
          for (std::size_t i = 0; i < run->outputs.size(); ++i) out.Set(std::uint32_t(i), TensorHandle::wrap(env, std::move(run->outputs[i])));
          if (profile) {
            // The per-step wall times ride along as a property of the result array.
            auto times = Napi::Array::New(env, run->stepMs.size());
            for (std::size_t i = 0; i < run->stepMs.size(); ++i) times.Set(std::uint32_t(i), run->stepMs[i]);
            out.Set("stepMs", times);
          }
          return out;
        });
  }
  std::vector<Tensor> outputs;
  rethrowAsJs(env, [&] {
    outputs = graph_run_ ? graph_run_(std::move(slots)) : plan_->run(std::move(slots));
    synchronizeDevicesOf(outputs);
  });
  auto out = Napi::Array::New(env, outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) out.Set(std::uint32_t(i), TensorHandle::wrap(env, std::move(outputs[i])));
  return out;
}

// plan.graphCaptures() -> number: how many times its CUDA graph was captured (0 without one).
Napi::Value PlanHandle::graphCaptures(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), graph_captures_ ? graph_captures_() : 0);
}

}  // namespace castling::addon
