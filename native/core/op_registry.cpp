#include "op_registry.h"

#include <cmath>

#include "error.h"
#include "pool_trace.h"

namespace castling {

double Attrs::number(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  if (!std::isfinite(it->second)) fail("attribute '", name, "' is ", it->second, ": expected a finite number");
  return it->second;
}

bool Attrs::flag(const std::string& name, bool fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second != 0;
}

std::int64_t Attrs::integer(const std::string& name, std::int64_t fallback, std::int64_t min,
                            std::int64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  double v = it->second;
  if (!(v >= double(min) && v <= double(max)) || v != std::floor(v)) {
    fail("attribute '", name, "' is ", v, ": expected an integer from ", min, " to ", max);
  }
  return std::int64_t(v);
}

const Tensor& OpInputs::required(std::size_t index, const char* name) const {
  if (index >= tensors_.size() || !tensors_[index]) fail(op_, ": input '", name, "' is missing");
  return *tensors_[index];
}

const Tensor* OpInputs::optional(std::size_t index) const {
  if (index >= tensors_.size() || !tensors_[index]) return nullptr;
  return &*tensors_[index];
}

OpRegistry& OpRegistry::global() {
  static OpRegistry registry;
  return registry;
}

void OpRegistry::add(const std::string& name, std::vector<std::string> inputs, OpFn fn) {
  add(Device::Cpu, name, std::move(inputs), std::move(fn));
}

void OpRegistry::add(Device device, const std::string& name, std::vector<std::string> inputs, OpFn fn) {
  OpInfo& info = ops_[name];
  if (info.name.empty()) {
    info.name = name;
    info.inputs = std::move(inputs);
  } else if (info.inputs != inputs) {
    failAs(ErrorKind::Internal, "op '", name, "': the ", deviceName(device), " version takes other inputs than the registered one");
  }
  (device == Device::Cuda ? info.cuda : info.cpu) = std::move(fn);
}

std::vector<Tensor> OpInfo::run(const OpInputs& in, const Attrs& attrs) const {
  // Every input on one device: the first present input decides, a stray one is named.
  std::size_t first = in.size();
  for (std::size_t i = 0; i < in.size(); ++i) {
    const Tensor* t = in.optional(i);
    if (!t) continue;
    if (first == in.size()) {
      first = i;
    } else if (t->device() != in.optional(first)->device()) {
      auto label = [&](std::size_t j) { return j < inputs.size() ? inputs[j] : std::to_string(j); };
      fail(in.op(), ": input '", label(i), "' is on ", deviceName(t->device()), " but input '", label(first), "' is on ",
           deviceName(in.optional(first)->device()), ": expected every input on one device (move tensors with .to())");
    }
  }
  Device device = first < in.size() ? in.optional(first)->device() : Device::Cpu;
  const OpFn& fn = device == Device::Cuda ? cuda : cpu;
  if (!fn) failAs(ErrorKind::Unsupported, in.op(), ": this op has no ", deviceName(device), " implementation");
  TraceOp traced(name);
  return fn(in, attrs);
}

const OpInfo& OpRegistry::find(const std::string& name) const {
  auto it = ops_.find(name);
  if (it == ops_.end()) fail("unknown op '", name, "'");
  return it->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, info] : ops_) out.push_back(name);
  return out;
}

}  // namespace castling
