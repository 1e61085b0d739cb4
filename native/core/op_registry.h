// The op table: every op the addon can run, by name, with its inputs and numeric attributes.
// Ops are plain C++ (no N-API): the addon converts JavaScript values into OpInputs/Attrs, runs an
// op on or off the JavaScript thread, and wraps the returned tensors. Backends add their ops at
// start-up (registerCpuOps, and cuda::registerCudaOps when built with CUDA); an op runs on the
// device its inputs are on. The TypeScript layer never sees which ISA or device runs them.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tensor.h"

namespace castling {

// Numeric attributes (booleans as 0/1), validated on access so that errors name the attribute.
class Attrs {
 public:
  void set(const std::string& name, double value) { values_[name] = value; }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  double number(const std::string& name, double fallback) const;
  bool flag(const std::string& name, bool fallback) const;
  // An integer in [min, max]; an error naming the attribute otherwise.
  std::int64_t integer(const std::string& name, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) const;
  const std::map<std::string, double>& values() const { return values_; }

 private:
  std::map<std::string, double> values_;
};

// Positional tensor inputs; an absent optional input is an empty slot.
class OpInputs {
 public:
  OpInputs(std::string op, std::vector<std::optional<Tensor>> tensors)
      : op_(std::move(op)), tensors_(std::move(tensors)) {}
  std::size_t size() const { return tensors_.size(); }
  const Tensor& required(std::size_t index, const char* name) const;
  const Tensor* optional(std::size_t index) const;
  const std::string& op() const { return op_; }

 private:
  std::string op_;
  std::vector<std::optional<Tensor>> tensors_;
};

using OpFn = std::function<std::vector<Tensor>(const OpInputs&, const Attrs&)>;

struct OpInfo {
  OpFn cpu;                         // float32 tensors in host memory
  OpFn cuda;                        // tensors on the GPU (empty when the op has no CUDA version)
  std::vector<std::string> inputs;  // input names, for error messages and introspection
  std::string name;
  // Runs the implementation for the device the inputs are on; an Error when they are on
  // different devices or the op has no implementation there.
  std::vector<Tensor> run(const OpInputs& in, const Attrs& attrs) const;
};

class OpRegistry {
 public:
  static OpRegistry& global();
  void add(const std::string& name, std::vector<std::string> inputs, OpFn fn);
  // Adds the implementation of an op for `device` (the op is created when new; its input names
  // must match an existing op's).
  void add(Device device, const std::string& name, std::vector<std::string> inputs, OpFn fn);
  // Throws castling::Error naming the unknown op.
  const OpInfo& find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, OpInfo> ops_;
};

}  // namespace castling
