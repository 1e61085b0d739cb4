// runOp(name, inputs, attrs, async): the one entry point through which TypeScript runs any op.
// It converts and validates the arguments, then runs the op here (async = false, for small work)
// or on one of the addon's threads with a Promise (async = true, off_thread.h), so the event loop
// keeps turning.
#include "run_op.h"

#include <optional>

#include "async_uses.h"
#include "js_convert.h"
#include "off_thread.h"
#include "tensor_handle.h"

namespace castling::addon {

namespace {

struct OpCall {
  const OpInfo* info = nullptr;
  std::string name;
  std::vector<std::optional<Tensor>> inputs;
  Attrs attrs;
};

OpCall parseCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw typeError(env, "runOp: expected (name: string, inputs: Tensor[], attrs?, async?)");
  }
  OpCall call;
  call.name = info[0].As<Napi::String>().Utf8Value();
  rethrowAsJs(env, [&] { call.info = &OpRegistry::global().find(call.name); });
  auto inputs = info[1].As<Napi::Array>();
  if (inputs.Length() > call.info->inputs.size()) {
    throw rangeError(env, call.name + ": got " + std::to_string(inputs.Length()) +
                                    " inputs, expected at most " + std::to_string(call.info->inputs.size()));
  }
  for (std::uint32_t i = 0; i < inputs.Length(); ++i) {
    Napi::Value v = inputs.Get(i);
    if (v.IsUndefined() || v.IsNull()) {
      call.inputs.emplace_back();
    } else {
      call.inputs.emplace_back(TensorHandle::unwrap(v, call.name + ": input '" + call.info->inputs[i] + "'"));
    }
  }
  call.attrs = toAttrs(info.Length() > 2 ? info[2] : env.Undefined(), call.name + ": options");
  return call;
}

Napi::Array wrapAll(Napi::Env env, std::vector<Tensor>& tensors) {
  auto out = Napi::Array::New(env, tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) out.Set(std::uint32_t(i), TensorHandle::wrap(env, std::move(tensors[i])));
  return out;
}

}  // namespace

Napi::Value runOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpCall call = parseCall(info);
  bool async = info.Length() > 3 && info[3].ToBoolean().Value();
  if (async) {
    auto uses = std::make_shared<AsyncUses>(call.inputs);  // until the Promise settles
    auto shared = std::make_shared<OpCall>(std::move(call));
    auto outputs = std::make_shared<std::vector<Tensor>>();
    return runOffThread(
        env,
        [shared, outputs] {
          *outputs = shared->info->run(OpInputs(shared->name, shared->inputs), shared->attrs);
          shared->inputs.clear();  // release the inputs' storage as soon as the work is done
        },
        [outputs, uses](Napi::Env env) -> Napi::Value { return wrapAll(env, *outputs); });
  }
  std::vector<Tensor> outputs;
  rethrowAsJs(env, [&] { outputs = call.info->run(OpInputs(call.name, call.inputs), call.attrs); });
  return wrapAll(env, outputs);
}

}  // namespace castling::addon
