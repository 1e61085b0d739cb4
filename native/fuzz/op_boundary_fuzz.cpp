// Fuzz target: any op of the registry with random inputs and attributes. The ops' documented
// refusal is a castling::Error; any other exception, a sanitizer report or a crash is a finding.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "../core/thread_pool.h"
#include "../cpu/cpu_ops.h"
#include "fuzz_tensors.h"

using namespace castling;

namespace {

const std::vector<std::string>& opNames() {
  static const std::vector<std::string> names = [] {
    cpu::registerCpuOps(OpRegistry::global());
    ThreadPool::global().setThreads(2);  // the parallel paths run too, without flooding the machine
    return OpRegistry::global().names();
  }();
  return names;
}

[[noreturn]] void finding(const std::string& op, const char* what) {
  std::fprintf(stderr, "op_boundary_fuzz: op '%s' threw something other than castling::Error: %s\n", op.c_str(), what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const auto& names = opNames();
  FuzzedDataProvider data(bytes, size);
  fuzz::TensorDecoder decode(data);
  decode.chooseCpuPath();
  const std::string& name = names[data.ConsumeIntegralInRange<std::size_t>(0, names.size() - 1)];
  const OpInfo& op = OpRegistry::global().find(name);
  try {
    std::vector<std::optional<Tensor>> inputs;
    std::size_t count = data.ConsumeIntegralInRange<std::size_t>(0, op.inputs.size() + 1);
    for (std::size_t i = 0; i < count; ++i) inputs.push_back(decode.tensor());
    Attrs attrs = decode.attributes();
    fuzz::touchOutputs(op.run(OpInputs(name, std::move(inputs)), attrs));
  } catch (const fuzz::TooLarge&) {
  } catch (const Error&) {
    // The documented refusal (a bad shape, attribute or allocation), with its message.
  } catch (const std::exception& e) {
    finding(name, (std::string(typeid(e).name()) + ": " + e.what()).c_str());
  } catch (...) {
    finding(name, "an exception of unknown type");
  }
  return 0;
}
