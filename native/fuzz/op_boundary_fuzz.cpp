// Fuzz target: any op of the registry with random inputs and attributes. The ops' documented
// refusal is a castling::Error; any other exception, a sanitizer report or a crash is a finding.
#include <string>

#include "fuzz_target.h"

using namespace castling;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const auto& names = fuzz::registeredOpNames();
  FuzzedDataProvider data(bytes, size);
  fuzz::TensorDecoder decode(data);
  decode.chooseCpuPath();
  const std::string& name = names[data.ConsumeIntegralInRange<std::size_t>(0, names.size() - 1)];
  const OpInfo& op = OpRegistry::global().find(name);
  fuzz::expectOnlyErrors("op_boundary_fuzz", "op '" + name + "'", [&] {
    std::vector<std::optional<Tensor>> inputs;
    std::size_t count = data.ConsumeIntegralInRange<std::size_t>(0, op.inputs.size() + 1);
    for (std::size_t i = 0; i < count; ++i) inputs.push_back(decode.tensor());
    Attrs attrs = decode.attributes();
    fuzz::touchOutputs(op.run(OpInputs(name, std::move(inputs)), attrs));
  });
  return 0;
}
